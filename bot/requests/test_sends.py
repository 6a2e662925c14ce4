"""A test of a waiting request's message, sent to the clicker's own registered phone.

One click sends at most once: the click is claimed in the database before WhatCounts is
called (a row in `test_sends`, unique per request, person and Slack's `action_ts`), with the
clicker's phone row locked while the limits are counted, so double clicks, a repeated
interaction and replicas racing each other cannot send twice or past the limits. The POST is
never retried once it may have reached WhatCounts: a timeout or a gateway's page is told as
unknown, and the person decides whether to click again.

The text sent is the message's text as WhatCounts has it now (listed afresh, never from the
catalogue's cache), through the request's sender code, so the test shows what would go out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.quiet_hours import format_time
from bot.rules import grants, test_phones
from bot.rules.sender_codes import get_rules
from bot.store import audit
from bot.store.engine import database_now
from bot.store.models import Role, SendRequest, State, TestSend, TestSendOutcome
from bot.text import Line, Reply, User, line, plain, reply
from bot.whatcounts.client import NotSent, Outcome, Rejected, Sent, Unknown, WhatCountsClient

log = logging.getLogger(__name__)

# A second click by the same person on the same card this soon after the last is taken for a double click.
DOUBLE_CLICK = timedelta(seconds=10)
DAY = timedelta(hours=24)
# Outcomes that used up a test send: everything but a call that certainly never reached WhatCounts.
COUNTED = tuple(o for o in TestSendOutcome if o is not TestSendOutcome.NOT_SENT)


@dataclass(frozen=True)
class TestSendLimits:
    """TEST_SENDS_PER_REQUEST (0: no test sends at all) and TEST_SENDS_PER_DAY, per person."""

    __test__ = False
    per_request: int = 3
    per_day: int = 10


@dataclass(frozen=True)
class TestSendResult:
    """`told`: for the clicker alone. `note`: for the card's thread (None: nothing to note), never the phone."""

    __test__ = False
    told: Reply
    request: SendRequest | None = None
    note: Reply | None = None


@dataclass(frozen=True)
class _Refusal:
    reason: str
    sender_code: str | None = None
    repeat: bool = False  # the same click again (a Slack retry): answered, not audited again


@dataclass(frozen=True)
class _Claim:
    request: SendRequest
    phone: str
    test_id: int


@dataclass
class TestSends:
    __test__ = False
    sessions: sessionmaker[Session]
    whatcounts: WhatCountsClient
    limits: TestSendLimits = field(default_factory=TestSendLimits)
    clock: Callable[[Session], datetime] = field(default=database_now)
    dry_run: bool = False  # WHATCOUNTS_DRY_RUN: no call at all

    def send(self, request_id: str, user_id: str, click: str) -> TestSendResult:
        """Handle one click on "Send test to my phone"; `click` tells a repeat of it from a new click."""
        claimed = self._claim(request_id, user_id, click)
        if isinstance(claimed, _Refusal):
            if not claimed.repeat:
                known = claimed.sender_code is not None  # else the id is whatever the click carried
                audit.record_refusal(self.sessions, user_id, "test_send", claimed.reason,
                                     request_id=request_id if known else None, sender_code=claimed.sender_code,
                                     **({} if known else {"request": request_id}))
            return TestSendResult(reply(claimed.reason))
        request, phone = claimed.request, claimed.phone
        if request.dry_run or self.dry_run:
            return self._finish(claimed, user_id, TestSendOutcome.DRY_RUN, reply(
                f"DRY RUN: WhatCounts was not called. A test send would have texted message “{request.message_name}” "
                f"to your phone {test_phones.mask(phone)} through sender code {request.sender_code}."),
                line("DRY RUN: a test of this message would have gone to ", User(user_id), "'s phone."))
        try:
            return self._call(claimed, user_id)
        except Exception:  # the claim stands (it may have gone out); say so rather than stay silent
            log.exception("request %s: test send failed inside the bot", request_id)
            return self._finish(claimed, user_id, TestSendOutcome.UNKNOWN, reply(
                "Test send outcome unknown: the bot hit an error while calling WhatCounts. It may still arrive "
                "on your phone; check before clicking again."), None, reason="error in the bot")

    def _call(self, claimed: _Claim, user_id: str) -> TestSendResult:
        request, phone = claimed.request, claimed.phone
        budget = self.whatcounts.timeout
        listed = self.whatcounts.list_messages(budget=budget)
        texts = [m.text for m in listed or () if m.name == request.message_name]
        if not texts:
            why = ("WhatCounts could not be asked for the message's current text" if listed is None else
                   f"WhatCounts no longer has an SMS message named “{request.message_name}”")
            return self._finish(claimed, user_id, TestSendOutcome.NOT_SENT, reply(
                f"Test not sent: {why}. Nothing was sent and it does not count against your test sends."),
                None, reason=why)
        text = texts[0]
        changed = request.message_verified and text != request.message_text
        outcome = self.whatcounts.send_to_phone(text, phone, request.sender_code, budget=budget)
        return self._record(claimed, user_id, outcome, changed)

    def _record(self, claimed: _Claim, user_id: str, outcome: Outcome, changed: bool) -> TestSendResult:
        request, where = claimed.request, f"your phone {test_phones.mask(claimed.phone)}"
        drift = (" Note: WhatCounts' text of this message is no longer the one on the card; the test carried "
                 "WhatCounts' text as it is now.") if changed else ""
        tested = {"text_changed": changed} if changed else {}
        match outcome:
            case Sent(id=wc_id, status=status):
                said = f" (WhatCounts id {wc_id})" if wc_id else ""
                return self._finish(claimed, user_id, TestSendOutcome.SENT, reply(
                    f"Test sent to {where} through sender code {request.sender_code}{said}.{drift}"),
                    line("Test sent to ", User(user_id), "'s phone."),
                    whatcounts_id=wc_id or None, whatcounts_status=status or None, **tested)
            case Rejected(http_status=code, error=said):
                error = test_phones.hide(said, claimed.phone)  # WhatCounts' words may name the phone
                return self._finish(claimed, user_id, TestSendOutcome.REFUSED, reply(
                    f"WhatCounts refused the test send to {where} (HTTP {code}): “{_clip(error, 300)}”. "
                    f"The bot does not try again by itself.{drift}"),
                    line("A test to ", User(user_id), f"'s phone was refused by WhatCounts (HTTP {code})."),
                    http_status=code, error_text=error, **tested)
            case NotSent(reason=reason):
                return self._finish(claimed, user_id, TestSendOutcome.NOT_SENT, reply(
                    f"Test not sent: {reason}. Nothing reached WhatCounts, so it does not count against your "
                    "test sends; click again to try."), None, reason=reason)
            case Unknown(reason=reason, http_status=code):
                return self._finish(claimed, user_id, TestSendOutcome.UNKNOWN, reply(
                    f"Test send outcome unknown: {reason}. It may still arrive on {where}. The bot does not try "
                    f"again by itself, so check your phone before clicking again.{drift}"),
                    line("A test to ", User(user_id), "'s phone may or may not have gone out: WhatCounts did "
                                                     "not answer clearly."),
                    reason=reason, http_status=code, **tested)
        raise AssertionError(outcome)

    def _claim(self, request_id: str, user_id: str, click: str) -> _Claim | _Refusal:
        try:
            with self.sessions.begin() as session:
                found = self._check(session, request_id, user_id, click)
                if isinstance(found, _Refusal):
                    return found
                request, phone = found
                now = self.clock(session)
                outcome = TestSendOutcome.DRY_RUN if request.dry_run or self.dry_run else TestSendOutcome.SENDING
                row = TestSend(request_id=request_id, user_id=user_id, click=click[:64], at=now, outcome=outcome)
                session.add(row)
                session.flush()  # a concurrent repeat of this click fails here, on the unique click
                if outcome is TestSendOutcome.SENDING:  # a dry run is audited once, when it is told
                    audit.record(session, "test_send", user_id, request_id=request_id,
                                 sender_code=request.sender_code, outcome=str(outcome), phone=test_phones.mask(phone))
                return _Claim(request, phone, row.id)
        except IntegrityError:
            return _Refusal("This click was already handled.", repeat=True)

    def _check(self, session: Session, request_id: str, user_id: str, click: str) -> tuple[SendRequest, str] | _Refusal:
        """Whether `user_id` may send a test of this request now, with their phone row locked; the request and phone."""
        request = session.get(SendRequest, request_id)
        if request is None:
            return _Refusal("This request no longer exists.")
        code = request.sender_code
        now = self.clock(session)
        if request.state != State.PENDING or request.expires_at <= now:
            return _Refusal("Test sends are only for requests still waiting for approval; this one is no longer "
                            "waiting.", code)
        role = Role.REQUESTER if user_id == request.requester_id else Role.APPROVER
        if not grants.has_role(session, user_id, role, code):  # held now, not only when it was requested
            return _Refusal(f"Only the requester and the approvers of sender code {code} can send this request's "
                            "message to their own test phone.", code)
        if self.limits.per_request == 0:
            return _Refusal("Test sends are turned off on this bot (TEST_SENDS_PER_REQUEST is 0).", code)
        phone = test_phones.phone_of(session, user_id, lock=True)
        if phone is None:
            return _Refusal("You have no test phone registered. An admin of every sender code can register one "
                            "for you (/sms-send admin test-phone set); nobody registers their own.", code)
        rules = get_rules(session, code)
        quiet = rules.quiet_hours if rules else None
        if quiet is not None and quiet.contains(now) and not request.quiet_override:
            return _Refusal(f"No test send now: it is {quiet.local_time(now):%H:%M} in {quiet.timezone}, inside "
                            f"sender code {code}'s quiet hours ({quiet.window}), as for the campaign. Try again "
                            f"after {format_time(quiet.end)}.", code)
        return self._within_limits(session, request, user_id, click, now) or (request, phone)

    def _within_limits(self, session: Session, request: SendRequest, user_id: str, click: str,
                       now: datetime) -> _Refusal | None:
        """Counted in the database while the clicker's phone row is locked, so replicas count each other's."""
        mine = select(TestSend).where(TestSend.request_id == request.id, TestSend.user_id == user_id)
        sends = list(session.scalars(mine))
        code = request.sender_code
        if any(s.click == click[:64] for s in sends):
            return _Refusal("This click was already handled.", code, repeat=True)
        in_flight = now - timedelta(seconds=self.whatcounts.max_duration()) - DOUBLE_CLICK
        if any(s.at > now - DOUBLE_CLICK or (s.outcome == TestSendOutcome.SENDING and s.at > in_flight)
               for s in sends):
            return _Refusal("Your test send from a moment ago is the one for this click: one click sends once. "
                            f"Wait {DOUBLE_CLICK.seconds} s, and for its answer, before asking for another.", code)
        used = sum(1 for s in sends if s.outcome in COUNTED)
        if used >= self.limits.per_request:
            return _Refusal(f"You have had {used} test sends for this request, the most allowed "
                            f"(TEST_SENDS_PER_REQUEST is {self.limits.per_request}).", code)
        today = session.scalar(select(func.count()).select_from(TestSend).where(
            TestSend.user_id == user_id, TestSend.at > now - DAY, TestSend.outcome.in_(COUNTED))) or 0
        if today >= self.limits.per_day:
            return _Refusal(f"You have had {today} test sends in the last 24 hours, the most allowed "
                            f"(TEST_SENDS_PER_DAY is {self.limits.per_day}).", code)
        return None

    def _finish(self, claimed: _Claim, user_id: str, outcome: TestSendOutcome, told: Reply, note: Line | None,
                **details: object) -> TestSendResult:
        """Record how the claimed test send ended, with its audit event, and what to tell whom."""
        request = claimed.request
        log.info("request %s: test send %s", request.id, outcome)
        with self.sessions.begin() as session:
            session.execute(update(TestSend).where(TestSend.id == claimed.test_id).values(outcome=outcome))
            audit.record(session, "test_send", user_id, request_id=request.id, sender_code=request.sender_code,
                         outcome=str(outcome), phone=test_phones.mask(claimed.phone), told=plain(told),
                         **{k: v for k, v in details.items() if v is not None})
        return TestSendResult(told, request, None if note is None else reply(note))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
