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
    code_admins: tuple[str, ...] = ()  # read only while the outcome is unknown: they are whom to ask about it


def read_view(session: Session, request_id: str) -> RequestView | None:
    request = session.get(SendRequest, request_id, populate_existing=True)
    if request is None:
        return None
    approvers = session.scalars(select(Approval.approver_id).where(Approval.request_id == request_id)
                                .order_by(Approval.approved_at, Approval.approver_id))
    admins = grants.admins_of(session, request.sender_code) if request.state == State.UNKNOWN else ()
    return RequestView(request, tuple(approvers), tuple(admins))
