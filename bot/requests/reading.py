"""A request as the surfaces show it: the row and its approvers, read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.rules import grants
from bot.store.models import Approval, SendRequest, State


@dataclass(frozen=True)
class RequestView:
    """A request and its approvers, as read in one transaction (for rendering)."""

    request: SendRequest
    approvers: tuple[str, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()  # (approver, note) for the approvals given with words
    code_admins: tuple[str, ...] = ()  # read only while the outcome is unknown: they are whom to ask about it


def read_view(session: Session, request_id: str) -> RequestView | None:
    request = session.get(SendRequest, request_id, populate_existing=True)
    if request is None:
        return None
    approvals = session.execute(select(Approval.approver_id, Approval.note).where(Approval.request_id == request_id)
                                .order_by(Approval.approved_at, Approval.approver_id)).all()
    admins = grants.admins_of(session, request.sender_code) if request.state == State.UNKNOWN else ()
    return RequestView(request, approvers=tuple(a for a, _ in approvals),
                       notes=tuple((a, n) for a, n in approvals if n), code_admins=tuple(admins))
