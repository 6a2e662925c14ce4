"""A send request's life cycle: create, approve, reject, cancel, expire, execute, resolve.

Every state change is one conditional UPDATE (`WHERE state = :expected`) whose row count
says who won, so double clicks, concurrent approvers and several bot processes can never
send twice. The state is committed as SENDING before WhatCounts is called; a request left
SENDING past its deadline lost its process and becomes UNKNOWN, never re-sent.

Time is the database's (`database_now`, `database_utcnow`), never this process's own clock:
replicas whose clocks disagree still agree on what has expired and which send is lost. Only
how long a send has been under way is counted here, on the monotonic clock (see `execute`).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Concatenate, ParamSpec

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from bot.requests import approved_text
from bot.requests.fields import RequestFields
from bot.requests.reading import RequestView, read_view, who_is_asked
from bot.rules import grants, sending
from bot.rules.sender_codes import get_rules
from bot.store import audit
from bot.store.engine import database_now, database_utcnow, rows_matched
from bot.store.models import Approval, Role, SendRequest, State
from bot.whatcounts.catalog import MessageCatalog, Unverifiable
from bot.whatcounts.client import (
    NotSent,
    Outcome,
    Rejected,
    Sent,
    SmsMessage,
    Unknown,
    WhatCountsClient,
)

log = logging.getLogger(__name__)

TERMINAL_WITH_OUTCOME = (State.SENT, State.FAILED, State.UNKNOWN)
# Every ending the requester is told of in the card's thread, once (see `Outbox`): the outcomes,
# and the endings without a send.
ENDINGS = (*TERMINAL_WITH_OUTCOME, State.REJECTED, State.CANCELLED, State.EXPIRED)
# Extra time past the WhatCounts client's own bound before a SENDING request counts as lost.
SENDING_GRACE = timedelta(seconds=2)
# Seconds an outcome is tried again while the database does not answer (see `Lifecycle._finish`).
OUTCOME_PATIENCE = 30.0
# What of WhatCounts' answer the log keeps when an outcome cannot be recorded: enough to record it by hand.
ANSWER_DETAILS = ("http_status", "whatcounts_id", "whatcounts_status")
TOO_LATE = ("Not sent: the bot was held up before it could call WhatCounts, past the time it allows "
            "itself for a send, so it gave up without sending. Request the send again.")


WITHDRAWN = "Withdrawn by an admin of the sender code before anyone decided."
WITHDRAWN_SCHEDULED = "Withdrawn by an admin of the sender code before its time to send."
# What a refusal by the sender code's rules at the moment of sending says the moment was.
AT_APPROVAL, AT_SEND_AT = "at approval", "at its time"
# Where the requester and an admin may still stop a request: before anyone decided, and while it waits for its time.
STOPPABLE = (State.PENDING, State.SCHEDULED)
ALREADY_SUBMITTED = "This form was already submitted: its request is in the channel."


@dataclass(frozen=True)
class Refused:
    """The user may not do this; nothing changed."""

    reason: str
    sender_code: str | None = None  # the request's, for the audit trail; None: there is no such request
    repeat: bool = False  # the same person's second click: not worth keeping in the audit trail


@dataclass(frozen=True)
class Closed:
    """The request is no longer pending; nothing changed."""

    view: RequestView


@dataclass(frozen=True)
class SendClaim:
    """What `execute` needs of the claim it sends for."""

    # time.monotonic() before the claiming transaction began. The claim's sending deadline runs from no
    # earlier than this, so `execute` can tell what is left of it without asking the database.
    claimed_at: float
    # WhatCounts' messages, listed afresh once the claim's checks passed, for the approved-text check.
    listing: Future[list[SmsMessage] | None]


@dataclass(frozen=True)
class Changed:
    """The user's action took effect. `claim` is set for the one claim that must now send (see `execute`)."""

    view: RequestView
    claim: SendClaim | None = None

    @property
    def send(self) -> bool:
        return self.claim is not None


Decision = Refused | Closed | Changed


@dataclass(frozen=True)
class Invalid:
    """The form cannot be requested as filled in: a sentence per form field. Nothing changed."""

    errors: dict[str, str]


P = ParamSpec("P")
Decide = Callable[Concatenate["Lifecycle", str, str, P], Decision]


def _refusals_audited(action: str) -> Callable[[Decide[P]], Decide[P]]:
    """Keep every refused `action` (a stranger's Approve, a self-approval...) in the audit trail.

    Recorded after the decision's own transaction has ended, in one of its own that adds
    the audit row and nothing else.
    """
    def wrap(decide: Decide[P]) -> Decide[P]:
        @functools.wraps(decide)
        def decided(self: Lifecycle, request_id: str, user_id: str, /, *args: P.args, **kwargs: P.kwargs) -> Decision:
            decision = decide(self, request_id, user_id, *args, **kwargs)
            if isinstance(decision, Refused) and not decision.repeat:
                known = decision.sender_code is not None  # else the id is whatever the click carried
                audit.record_refusal(self.sessions, user_id, action, decision.reason,
                                     request_id=request_id if known else None, sender_code=decision.sender_code,
                                     **({} if known else {"request": request_id}))
            return decision
        return decided
    return wrap


@dataclass(frozen=True)
class Unregistered:
    """The chosen sender code is not in the registry, so nothing can be requested for it yet. Nothing changed."""

    code: str


@dataclass
class Lifecycle:
    sessions: sessionmaker[Session]
    whatcounts: WhatCountsClient | None  # None where nothing is sent (the command line)
    request_ttl: timedelta = timedelta(minutes=60)
    # The time, asked of the database (see the module docstring); tests move it.
    clock: Callable[[Session], datetime] = field(default=database_now)
    messages: MessageCatalog | None = None  # None: message names cannot be checked
    dry_run: bool = False  # WHATCOUNTS_DRY_RUN: everything but the POST
    send_at_max: timedelta = timedelta(days=7)  # SEND_AT_MAX_DAYS: how far ahead a send may be set
    # SEND_AT_GRACE_MINUTES: how late past its time a scheduled send still goes (the bot was down); then it fails.
    send_at_grace: timedelta = timedelta(minutes=15)

    def view(self, request_id: str) -> RequestView | None:
        with self.sessions() as session:
            return read_view(session, request_id)

    # --- creating --------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        """Made before the request is stored, so its card can be posted first."""
        return secrets.token_hex(6)

    def draft(self, requester_id: str, team_id: str, channel_id: str, fields: RequestFields,
              quiet_override: str | None = None,
              send_at: datetime | None = None) -> SendRequest | Invalid | Unregistered:
        """A request not yet stored, checked against the sender code's rules, for posting its card first.

        `quiet_override`: an admin's reason to request a send inside quiet hours. `send_at` (naive UTC):
        send then, once approved, rather than at approval; approvals must then come before it (and its
        grace), so the request expires by then at the latest.
        """
        code = fields.sender_code
        with self.sessions() as session:
            now = self.clock(session)
            if not grants.has_role(session, requester_id, Role.REQUESTER, code):
                return Invalid({"sender_code": f"You have no grant to request sends for sender code {code}."})
            rules = get_rules(session, code)
            if rules is None:
                return Unregistered(code)
            errors: dict[str, str] = {}
            quiet_now = None if send_at is not None or quiet_override else sending.quiet_problem(rules, now)
            if quiet_now:
                quiet_now += " " + sending.next_allowed_offer(rules, now)
            if problem := (sending.channel_problem(rules, channel_id)
                           or sending.cap_problem(session, rules, send_at or now, self.dry_run) or quiet_now):
                errors["sender_code"] = problem
            if send_at is not None and (problem := sending.send_at_problem(
                    rules, send_at, now, self.send_at_max, quiet_overridden=bool(quiet_override))):
                errors["send_at"] = problem
            if problem := sending.group_problem(rules, fields.group_name):
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
            approvals_required=rules.approvals_for(fields.group_name), allow_self_approval=rules.self_approval,
            created_at=now, expires_at=min(now + self.request_ttl, send_at + self.send_at_grace) if send_at
            else now + self.request_ttl, send_at=send_at, version=1, card_version=1,
            outcome_posted=False, message_text=text, message_verified=text is not None,
            sender_label=rules.label,
            quiet_hours=rules.quiet_hours,
            quiet_override=quiet_override, dry_run=self.dry_run,
        )

    def preview(self, draft: SendRequest) -> RequestView:
        """A drafted request as its card is first posted: with whom it asks to approve, whose
        mentions on that first post are what notifies them."""
        with self.sessions() as session:
            return RequestView(draft, asked=who_is_asked(session, draft))

    def store(self, draft: SendRequest, card_ts: str) -> RequestView | Refused:
        """Store a drafted request once its card is posted; grants are checked again.

        A draft with a `view_id` already stored (the same form submitted twice) is refused
        with `ALREADY_SUBMITTED`: one form makes at most one request.
        """
        try:
            with self.sessions.begin() as session:
                if not grants.has_role(session, draft.requester_id, Role.REQUESTER, draft.sender_code):
                    return Refused(f"You have no grant to request sends for sender code {draft.sender_code}.")
                draft.card_ts = card_ts
                session.add(draft)
                session.flush()  # the unique view id is judged here, before anything is audited
                audit.record(session, "requested", draft.requester_id, request_id=draft.id,
                             sender_code=draft.sender_code, channel_id=draft.channel_id,
                             message_name=draft.message_name, campaign_name=draft.campaign_name,
                             description=draft.description, group_name=draft.group_name,
                             approvals_required=draft.approvals_required, message_verified=draft.message_verified,
                             dry_run=draft.dry_run, **_send_at_detail(draft))
                if draft.quiet_override:
                    audit.record(session, "quiet_override", draft.requester_id, request_id=draft.id,
                                 sender_code=draft.sender_code,
                                 quiet_hours=str(draft.quiet_hours) if draft.quiet_hours else None,
                                 reason=draft.quiet_override)
        except IntegrityError:
            if draft.view_id is not None and self.submitted(draft.view_id) is not None:
                return Refused(ALREADY_SUBMITTED)
            raise
        return RequestView(draft)

    def submitted(self, view_id: str) -> RequestView | None:
        """The request already made from this Slack form, if any."""
        with self.sessions() as session:
            found = session.scalar(select(SendRequest.id).where(SendRequest.view_id == view_id))
            return read_view(session, found) if found is not None else None

    # --- deciding --------------------------------------------------------------------

    @_refusals_audited("approve")
    def approve(self, request_id: str, approver_id: str, note: str | None = None) -> Decision:
        """Record one approval, with the approver's optional `note`; the approval that completes the
        count claims the send, in the same transaction (see `_claim_if_ready`)."""
        started = time.monotonic()
        code = None  # the request's sender code, once it is found
        try:
            with self.sessions.begin() as session:
                found = self._open_pending(session, request_id)
                if not isinstance(found, SendRequest):
                    return found
                request, code = found, found.sender_code
                if not grants.has_role(session, approver_id, Role.APPROVER, request.sender_code):
                    return Refused(f"You need an approver grant for sender code {request.sender_code} to approve.",
                                   request.sender_code)
                if approver_id == request.requester_id and not request.allow_self_approval:
                    return Refused("You asked for this send, so someone else must approve it.",
                                   request.sender_code)
                session.add(Approval(request_id=request_id, approver_id=approver_id,
                                     approved_at=self._now(session), note=note))
                session.flush()  # a second approval by the same person breaks the primary key here
                # The request's row stays locked from here to the commit: approvals of one request take turns.
                bumped = rows_matched(session, update(SendRequest).where(
                    SendRequest.id == request_id, SendRequest.state == State.PENDING,
                ).values(version=SendRequest.version + 1))
                if bumped != 1:
                    session.rollback()
                    return Closed(self._require_view(request_id))
                audit.record(session, "approved", approver_id, request_id=request_id,
                             sender_code=request.sender_code, **({"note": note} if note else {}))
                if (claim := self._claim_if_ready(session, request, approver_id, started)) is not None:
                    return claim
        except IntegrityError:
            if code is None:
                raise
            return Refused("You have already approved this request.", code, repeat=True)
        # Not enough approvals as our transaction saw them: counted again after our commit, so that of
        # approvals committing together, whichever counts last sees every one; the claim lets only one win.
        started = time.monotonic()
        with self.sessions.begin() as session:
            if (claim := self._claim_if_ready(session, request, approver_id, started)) is not None:
                return claim
            view = self._require_view_in(session, request_id)
        return Changed(view) if view.request.state == State.PENDING else Closed(view)

    def _claim_if_ready(self, session: Session, request: SendRequest, approver_id: str,
                        started: float) -> Decision | None:
        """Once the request has the approvals it needs, claim it with one conditional UPDATE that only one
        approval can win: SENDING (to be sent by `execute`), SCHEDULED if it has a time to send, or FAILED
        with the reason the checks at approval stop it. None: it is still pending, short of approvals."""
        request_id = request.id
        standing = _standing(session, request)
        if standing.state != State.PENDING or standing.approvals < request.approvals_required:
            return None
        enough = select(func.count()).select_from(Approval).where(
            Approval.request_id == request_id).scalar_subquery() >= SendRequest.approvals_required
        now = self._now(session)
        claimed = scheduled = False
        later = request.send_at is not None  # approved, it waits for its time (`start_due_sends`)
        stop = None if later else self._claim_check(session, request, standing, now, AT_APPROVAL)
        sending = self._begin_send(started) if not later and stop is None else None
        if later:
            scheduled = self._transition(session, request_id, (State.PENDING,), State.SCHEDULED, enough,
                                         SendRequest.expires_at > now)
            if scheduled:
                audit.record(session, "scheduled", approver_id, request_id=request_id,
                             sender_code=request.sender_code, **_send_at_detail(request))
        elif stop is None:
            claimed = self._transition(session, request_id, (State.PENDING,), State.SENDING, enough,
                                       SendRequest.expires_at > now, sending_deadline=self._sending_deadline(now))
            if claimed:
                audit.record(session, "sending", approver_id, request_id=request_id,
                             sender_code=request.sender_code)
        elif self._transition(session, request_id, (State.PENDING,), State.FAILED, enough,
                              finished_at=now, reason=stop, outcome_posted=False):
            audit.record(session, "failed", "system", request_id=request_id, sender_code=request.sender_code,
                         reason=stop)
        view = self._require_view_in(session, request_id)
        if not claimed and not scheduled and view.request.state not in (State.PENDING, State.FAILED):
            return Closed(view)  # another approval won the race; ours changed nothing that matters
        return Changed(view, sending if claimed else None)

    def _begin_send(self, started: float) -> SendClaim:
        """A claim whose checks have passed, begun `started`: WhatCounts' messages are listed on a thread
        of its own from now, so the approved-text check waits for no round trip to WhatCounts after the
        claim commits. It only reads, so a claim that another process wins simply drops it."""
        whatcounts = self.whatcounts
        assert whatcounts is not None
        listing: Future[list[SmsMessage] | None] = Future()

        def run() -> None:
            try:
                listing.set_result(whatcounts.list_messages(budget=_time_left(whatcounts, started)))
            except BaseException as exc:  # handed to whoever waits for the listing
                listing.set_exception(exc)
        threading.Thread(target=contextvars.copy_context().run, args=(run,), name="sms-bot-listing",
                         daemon=True).start()
        return SendClaim(started, listing)

    def _sending_deadline(self, now: datetime) -> datetime:
        """When a send claimed `now` counts as lost: after the longest `execute` can take, and a grace."""
        assert self.whatcounts is not None
        return now + timedelta(seconds=self.whatcounts.max_duration()) + SENDING_GRACE

    @staticmethod
    def _claim_check(session: Session, request: SendRequest, standing: Standing, now: datetime,
                     moment: str) -> str | None:
        """What a send is checked against as it is claimed, just before it goes: the grants of the requester
        and the approvers (a revoked grant stops it), and the rules, with the sender code's row locked so that
        concurrent claims of one code count each other's sends. A reason means: do not send."""
        code = request.sender_code
        if not standing.requester_granted:
            return f"Not sent: the requester no longer holds a requester grant for {code}."
        if standing.approvers_granted < request.approvals_required:
            return "Not sent: an approver's grant was revoked before the send."
        rules = sending.lock_sender_code(session, code)
        if rules is None:
            return f"Not sent: sender code {code} is no longer registered."
        if not request.quiet_override and (problem := sending.quiet_problem(rules, now)):
            return f"Not sent {moment}: {problem}"
        if problem := sending.cap_problem(session, rules, now, request.dry_run):
            return f"Not sent {moment}: {problem}"
        return None

    @_refusals_audited("reject")
    def reject(self, request_id: str, user_id: str, reason: str) -> Decision:
        """Reject, saying why: the reason is kept as the request's and in the audit trail."""
        return self._close(request_id, user_id, State.REJECTED, "rejected", self._may_reject, reason=reason)

    @_refusals_audited("cancel")
    def cancel(self, request_id: str, user_id: str) -> Decision:
        """The requester stops their request: while it is pending, or approved and waiting for its time."""
        return self._close(request_id, user_id, State.CANCELLED, "cancelled", self._may_cancel, open_in=STOPPABLE)

    @_refusals_audited("withdraw")
    def withdraw(self, request_id: str, admin_id: str) -> Decision:
        """An admin of the sender code clears a pending request nobody decided, or a scheduled one before its
        time (it ends as cancelled)."""
        return self._close(request_id, admin_id, State.CANCELLED, "withdrawn", self._may_withdraw,
                           reason=WITHDRAWN, open_in=STOPPABLE)

    @staticmethod
    def _may_withdraw(session: Session, request: SendRequest, user_id: str) -> str | None:
        if grants.has_role(session, user_id, Role.ADMIN, request.sender_code):
            return None
        return f"Only an admin of sender code {request.sender_code} can withdraw a request."

    @staticmethod
    def _may_reject(session: Session, request: SendRequest, user_id: str) -> str | None:
        if grants.has_role(session, user_id, Role.APPROVER, request.sender_code):
            return None
        return f"You need an approver grant for sender code {request.sender_code} to reject."

    @staticmethod
    def _may_cancel(_session: Session, request: SendRequest, user_id: str) -> str | None:
        return None if user_id == request.requester_id else "Only the person who asked for this send can cancel it."

    def _close(self, request_id: str, user_id: str, state: State, event: str,
               check: Callable[[Session, SendRequest, str], str | None], reason: str | None = None,
               open_in: tuple[State, ...] = (State.PENDING,)) -> Decision:
        """End a request that is in one of `open_in`; a withdrawn scheduled one says so in its reason."""
        with self.sessions.begin() as session:
            found = self._open_pending(session, request_id, open_in)
            if not isinstance(found, SendRequest):
                return found
            if (refusal := check(session, found, user_id)) is not None:
                return Refused(refusal, found.sender_code)
            if reason == WITHDRAWN and found.state == State.SCHEDULED:
                reason = WITHDRAWN_SCHEDULED
            if not self._transition(session, request_id, (found.state,), state,
                                    closed_by=user_id, finished_at=database_utcnow(), reason=reason):
                session.rollback()
                return Closed(self._require_view(request_id))
            audit.record(session, event, user_id, request_id=request_id, sender_code=found.sender_code,
                         **({"reason": reason} if reason else {}))
            view = read_view(session, request_id)
        assert view is not None
        return Changed(view)

    def _open_pending(self, session: Session, request_id: str,
                      open_in: tuple[State, ...] = (State.PENDING,)) -> SendRequest | Refused | Closed:
        """The request if it is still pending (or in another of `open_in`); expires it on the way if its time is up."""
        request = session.get(SendRequest, request_id)
        if request is None:
            return Refused("This request no longer exists.")
        now = self._now(session)
        if request.state == State.PENDING and request.expires_at <= now:
            if self._transition(session, request_id, (State.PENDING,), State.EXPIRED,
                                SendRequest.expires_at <= now, finished_at=now,
                                reason="No decision before it expired."):
                audit.record(session, "expired", "system", request_id=request_id, sender_code=request.sender_code)
            session.refresh(request)
        if request.state not in open_in:
            return Closed(self._require_view_in(session, request_id))
        return request

    # --- sending ---------------------------------------------------------------------

    def execute(self, claimed: Changed, posted: Callable[[], None] | None = None) -> RequestView:
        """Call WhatCounts for a send this process claimed (`claimed.claim`), and record the outcome;
        `posted` is called once the POST is written, while WhatCounts' answer is awaited.

        Nothing is written between the claim and the POST: the claim's sending deadline covers the
        longest this can take (WhatCounts' messages listed afresh, begun with the claim, then the
        POST, each bounded by the client's timeout), and each is given only what is left of it,
        counted on this process's clock from before the claim. So no sweep can give the send up for
        lost while it is still under way here, and a send held up past its deadline stops unsent.
        """
        whatcounts, claim = self.whatcounts, claimed.claim
        assert whatcounts is not None and claim is not None
        request = claimed.view.request
        try:  # the listing bounds itself by the same clock; a second's grace, and no wait without end
            listed = claim.listing.result(timeout=max(0.0, _time_left(whatcounts, claim.claimed_at)) + 1.0)
        except FutureTimeout:
            listed = None  # as if WhatCounts could not be asked
        stop = approved_text.send_time_problem(request, listed)
        if stop is not None:
            return self._finish(request, State.FAILED, "failed", reason=stop)
        if request.dry_run or self.dry_run:
            return self._finish(request, State.SENT, "sent", whatcounts_status="dry run", dry_run=True,
                                reason=dry_run_summary(request))
        if (budget := _time_left(whatcounts, claim.claimed_at)) <= 0:
            return self._finish(request, State.FAILED, "failed", reason=TOO_LATE)
        outcome = whatcounts.send(request.message_name, request.sender_code, request.campaign_name,
                                  request.description, request.group_name, budget=budget, written=posted)
        return self._record(request, outcome)

    def _record(self, request: SendRequest, outcome: Outcome) -> RequestView:
        match outcome:
            case Sent(id=wc_id, status=status):
                stored_id, stored_status = _fit(SendRequest.whatcounts_id, wc_id), _fit(
                    SendRequest.whatcounts_status, status)
                note = None if (stored_id, stored_status) == (wc_id, status) else (
                    "WhatCounts answered with a longer id or status than the bot stores; in full: id "
                    f"“{_clip(wc_id, 1000)}”, status “{_clip(status, 1000)}” (also in the audit trail).")
                return self._finish(request, State.SENT, "sent", whatcounts_id=stored_id,
                                    whatcounts_status=stored_status, http_status=200, reason=note,
                                    _audit={"whatcounts_id": wc_id, "whatcounts_status": status})
            case Rejected(http_status=code, error=error):
                return self._finish(request, State.FAILED, "failed", http_status=code, error_text=error)
            case NotSent(reason=reason):
                return self._finish(request, State.FAILED, "failed", reason=f"Not sent: {reason}.")
            case Unknown(reason=reason, http_status=code):
                return self._finish(request, State.UNKNOWN, "unknown", reason=f"Outcome unknown: {reason}.",
                                    http_status=code)
        raise AssertionError(outcome)

    def _finish(self, request: SendRequest, state: State, event: str, _audit: dict[str, object] | None = None,
                **values: object) -> RequestView:
        """Record an outcome of ours, with its audit event in the same transaction.

        From UNKNOWN too: a real answer that arrives after a sweep gave up on us still wins. An
        answer that arrives after an outcome was recorded otherwise (an admin's `resolve`) is
        never dropped: see `_late_outcome`. `_audit` overrides what the audit event says.

        WhatCounts cannot be asked again what it answered, so while the database does not answer
        the outcome is tried again, for up to `OUTCOME_PATIENCE` seconds; then it is logged in
        full for an admin to record, and the sweep calls the send unknown.
        """
        details = {k: v for k, v in {**values, **(_audit or {})}.items() if v is not None}
        started, pause = time.monotonic(), 0.25
        while True:
            try:
                with self.sessions.begin() as session:
                    if self._transition(session, request.id, (State.SENDING, State.UNKNOWN), state,
                                        finished_at=database_utcnow(), outcome_posted=False, **values):
                        audit.record(session, event, "system", request_id=request.id,
                                     sender_code=request.sender_code, **details)
                    else:
                        self._late_outcome(session, request, state, event, values, details)
                    return self._require_view_in(session, request.id)
            except (OperationalError, PoolTimeoutError) as exc:
                if time.monotonic() + pause - started > OUTCOME_PATIENCE:
                    answer = ", ".join(f"{k} {details[k]}" for k in ANSWER_DETAILS if k in details)
                    log.error("request %s: outcome %s (%s) not recorded: the database did not answer for %.0f s; "
                              "record it with `sms-bot resolve` once the sweep calls it unknown", request.id,
                              event, answer or "no answer from WhatCounts", time.monotonic() - started)
                    raise
                log.warning("request %s: outcome %s not recorded yet (%s), trying again in %.2g s", request.id,
                            event, type(exc).__name__, pause)
                time.sleep(pause)
                pause = min(2 * pause, 4.0)

    def _late_outcome(self, session: Session, request: SendRequest, state: State, event: str,
                      values: dict[str, object], details: dict[str, object]) -> None:
        """Our outcome came after another was recorded. If they agree, it is only audited; if one
        says sent and the other not, the request becomes UNKNOWN again with both told, for an admin
        to resolve, and the conflict is audited: state and audit trail never disagree."""
        recorded = session.get(SendRequest, request.id, populate_existing=True)
        assert recorded is not None
        was = State(recorded.state)
        conflict = was in (State.SENT, State.FAILED) and state != State.UNKNOWN and (was == State.SENT) != (
            state == State.SENT)
        if not conflict:
            log.warning("request %s: outcome %s arrived after it was recorded as %s", request.id, state, was)
            audit.record(session, "late_outcome", "system", request_id=request.id, sender_code=request.sender_code,
                         outcome=event, recorded=str(was), **details)
            return
        log.warning("request %s: outcome %s contradicts the recorded %s", request.id, state, was)
        recorded_as = "sent" if was == State.SENT else "not sent"
        by = f" by {recorded.closed_by}" if recorded.closed_by else ""
        reason = (f"Conflicting outcomes: this send was recorded as {recorded_as}{by} "
                  f"(“{_clip(recorded.reason or recorded.error_text or '', 300)}”), and then "
                  f"{_late_answer(state, values)}.")
        extra = {k: values[k] for k in ("whatcounts_id", "whatcounts_status") if values.get(k) is not None}
        reopened = self._transition(session, request.id, (was,), State.UNKNOWN, reason=reason,
                                    outcome_posted=False, finished_at=database_utcnow(), **extra)
        # Not reopened: the record changed again meanwhile; the answer is still kept in the trail.
        audit.record(session, "late_outcome_conflict" if reopened else "late_outcome", "system",
                     request_id=request.id, sender_code=request.sender_code, outcome=event, recorded=str(was),
                     recorded_by=recorded.closed_by, **details)

    def resolve(self, request_id: str, admin_id: str, sent: bool, note: str) -> RequestView | Refused:
        """An admin records what WhatCounts support said about an unknown outcome (the command
        line's `resolve` and Slack's "Record outcome"). A refusal to someone without the grant is audited."""
        with self.sessions.begin() as session:
            request = session.get(SendRequest, request_id)
            if request is None:
                return Refused(f"No request {request_id}.")
            code = request.sender_code
            if grants.has_role(session, admin_id, Role.ADMIN, code):
                state = State.SENT if sent else State.FAILED
                verdict = "sent" if sent else "not sent"
                if not self._transition(session, request_id, (State.UNKNOWN,), state, closed_by=admin_id,
                                        reason=f"Recorded as {verdict}: {note}",
                                        outcome_posted=False):
                    return Refused(f"Request {request_id} is {request.state}, not unknown.", code)
                audit.record(session, "resolved", admin_id, request_id=request_id, sender_code=code,
                             outcome=verdict, note=note)
                view = read_view(session, request_id)
                assert view is not None
                return view
        reason = f"Only an admin of sender code {code} can record the outcome of its sends (no admin grant)."
        audit.record_refusal(self.sessions, admin_id, "resolve", reason, request_id=request_id, sender_code=code)
        return Refused(reason, code)

    # --- sweeping (every process, every few seconds; safe to run concurrently) ---------

    def start_due_sends(self) -> Iterator[Changed]:
        """Scheduled requests whose time has come, each claimed by one conditional UPDATE (SCHEDULED to
        SENDING, as an approval claims a send) after the checks a send at approval makes: whichever
        process's sweep wins calls `execute` (`send` is True), the others find it gone. One the rules
        stop, or whose time passed more than `send_at_grace` ago (every process was down), fails with
        its reason instead, to be told like any outcome."""
        with self.sessions() as session:
            now = self.clock(session)
            ids = list(session.scalars(select(SendRequest.id).where(
                SendRequest.state == State.SCHEDULED, SendRequest.send_at <= now)
                .order_by(SendRequest.send_at, SendRequest.id)))
        for request_id in ids:  # claimed one at a time, each as the caller is ready to send it, so that
            # a claim's sending deadline never runs while the sends before it are still at WhatCounts
            if (started := self._start_due(request_id)) is not None:
                yield started

    def _start_due(self, request_id: str) -> Changed | None:
        started = time.monotonic()
        with self.sessions.begin() as session:
            request = session.get(SendRequest, request_id)
            if request is None or request.state != State.SCHEDULED or request.send_at is None:
                return None
            now = self._now(session)
            due = SendRequest.send_at <= now
            if request.send_at <= now - self.send_at_grace:
                stop: str | None = missed_send_at(request.send_at, now, self.send_at_grace)
            else:
                stop = self._claim_check(session, request, _standing(session, request), now, AT_SEND_AT)
            sending = self._begin_send(started) if stop is None else None
            if stop is None:
                if not self._transition(session, request_id, (State.SCHEDULED,), State.SENDING, due,
                                        sending_deadline=self._sending_deadline(now)):
                    return None
                audit.record(session, "sending", "system", request_id=request_id, sender_code=request.sender_code,
                             **_send_at_detail(request))
            elif self._transition(session, request_id, (State.SCHEDULED,), State.FAILED, due, finished_at=now,
                                  reason=stop, outcome_posted=False):
                audit.record(session, "failed", "system", request_id=request_id, sender_code=request.sender_code,
                             reason=stop)
            else:
                return None
            view = self._require_view_in(session, request_id)
        return Changed(view, sending)

    def expire_due(self) -> list[RequestView]:
        return self._sweep(State.PENDING, SendRequest.expires_at, State.EXPIRED, "expired",
                           reason="No decision before it expired.")

    def mark_lost_sends(self) -> list[RequestView]:
        """SENDING past its deadline (on the database's clock): the process that was sending died. Never re-sent."""
        return self._sweep(State.SENDING, SendRequest.sending_deadline, State.UNKNOWN, "unknown",
                           reason=("Outcome unknown: the bot stopped while WhatCounts was being called, so it "
                                   "cannot tell whether the message went out."))

    def _sweep(self, from_state: State, due: InstrumentedAttribute[datetime | None], state: State, event: str,
               reason: str) -> list[RequestView]:
        """Move every request in `from_state` whose `due` time has come to `state`, each in its own transaction."""
        with self.sessions() as session:
            now = self.clock(session)
            ids = list(session.scalars(select(SendRequest.id).where(SendRequest.state == from_state, due <= now)))
        changed = []
        for request_id in ids:
            with self.sessions.begin() as session:
                if self._transition(session, request_id, (from_state,), state, due <= now,
                                    finished_at=now, reason=reason, outcome_posted=False):
                    request = session.get(SendRequest, request_id)
                    audit.record(session, event, "system", request_id=request_id,
                                 sender_code=request.sender_code if request else None)
                    view = read_view(session, request_id)
                    if view is not None:
                        changed.append(view)
        return changed

    # --- helpers ---------------------------------------------------------------------

    def _now(self, session: Session) -> datetime:
        """`clock`, asked once per session (each transaction here has its own): PostgreSQL's now() is the
        transaction's start anyway, and one moment per transaction is what its checks and stamps need."""
        now = session.info.get("now")
        if now is None:
            now = session.info["now"] = self.clock(session)
        assert isinstance(now, datetime)
        return now

    @staticmethod
    def _transition(session: Session, request_id: str, from_states: Iterable[State], to_state: State,
                    *where: ColumnElement[bool], **values: object) -> bool:
        stmt = update(SendRequest).where(SendRequest.id == request_id, SendRequest.state.in_(tuple(from_states)),
                                         *where).values(state=to_state, version=SendRequest.version + 1, **values)
        return rows_matched(session, stmt) == 1

    def _require_view(self, request_id: str) -> RequestView:
        with self.sessions() as session:
            return self._require_view_in(session, request_id)

    def _require_view_in(self, session: Session, request_id: str) -> RequestView:
        view = read_view(session, request_id)
        assert view is not None, request_id
        return view


@dataclass(frozen=True)
class Standing:
    """Where a request stands as its send is claimed, read in one query (`_standing`)."""

    state: State
    approvals: int
    approvers_granted: int  # how many of its approvers still hold an approver grant for its sender code
    requester_granted: bool  # whether its requester still holds a requester grant for it


def _standing(session: Session, request: SendRequest) -> Standing:
    code = request.sender_code
    approvers = select(Approval.approver_id).where(Approval.request_id == request.id)
    state, approvals, granted, requester = session.execute(select(
        SendRequest.state,
        select(func.count()).select_from(approvers.subquery()).scalar_subquery(),
        grants.holding(approvers, Role.APPROVER, code),
        grants.holds(request.requester_id, Role.REQUESTER, code),
    ).where(SendRequest.id == request.id)).one()
    return Standing(State(state), approvals, granted, bool(requester))


def _time_left(whatcounts: WhatCountsClient, claimed_at: float) -> float:
    """Seconds the next step of a send claimed at `claimed_at` (monotonic) may take: the client's timeout,
    or less, so that the step ends inside the claim's sending deadline."""
    return min(whatcounts.timeout, whatcounts.max_duration() - (time.monotonic() - claimed_at))


def _send_at_detail(request: SendRequest) -> dict[str, str]:
    """The audit trail's record of a request's time to send (ISO 8601, UTC), if it has one."""
    return {"send_at": f"{request.send_at.isoformat(timespec='seconds')}Z"} if request.send_at else {}


def missed_send_at(send_at: datetime, now: datetime, grace: timedelta) -> str:
    """Why a scheduled send found past its time (every bot process was down then) is not sent late."""
    late = int((now - send_at) / timedelta(minutes=1))
    allowed = int(grace / timedelta(minutes=1))
    return (f"Not sent: it was to be sent at {send_at:%Y-%m-%d %H:%M} UTC, when the bot was not running, and "
            f"{late} minutes late is past the {allowed} minutes it may still go. Request it again if it is "
            "still wanted.")


def _fit(column: object, text: str) -> str:
    """`text` clipped to what a String(n) column holds."""
    length = getattr(getattr(column, "type", None), "length", None)
    return text if length is None or len(text) <= length else text[:length - 1] + "…"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def dry_run_summary(request: SendRequest) -> str:
    """What a dry run would have sent, in words: the outcome people read and the audit trail keep."""
    audience = f"the group “{request.group_name}”" if request.group_name else "ALL CONTACTS of the sender code"
    described = f", described as “{request.description}”" if request.description else ""
    return (f"DRY RUN: WhatCounts was not called. It would have sent the SMS message “{request.message_name}” "
            f"from sender code {request.sender_code} to {audience}, as the campaign “{request.campaign_name}”"
            f"{described}.")


def _late_answer(state: State, values: dict[str, object]) -> str:
    if state == State.SENT:
        return (f"WhatCounts answered that it accepted the send (id {values.get('whatcounts_id')}, status "
                f"{values.get('whatcounts_status')}), so it has most likely gone out")
    if values.get("http_status"):
        return (f"WhatCounts answered that it refused the send (HTTP {values['http_status']}: "
                f"“{_clip(str(values.get('error_text') or ''), 300)}”)")
    return f"the bot found: {_clip(str(values.get('reason') or ''), 300)}"
