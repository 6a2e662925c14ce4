"""A send request's life cycle: create, approve, reject, cancel, expire, execute, resolve.

Every state change is one conditional UPDATE (`WHERE state = :expected`) whose row count
says who won, so double clicks, concurrent approvers and several bot processes can never
send twice. The state is committed as SENDING before WhatCounts is called; a request left
SENDING past its deadline lost its process and becomes UNKNOWN, never re-sent.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import audit, permissions
from bot.db import utcnow
from bot.fields import RequestFields
from bot.models import ALL_SENDER_CODES, Approval, Role, SenderCode, SendRequest, State
from bot.whatcounts import NotSent, Outcome, Rejected, Sent, Unknown, WhatCountsClient

log = logging.getLogger(__name__)

TERMINAL_WITH_OUTCOME = (State.SENT, State.FAILED, State.UNKNOWN)
# Extra time past the WhatCounts client's own bound before a SENDING request counts as lost.
SENDING_GRACE = timedelta(seconds=2)


@dataclass(frozen=True)
class RequestView:
    """A request and its approvers, as read in one transaction (for rendering)."""

    request: SendRequest
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    """The user may not do this; nothing changed."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """The request is no longer pending; nothing changed."""

    view: RequestView


@dataclass(frozen=True)
class Changed:
    """The user's action took effect. `send` is True for the one approval that must now send."""

    view: RequestView
    send: bool = False


Decision = Refused | Closed | Changed


@dataclass(frozen=True)
class Rules:
    approvals_required: int = 1
    allow_self_approval: bool = False


@dataclass
class SendService:
    sessions: sessionmaker[Session]
    whatcounts: WhatCountsClient | None  # None where nothing is sent (the command line)
    request_ttl: timedelta = timedelta(minutes=60)
    clock: Callable[[], datetime] = field(default=utcnow)

    # --- reading ---------------------------------------------------------------------

    def view(self, request_id: str) -> RequestView | None:
        with self.sessions() as session:
            return self._view(session, request_id)

    @staticmethod
    def _view(session: Session, request_id: str) -> RequestView | None:
        request = session.get(SendRequest, request_id, populate_existing=True)
        if request is None:
            return None
        approvers = session.scalars(select(Approval.approver_id).where(Approval.request_id == request_id)
                                    .order_by(Approval.approved_at, Approval.approver_id))
        return RequestView(request, tuple(approvers))

    @staticmethod
    def rules_for(session: Session, sender_code: str) -> Rules:
        row = session.get(SenderCode, sender_code)
        return Rules(row.approvals_required, row.allow_self_approval) if row else Rules()

    # --- creating --------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        """Made before the request is stored, so its card can be posted first."""
        return secrets.token_hex(6)

    def sender_code_choices(self, user_id: str) -> list[str] | None | Refused:
        """For the request form, in one read: Refused if the user may not request at all, else
        the codes to offer in a select, or None when any valid code may be typed."""
        with self.sessions() as session:
            codes = permissions.codes_for(session, user_id, Role.REQUESTER)
            if not codes:
                return Refused("no requester grant")
            if ALL_SENDER_CODES in codes:
                registered = list(session.scalars(select(SenderCode.code).order_by(SenderCode.code)))
                return registered or None
            return sorted(codes)

    def admins(self) -> list[str]:
        with self.sessions() as session:
            return permissions.holders(session, Role.ADMIN)

    def draft(self, requester_id: str, team_id: str, channel_id: str,
              fields: RequestFields) -> SendRequest | Refused:
        """A request not yet stored, with its rules applied, for posting its card first."""
        with self.sessions() as session:
            if not permissions.has_role(session, requester_id, Role.REQUESTER, fields.sender_code):
                return Refused(f"You have no grant to request sends for sender code {fields.sender_code}.")
            rules = self.rules_for(session, fields.sender_code)
        now = self.clock()
        return SendRequest(
            id=self.new_id(), state=State.PENDING, requester_id=requester_id, team_id=team_id,
            channel_id=channel_id, card_ts="", message_name=fields.message_name,
            sender_code=fields.sender_code, campaign_name=fields.campaign_name,
            description=fields.description, group_name=fields.group_name,
            approvals_required=rules.approvals_required, allow_self_approval=rules.allow_self_approval,
            created_at=now, expires_at=now + self.request_ttl, version=1, card_version=1,
            outcome_posted=False,
        )

    def store(self, draft: SendRequest, card_ts: str) -> RequestView | Refused:
        """Store a drafted request once its card is posted; grants are checked again."""
        with self.sessions.begin() as session:
            if not permissions.has_role(session, draft.requester_id, Role.REQUESTER, draft.sender_code):
                return Refused(f"You have no grant to request sends for sender code {draft.sender_code}.")
            draft.card_ts = card_ts
            session.add(draft)
            audit.record(session, "requested", draft.requester_id, request_id=draft.id,
                         sender_code=draft.sender_code, channel_id=draft.channel_id,
                         message_name=draft.message_name, campaign_name=draft.campaign_name,
                         description=draft.description, group_name=draft.group_name,
                         approvals_required=draft.approvals_required)
        return RequestView(draft)

    # --- deciding --------------------------------------------------------------------

    def approve(self, request_id: str, approver_id: str) -> Decision:
        """Record one approval; the approval that completes the count claims the send."""
        with self.sessions.begin() as session:
            found = self._open_pending(session, request_id)
            if not isinstance(found, SendRequest):
                return found
            request = found
            if not permissions.has_role(session, approver_id, Role.APPROVER, request.sender_code):
                return Refused(f"You need an approver grant for sender code {request.sender_code} to approve.")
            if approver_id == request.requester_id and not request.allow_self_approval:
                return Refused("You asked for this send, so someone else must approve it.")
            already = session.scalar(select(Approval.approver_id).where(
                Approval.request_id == request_id, Approval.approver_id == approver_id))
            if already is not None:
                return Refused("You have already approved this request.")
        try:
            with self.sessions.begin() as session:
                session.add(Approval(request_id=request_id, approver_id=approver_id, approved_at=self.clock()))
                session.flush()
                bumped = session.execute(update(SendRequest).where(
                    SendRequest.id == request_id, SendRequest.state == State.PENDING,
                ).values(version=SendRequest.version + 1)).rowcount
                if bumped != 1:
                    session.rollback()
                    return Closed(self._require_view(request_id))
                audit.record(session, "approved", approver_id, request_id=request_id,
                             sender_code=request.sender_code)
        except IntegrityError:
            return Refused("You have already approved this request.")
        # A separate transaction, after our approval committed: whichever approval commits
        # last sees every approval and claims the send; the UPDATE lets only one win.
        with self.sessions.begin() as session:
            now = self.clock()
            approvals = select(func.count()).select_from(Approval).where(
                Approval.request_id == request_id).scalar_subquery()
            assert self.whatcounts is not None
            deadline = now + timedelta(seconds=self.whatcounts.max_duration()) + SENDING_GRACE
            claimed = session.execute(update(SendRequest).where(
                SendRequest.id == request_id, SendRequest.state == State.PENDING,
                SendRequest.expires_at > now, approvals >= SendRequest.approvals_required,
            ).values(state=State.SENDING, sending_deadline=deadline,
                     version=SendRequest.version + 1)).rowcount == 1
            if claimed:
                audit.record(session, "sending", approver_id, request_id=request_id,
                             sender_code=request.sender_code)
            view = self._view(session, request_id)
        assert view is not None
        if not claimed and view.request.state != State.PENDING:
            return Closed(view)  # another approval won the race; ours changed nothing that matters
        return Changed(view, send=claimed)

    def reject(self, request_id: str, user_id: str) -> Decision:
        return self._close(request_id, user_id, State.REJECTED, "rejected", self._may_reject)

    def cancel(self, request_id: str, user_id: str) -> Decision:
        return self._close(request_id, user_id, State.CANCELLED, "cancelled", self._may_cancel)

    @staticmethod
    def _may_reject(session: Session, request: SendRequest, user_id: str) -> str | None:
        if permissions.has_role(session, user_id, Role.APPROVER, request.sender_code):
            return None
        return f"You need an approver grant for sender code {request.sender_code} to reject."

    @staticmethod
    def _may_cancel(_session: Session, request: SendRequest, user_id: str) -> str | None:
        return None if user_id == request.requester_id else "Only the person who asked for this send can cancel it."

    def _close(self, request_id: str, user_id: str, state: State, event: str,
               check: Callable[[Session, SendRequest, str], str | None]) -> Decision:
        with self.sessions.begin() as session:
            found = self._open_pending(session, request_id)
            if not isinstance(found, SendRequest):
                return found
            if (reason := check(session, found, user_id)) is not None:
                return Refused(reason)
            if not self._transition(session, request_id, (State.PENDING,), state,
                                    closed_by=user_id, finished_at=self.clock()):
                session.rollback()
                return Closed(self._require_view(request_id))
            audit.record(session, event, user_id, request_id=request_id, sender_code=found.sender_code)
            view = self._view(session, request_id)
        assert view is not None
        return Changed(view)

    def _open_pending(self, session: Session, request_id: str) -> SendRequest | Refused | Closed:
        """The request if it is still pending; expires it on the way if its time is up."""
        request = session.get(SendRequest, request_id)
        if request is None:
            return Refused("This request no longer exists.")
        if request.state == State.PENDING and request.expires_at <= self.clock():
            if self._transition(session, request_id, (State.PENDING,), State.EXPIRED,
                                finished_at=self.clock(), reason="No decision before it expired."):
                audit.record(session, "expired", "system", request_id=request_id, sender_code=request.sender_code)
            session.refresh(request)
        if request.state != State.PENDING:
            return Closed(self._require_view_in(session, request_id))
        return request

    # --- sending ---------------------------------------------------------------------

    def execute(self, request_id: str) -> RequestView:
        """Call WhatCounts for a request this process claimed (state SENDING), and record the outcome."""
        with self.sessions() as session:
            request = session.get(SendRequest, request_id)
            assert request is not None and request.state == State.SENDING, request_id
            stop = self._send_time_check(session, request)
        if stop is not None:
            return self._finish(request, State.FAILED, "failed", reason=stop)
        assert self.whatcounts is not None
        outcome = self.whatcounts.send(request.message_name, request.sender_code, request.campaign_name,
                                       request.description, request.group_name)
        return self._record(request, outcome)

    def _send_time_check(self, session: Session, request: SendRequest) -> str | None:
        """Grants are checked again just before the POST: a revoked grant stops the send."""
        if not permissions.has_role(session, request.requester_id, Role.REQUESTER, request.sender_code):
            return f"Not sent: the requester no longer holds a requester grant for {request.sender_code}."
        approvers = session.scalars(select(Approval.approver_id).where(Approval.request_id == request.id))
        valid = [a for a in approvers if permissions.has_role(session, a, Role.APPROVER, request.sender_code)]
        if len(valid) < request.approvals_required:
            return "Not sent: an approver's grant was revoked before the send."
        return None

    def _record(self, request: SendRequest, outcome: Outcome) -> RequestView:
        match outcome:
            case Sent(id=wc_id, status=status):
                return self._finish(request, State.SENT, "sent", whatcounts_id=wc_id, whatcounts_status=status,
                                    http_status=200)
            case Rejected(http_status=code, error=error):
                return self._finish(request, State.FAILED, "failed", http_status=code, error_text=error)
            case NotSent(reason=reason):
                return self._finish(request, State.FAILED, "failed", reason=f"Not sent: {reason}.")
            case Unknown(reason=reason):
                return self._finish(request, State.UNKNOWN, "unknown", reason=f"Outcome unknown: {reason}.")
        raise AssertionError(outcome)

    def _finish(self, request: SendRequest, state: State, event: str, **values: object) -> RequestView:
        # UNKNOWN too: a real answer that arrives after a sweep gave up on us still wins.
        with self.sessions.begin() as session:
            if not self._transition(session, request.id, (State.SENDING, State.UNKNOWN), state,
                                    finished_at=self.clock(), outcome_posted=False, **values):
                log.warning("request %s: outcome %s arrived after it was closed", request.id, state)
            audit.record(session, event, "system", request_id=request.id, sender_code=request.sender_code,
                         **{k: v for k, v in values.items() if v is not None})
            view = self._view(session, request.id)
        assert view is not None
        return view

    def resolve(self, request_id: str, admin_id: str, sent: bool, note: str) -> RequestView | Refused:
        """An admin records what WhatCounts support said about an unknown outcome."""
        with self.sessions.begin() as session:
            request = session.get(SendRequest, request_id)
            if request is None:
                return Refused(f"No request {request_id}.")
            if not permissions.has_role(session, admin_id, Role.ADMIN, request.sender_code):
                return Refused(f"{admin_id} holds no admin grant for sender code {request.sender_code}.")
            state = State.SENT if sent else State.FAILED
            verdict = "sent" if sent else "not sent"
            if not self._transition(session, request_id, (State.UNKNOWN,), state, closed_by=admin_id,
                                    reason=f"Recorded as {verdict}: {note}",
                                    outcome_posted=False):
                return Refused(f"Request {request_id} is {request.state}, not unknown.")
            audit.record(session, "resolved", admin_id, request_id=request_id, sender_code=request.sender_code,
                         outcome=verdict, note=note)
            view = self._view(session, request_id)
        assert view is not None
        return view

    # --- sweeping (every process, every few seconds; safe to run concurrently) ---------

    def expire_due(self) -> list[RequestView]:
        now = self.clock()
        return self._sweep(
            select(SendRequest.id).where(SendRequest.state == State.PENDING, SendRequest.expires_at <= now),
            (State.PENDING,), State.EXPIRED, "expired", extra_where=(SendRequest.expires_at <= now,),
            reason="No decision before it expired.",
        )

    def mark_lost_sends(self) -> list[RequestView]:
        """SENDING past its deadline: the process that was sending died. Never re-sent."""
        now = self.clock()
        return self._sweep(
            select(SendRequest.id).where(SendRequest.state == State.SENDING, SendRequest.sending_deadline <= now),
            (State.SENDING,), State.UNKNOWN, "unknown", extra_where=(SendRequest.sending_deadline <= now,),
            reason=("Outcome unknown: the bot stopped while WhatCounts was being called, so it cannot tell "
                    "whether the message went out."),
        )

    def _sweep(self, candidates: object, from_states: tuple[State, ...], state: State, event: str,
               extra_where: tuple[object, ...], reason: str) -> list[RequestView]:
        with self.sessions() as session:
            ids = list(session.scalars(candidates))  # type: ignore[call-overload]
        changed = []
        for request_id in ids:
            with self.sessions.begin() as session:
                if self._transition(session, request_id, from_states, state, *extra_where,
                                    finished_at=self.clock(), reason=reason, outcome_posted=False):
                    request = session.get(SendRequest, request_id)
                    audit.record(session, event, "system", request_id=request_id,
                                 sender_code=request.sender_code if request else None)
                    view = self._view(session, request_id)
                    if view is not None:
                        changed.append(view)
        return changed

    def cards_behind(self, limit: int = 50) -> list[RequestView]:
        """Requests whose card does not yet show their latest state (a card update failed)."""
        with self.sessions() as session:
            ids = list(session.scalars(select(SendRequest.id).where(SendRequest.card_version < SendRequest.version)
                                       .limit(limit)))
            return [v for i in ids if (v := self._view(session, i)) is not None]

    def outcomes_unposted(self, limit: int = 50) -> list[RequestView]:
        with self.sessions() as session:
            ids = list(session.scalars(select(SendRequest.id).where(
                SendRequest.state.in_(TERMINAL_WITH_OUTCOME), SendRequest.outcome_posted.is_(False)).limit(limit)))
            return [v for i in ids if (v := self._view(session, i)) is not None]

    def card_shown(self, request_id: str, version: int) -> None:
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id,
                                                      SendRequest.card_version < version)
                            .values(card_version=version))

    def claim_outcome_post(self, request_id: str) -> bool:
        """True for the one caller that should post this outcome to the thread."""
        with self.sessions.begin() as session:
            return session.execute(update(SendRequest).where(
                SendRequest.id == request_id, SendRequest.outcome_posted.is_(False),
                SendRequest.state.in_(TERMINAL_WITH_OUTCOME)).values(outcome_posted=True)).rowcount == 1

    def release_outcome_post(self, request_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id).values(outcome_posted=False))

    # --- helpers ---------------------------------------------------------------------

    @staticmethod
    def _transition(session: Session, request_id: str, from_states: Iterable[State], to_state: State,
                    *where: object, **values: object) -> bool:
        stmt = update(SendRequest).where(SendRequest.id == request_id, SendRequest.state.in_(tuple(from_states)),
                                         *where).values(state=to_state, version=SendRequest.version + 1, **values)
        return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]

    def _require_view(self, request_id: str) -> RequestView:
        with self.sessions() as session:
            return self._require_view_in(session, request_id)

    def _require_view_in(self, session: Session, request_id: str) -> RequestView:
        view = self._view(session, request_id)
        assert view is not None, request_id
        return view
