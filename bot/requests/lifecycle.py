"""A send request's life cycle: create, approve, reject, cancel, expire, execute, resolve.

Every state change is one conditional UPDATE (`WHERE state = :expected`) whose row count
says who won, so double clicks, concurrent approvers and several bot processes can never
send twice. The state is committed as SENDING before WhatCounts is called; a request left
SENDING past its deadline lost its process and becomes UNKNOWN, never re-sent.

Time is the database's (`database_now`, `database_utcnow`), never this process's own clock:
replicas whose clocks disagree still agree on what has expired and which send is lost.
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

from bot.requests.fields import RequestFields
from bot.requests.reading import RequestView, read_view
from bot.rules import grants, sending
from bot.rules.sender_codes import get_settings
from bot.store import audit
from bot.store.engine import database_now, database_utcnow, utcnow
from bot.store.models import Approval, Role, SendRequest, State
from bot.whatcounts.catalog import MessageCatalog, Unverifiable
from bot.whatcounts.client import (
    NotSent,
    Outcome,
    Rejected,
    Sent,
    Unknown,
    WhatCountsClient,
    send_url,
)

log = logging.getLogger(__name__)

TERMINAL_WITH_OUTCOME = (State.SENT, State.FAILED, State.UNKNOWN)
# Extra time past the WhatCounts client's own bound before a SENDING request counts as lost.
SENDING_GRACE = timedelta(seconds=2)


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
class Invalid:
    """The form cannot be requested as filled in: a sentence per form field. Nothing changed."""

    errors: dict[str, str]


@dataclass
class Lifecycle:
    sessions: sessionmaker[Session]
    whatcounts: WhatCountsClient | None  # None where nothing is sent (the command line)
    request_ttl: timedelta = timedelta(minutes=60)
    # This process's own clock. Nothing is judged by it (see the module docstring); it is here so
    # that tests can give a replica a clock that runs ahead or behind.
    clock: Callable[[], datetime] = field(default=utcnow)
    messages: MessageCatalog | None = None  # None: message names cannot be checked
    dry_run: bool = False  # WHATCOUNTS_DRY_RUN: everything but the POST

    def view(self, request_id: str) -> RequestView | None:
        with self.sessions() as session:
            return read_view(session, request_id)

    # --- creating --------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        """Made before the request is stored, so its card can be posted first."""
        return secrets.token_hex(6)

    def draft(self, requester_id: str, team_id: str, channel_id: str, fields: RequestFields,
              quiet_override: str | None = None) -> SendRequest | Invalid:
        """A request not yet stored, checked against the sender code's policy, for posting its card first.

        `quiet_override`: an admin's reason to request a send inside quiet hours.
        """
        code = fields.sender_code
        with self.sessions() as session:
            now = database_now(session)
            if not grants.has_role(session, requester_id, Role.REQUESTER, code):
                return Invalid({"sender_code": f"You have no grant to request sends for sender code {code}."})
            settings = get_settings(session, code)
            if settings is None:
                return Invalid({"sender_code": f"Sender code {code} is not registered: an admin adds it with "
                                               f"`/sms-send admin sender-code set {code}`."})
            errors: dict[str, str] = {}
            if problem := sending.channel_problem(settings, channel_id):
                errors["sender_code"] = problem
            elif problem := sending.cap_problem(session, settings, now, self.dry_run):
                errors["sender_code"] = problem
            elif (problem := sending.quiet_problem(settings, now)) and not quiet_override:
                errors["sender_code"] = problem
            if problem := sending.group_problem(settings, fields.group_name):
                errors["group_name"] = problem
            if quiet_override and not grants.has_role(session, requester_id, Role.ADMIN, code):
                errors["quiet_override"] = f"Only an admin of sender code {code} can override its quiet hours."
        if errors:
            return Invalid(errors)
        message = self.messages.get(fields.message_name) if self.messages else Unverifiable("no catalogue")
        if message is None:
            return Invalid({"message_name": f"WhatCounts has no SMS message named “{fields.message_name}” "
                                            "(names are case-sensitive). Choose one from the list."})
        text = None if isinstance(message, Unverifiable) else message.text
        return SendRequest(
            id=self.new_id(), state=State.PENDING, requester_id=requester_id, team_id=team_id,
            channel_id=channel_id, card_ts="", message_name=fields.message_name,
            sender_code=code, campaign_name=fields.campaign_name,
            description=fields.description, group_name=fields.group_name,
            approvals_required=settings.approvals, allow_self_approval=settings.self_approval,
            created_at=now, expires_at=now + self.request_ttl, version=1, card_version=1,
            outcome_posted=False, message_text=text, message_verified=text is not None,
            sender_label=settings.label,
            quiet_hours=str(quiet) if (quiet := settings.quiet()) else None,
            quiet_override=quiet_override, dry_run=self.dry_run,
        )

    def store(self, draft: SendRequest, card_ts: str) -> RequestView | Refused:
        """Store a drafted request once its card is posted; grants are checked again."""
        with self.sessions.begin() as session:
            if not grants.has_role(session, draft.requester_id, Role.REQUESTER, draft.sender_code):
                return Refused(f"You have no grant to request sends for sender code {draft.sender_code}.")
            draft.card_ts = card_ts
            session.add(draft)
            audit.record(session, "requested", draft.requester_id, request_id=draft.id,
                         sender_code=draft.sender_code, channel_id=draft.channel_id,
                         message_name=draft.message_name, campaign_name=draft.campaign_name,
                         description=draft.description, group_name=draft.group_name,
                         approvals_required=draft.approvals_required, message_verified=draft.message_verified,
                         dry_run=draft.dry_run)
            if draft.quiet_override:
                audit.record(session, "quiet_override", draft.requester_id, request_id=draft.id,
                             sender_code=draft.sender_code, quiet_hours=draft.quiet_hours,
                             reason=draft.quiet_override)
        return RequestView(draft)

    # --- deciding --------------------------------------------------------------------

    def approve(self, request_id: str, approver_id: str) -> Decision:
        """Record one approval; the approval that completes the count claims the send."""
        with self.sessions.begin() as session:
            found = self._open_pending(session, request_id)
            if not isinstance(found, SendRequest):
                return found
            request = found
            if not grants.has_role(session, approver_id, Role.APPROVER, request.sender_code):
                return Refused(f"You need an approver grant for sender code {request.sender_code} to approve.")
            if approver_id == request.requester_id and not request.allow_self_approval:
                return Refused("You asked for this send, so someone else must approve it.")
            already = session.scalar(select(Approval.approver_id).where(
                Approval.request_id == request_id, Approval.approver_id == approver_id))
            if already is not None:
                return Refused("You have already approved this request.")
        try:
            with self.sessions.begin() as session:
                session.add(Approval(request_id=request_id, approver_id=approver_id,
                                     approved_at=database_now(session)))
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
            approvals = select(func.count()).select_from(Approval).where(
                Approval.request_id == request_id).scalar_subquery()
            enough = approvals >= SendRequest.approvals_required
            ready = session.scalar(select(SendRequest.id).where(
                SendRequest.id == request_id, SendRequest.state == State.PENDING, enough)) is not None
            now = database_now(session)
            stop = self._claim_check(session, request, now) if ready else None
            claimed = False
            if stop is None:
                assert self.whatcounts is not None
                deadline = now + timedelta(seconds=self.whatcounts.max_duration()) + SENDING_GRACE
                claimed = self._transition(session, request_id, (State.PENDING,), State.SENDING, enough,
                                           SendRequest.expires_at > now, sending_deadline=deadline)
                if claimed:
                    audit.record(session, "sending", approver_id, request_id=request_id,
                                 sender_code=request.sender_code)
            elif self._transition(session, request_id, (State.PENDING,), State.FAILED, enough,
                                  finished_at=now, reason=stop, outcome_posted=False):
                audit.record(session, "failed", "system", request_id=request_id, sender_code=request.sender_code,
                             reason=stop)
            view = read_view(session, request_id)
        assert view is not None
        if not claimed and view.request.state not in (State.PENDING, State.FAILED):
            return Closed(view)  # another approval won the race; ours changed nothing that matters
        return Changed(view, send=claimed)

    @staticmethod
    def _claim_check(session: Session, request: SendRequest, now: datetime) -> str | None:
        """The policy at the moment of sending, with the sender code's row locked so that
        concurrent claims of one code count each other's sends. A reason means: do not send."""
        settings = sending.lock_sender_code(session, request.sender_code)
        if settings is None:
            return f"Not sent: sender code {request.sender_code} is no longer registered."
        if not request.quiet_override and (problem := sending.quiet_problem(settings, now)):
            return f"Not sent at approval: {problem}"
        if problem := sending.cap_problem(session, settings, now, request.dry_run):
            return f"Not sent at approval: {problem}"
        return None

    def reject(self, request_id: str, user_id: str) -> Decision:
        return self._close(request_id, user_id, State.REJECTED, "rejected", self._may_reject)

    def cancel(self, request_id: str, user_id: str) -> Decision:
        return self._close(request_id, user_id, State.CANCELLED, "cancelled", self._may_cancel)

    @staticmethod
    def _may_reject(session: Session, request: SendRequest, user_id: str) -> str | None:
        if grants.has_role(session, user_id, Role.APPROVER, request.sender_code):
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
                                    closed_by=user_id, finished_at=database_utcnow()):
                session.rollback()
                return Closed(self._require_view(request_id))
            audit.record(session, event, user_id, request_id=request_id, sender_code=found.sender_code)
            view = read_view(session, request_id)
        assert view is not None
        return Changed(view)

    def _open_pending(self, session: Session, request_id: str) -> SendRequest | Refused | Closed:
        """The request if it is still pending; expires it on the way if its time is up."""
        request = session.get(SendRequest, request_id)
        if request is None:
            return Refused("This request no longer exists.")
        if request.state == State.PENDING and request.expires_at <= database_now(session):
            if self._transition(session, request_id, (State.PENDING,), State.EXPIRED,
                                SendRequest.expires_at <= database_utcnow(), finished_at=database_utcnow(),
                                reason="No decision before it expired."):
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
        if request.dry_run or self.dry_run:
            return self._finish(request, State.SENT, "sent", whatcounts_status="dry run", dry_run=True, reason=(
                "DRY RUN: WhatCounts was not called. The bot would have sent POST "
                + send_url("", request.message_name, request.sender_code, request.campaign_name,
                           request.description, request.group_name)))
        outcome = self.whatcounts.send(request.message_name, request.sender_code, request.campaign_name,
                                       request.description, request.group_name)
        return self._record(request, outcome)

    def _send_time_check(self, session: Session, request: SendRequest) -> str | None:
        """Grants are checked again just before the POST: a revoked grant stops the send."""
        if not grants.has_role(session, request.requester_id, Role.REQUESTER, request.sender_code):
            return f"Not sent: the requester no longer holds a requester grant for {request.sender_code}."
        approvers = session.scalars(select(Approval.approver_id).where(Approval.request_id == request.id))
        valid = [a for a in approvers if grants.has_role(session, a, Role.APPROVER, request.sender_code)]
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
                                    finished_at=database_utcnow(), outcome_posted=False, **values):
                log.warning("request %s: outcome %s arrived after it was closed", request.id, state)
            audit.record(session, event, "system", request_id=request.id, sender_code=request.sender_code,
                         **{k: v for k, v in values.items() if v is not None})
            view = read_view(session, request.id)
        assert view is not None
        return view

    def resolve(self, request_id: str, admin_id: str, sent: bool, note: str) -> RequestView | Refused:
        """An admin records what WhatCounts support said about an unknown outcome."""
        with self.sessions.begin() as session:
            request = session.get(SendRequest, request_id)
            if request is None:
                return Refused(f"No request {request_id}.")
            if not grants.has_role(session, admin_id, Role.ADMIN, request.sender_code):
                return Refused(f"{admin_id} holds no admin grant for sender code {request.sender_code}.")
            state = State.SENT if sent else State.FAILED
            verdict = "sent" if sent else "not sent"
            if not self._transition(session, request_id, (State.UNKNOWN,), state, closed_by=admin_id,
                                    reason=f"Recorded as {verdict}: {note}",
                                    outcome_posted=False):
                return Refused(f"Request {request_id} is {request.state}, not unknown.")
            audit.record(session, "resolved", admin_id, request_id=request_id, sender_code=request.sender_code,
                         outcome=verdict, note=note)
            view = read_view(session, request_id)
        assert view is not None
        return view

    # --- sweeping (every process, every few seconds; safe to run concurrently) ---------

    def expire_due(self) -> list[RequestView]:
        now = database_utcnow()
        return self._sweep(
            select(SendRequest.id).where(SendRequest.state == State.PENDING, SendRequest.expires_at <= now),
            (State.PENDING,), State.EXPIRED, "expired", extra_where=(SendRequest.expires_at <= now,),
            reason="No decision before it expired.",
        )

    def mark_lost_sends(self) -> list[RequestView]:
        """SENDING past its deadline (on the database's clock): the process that was sending died. Never re-sent."""
        now = database_utcnow()
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
                                    finished_at=database_utcnow(), reason=reason, outcome_posted=False):
                    request = session.get(SendRequest, request_id)
                    audit.record(session, event, "system", request_id=request_id,
                                 sender_code=request.sender_code if request else None)
                    view = read_view(session, request_id)
                    if view is not None:
                        changed.append(view)
        return changed

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
        view = read_view(session, request_id)
        assert view is not None, request_id
        return view
