"""A request as the surfaces show it: the row and its approvers, read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.rules import grants
from bot.store.models import Approval, SenderCode, SendRequest, State


@dataclass(frozen=True)
class Asked:
    """Who a pending request asks to approve: the sender code's Slack user group if it has one, and
    the people who may approve it (its approvers, the requester left out unless self-approval is allowed)."""

    group: str | None = None
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestView:
    """A request and its approvers, as read in one transaction (for rendering)."""

    request: SendRequest
    approvers: tuple[str, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()  # (approver, note) for the approvals given with words
    code_admins: tuple[str, ...] = ()  # read only while the outcome is unknown: they are whom to ask about it
    asked: Asked | None = None  # read only while pending: nobody is asked about a request that has ended


def who_is_asked(session: Session, request: SendRequest) -> Asked:
    """Whom `request` asks to approve, as its sender code's settings and grants are now."""
    group = session.scalar(select(SenderCode.approvers_group).where(SenderCode.code == request.sender_code))
    people = grants.approvers_of(session, request.sender_code)
    return Asked(group, tuple(p for p in people if request.allow_self_approval or p != request.requester_id))


def approvals_rule(request: SendRequest) -> str:
    """Which of its sender code's rules set the approvals a request needs, and why, in a sentence."""
    n = request.approvals_required
    to = "All contacts" if request.group_name is None else "a group"
    return f"Needs {n} approval{'s' if n != 1 else ''}: sends to {to} need {n} for this sender code."


def read_view(session: Session, request_id: str) -> RequestView | None:
    request = session.get(SendRequest, request_id, populate_existing=True)
    if request is None:
        return None
    approvals = session.execute(select(Approval.approver_id, Approval.note).where(Approval.request_id == request_id)
                                .order_by(Approval.approved_at, Approval.approver_id)).all()
    admins = grants.admins_of(session, request.sender_code) if request.state == State.UNKNOWN else ()
    asked = who_is_asked(session, request) if request.state == State.PENDING else None
    return RequestView(request, approvers=tuple(a for a, _ in approvals),
                       notes=tuple((a, n) for a, n in approvals if n), code_admins=tuple(admins), asked=asked)
