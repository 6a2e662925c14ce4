"""The request's life cycle on its own, with a clock the test turns: expiry, lost sends and races.

No Slack here: `Lifecycle` against a real database (SQLite and PostgreSQL) and WhatCounts'
fake on loopback, so the deadlines are exact and nothing waits for real time to pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bot.requests.fields import RequestFields
from bot.requests.lifecycle import SENDING_GRACE, TOO_LATE, Changed, Closed, Decision, Lifecycle
from bot.requests.reading import RequestView
from bot.store.models import SendRequest, State
from bot.whatcounts.client import WhatCountsClient
from tests.fakes import FakeWhatCounts, WhatCountsReply
from tests.harness import CHANNEL, CODE, WHATCOUNTS_PASSWORD, WHATCOUNTS_REALM, Database

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"
APPROVERS = [f"UAPPROVER{n}" for n in range(8)]
TTL = timedelta(minutes=60)


class Clock:
    """The database's time as the life cycle reads it, standing still until the test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 16, 12, 0)  # naive UTC, as the bot stores times

    def __call__(self, _session: Session) -> datetime:
        return self.now

    def move_to(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def whatcounts(fake_whatcounts: FakeWhatCounts) -> Iterator[WhatCountsClient]:
    client = WhatCountsClient(fake_whatcounts.url, WHATCOUNTS_REALM, WHATCOUNTS_PASSWORD, timeout=2)
    yield client
    client.close()


@pytest.fixture
def lifecycle(db: Database, whatcounts: WhatCountsClient, clock: Clock) -> Lifecycle:
    db.allow_sends(REQUESTER, APPROVER)
    for approver in APPROVERS:
        db.grant(approver, "approver")
    return Lifecycle(db.sessions, whatcounts, request_ttl=TTL, clock=clock)


def requested(lifecycle: Lifecycle) -> SendRequest:
    """A request drafted and stored, as the form's submission does once its card is posted."""
    draft = lifecycle.draft(REQUESTER, "T1", CHANNEL, RequestFields("Spring Sale", CODE, "Spring 2026"))
    assert isinstance(draft, SendRequest), draft
    stored = lifecycle.store(draft, card_ts="1700000000.000001")
    assert isinstance(stored, RequestView), stored
    return stored.request


def state(lifecycle: Lifecycle, request_id: str) -> State:
    view = lifecycle.view(request_id)
    assert view is not None
    return State(view.request.state)


def all_at_once(calls: list[Callable[[], Decision]]) -> list[Decision]:
    """Run the calls on threads released together; their results in the calls' order."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Decision]) -> Decision:
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


# --- expiry ---------------------------------------------------------------------------------

def test_a_request_expires_at_its_deadline_and_not_a_second_before(
        db: Database, lifecycle: Lifecycle, clock: Clock) -> None:
    request = requested(lifecycle)
    assert request.expires_at == clock.now + TTL
    clock.move_to(request.expires_at - timedelta(seconds=1))
    assert lifecycle.expire_due() == []
    assert state(lifecycle, request.id) == State.PENDING

    clock.move_to(request.expires_at)
    [expired] = lifecycle.expire_due()
    assert (expired.request.id, expired.request.state) == (request.id, State.EXPIRED)
    assert expired.request.reason == "No decision before it expired."
    assert lifecycle.expire_due() == []  # once
    assert db.events(request.id) == ["requested", "expired"]


def test_an_approval_a_second_before_the_deadline_sends(
        lifecycle: Lifecycle, clock: Clock, fake_whatcounts: FakeWhatCounts) -> None:
    request = requested(lifecycle)
    clock.move_to(request.expires_at - timedelta(seconds=1))
    decision = lifecycle.approve(request.id, APPROVER)
    assert isinstance(decision, Changed) and decision.send
    assert lifecycle.execute(decision).request.state == State.SENT
    assert len(fake_whatcounts.posts()) == 1


def test_a_click_after_the_deadline_finds_the_request_expired_without_a_sweep(
        db: Database, lifecycle: Lifecycle, clock: Clock, fake_whatcounts: FakeWhatCounts) -> None:
    request = requested(lifecycle)
    clock.move_to(request.expires_at)
    decision = lifecycle.approve(request.id, APPROVER)
    assert isinstance(decision, Closed) and decision.view.request.state == State.EXPIRED
    assert isinstance(lifecycle.cancel(request.id, REQUESTER), Closed)
    assert db.events(request.id) == ["requested", "expired"]
    assert fake_whatcounts.posts() == []


# --- lost sends -----------------------------------------------------------------------------

def claimed(lifecycle: Lifecycle) -> Changed:
    """A request approved and claimed for sending (SENDING), whose sender has not called WhatCounts yet."""
    request = requested(lifecycle)
    decision = lifecycle.approve(request.id, APPROVER)
    assert isinstance(decision, Changed) and decision.send
    return decision


def test_a_send_whose_process_died_becomes_unknown_at_its_deadline_and_is_never_sent(
        db: Database, lifecycle: Lifecycle, whatcounts: WhatCountsClient, clock: Clock,
        fake_whatcounts: FakeWhatCounts) -> None:
    request = claimed(lifecycle).view.request  # ... and then its process was killed
    deadline = clock.now + timedelta(seconds=whatcounts.max_duration()) + SENDING_GRACE
    assert request.sending_deadline == deadline

    clock.move_to(deadline - timedelta(seconds=1))  # it could still be waiting for WhatCounts
    assert lifecycle.mark_lost_sends() == []
    clock.move_to(deadline)
    [lost] = lifecycle.mark_lost_sends()
    assert lost.request.state == State.UNKNOWN and "the bot stopped" in (lost.request.reason or "")
    assert lifecycle.mark_lost_sends() == []

    decision = lifecycle.approve(request.id, APPROVERS[0])
    assert isinstance(decision, Closed) and decision.view.request.state == State.UNKNOWN
    assert fake_whatcounts.posts() == []
    assert db.events(request.id) == ["requested", "approved", "sending", "unknown"]


def test_two_sweepers_give_up_on_a_lost_send_once(db: Database, lifecycle: Lifecycle, clock: Clock) -> None:
    request = claimed(lifecycle).view.request
    other_process = Lifecycle(db.sessions, lifecycle.whatcounts, request_ttl=TTL, clock=clock)
    assert request.sending_deadline is not None
    clock.move_to(request.sending_deadline)
    found: list[list[RequestView]] = []
    start = threading.Barrier(2)

    def sweep(sweeper: Lifecycle) -> None:
        start.wait()
        found.append(sweeper.mark_lost_sends())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in (lifecycle, other_process)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(len(views) for views in found) == [0, 1]
    assert db.events(request.id).count("unknown") == 1


def test_an_answer_that_arrives_after_the_sweep_gave_up_still_wins(
        db: Database, lifecycle: Lifecycle, clock: Clock, fake_whatcounts: FakeWhatCounts) -> None:
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 4711, "status": "submitted"}, held=True)
    claim = claimed(lifecycle)
    request = claim.view.request
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(lifecycle.execute, claim)
        fake_whatcounts.wait_until(fake_whatcounts.posts, what="the POST")
        assert request.sending_deadline is not None
        clock.move_to(request.sending_deadline)  # WhatCounts is that slow; a sweep gives up on it
        [lost] = lifecycle.mark_lost_sends()
        assert lost.request.state == State.UNKNOWN
        fake_whatcounts.release()
        finished = sending.result(timeout=30)
    assert (finished.request.state, finished.request.whatcounts_id) == (State.SENT, "4711")
    assert finished.request.outcome_posted is False  # the channel is told the real outcome too
    assert db.events(request.id) == ["requested", "approved", "sending", "unknown", "sent"]
    assert len(fake_whatcounts.posts()) == 1


def test_a_send_held_up_past_its_claims_deadline_stops_without_sending(
        db: Database, lifecycle: Lifecycle, fake_whatcounts: FakeWhatCounts) -> None:
    """Nothing is written between the claim and the POST; a process that stalls there (a pause, a swap
    storm) past the time its claim allows, after which a sweep may already call the send lost, never sends."""
    quick = WhatCountsClient(fake_whatcounts.url, WHATCOUNTS_REALM, WHATCOUNTS_PASSWORD, timeout=0.2)
    stalling = Lifecycle(db.sessions, quick, request_ttl=TTL, clock=lifecycle.clock)
    try:
        claim = claimed(stalling)
        time.sleep(quick.max_duration())
        finished = stalling.execute(claim)
    finally:
        quick.close()
    assert (finished.request.state, finished.request.reason) == (State.FAILED, TOO_LATE)
    assert fake_whatcounts.posts() == []
    assert db.events(claim.view.request.id) == ["requested", "approved", "sending", "failed"]


# --- races ----------------------------------------------------------------------------------

def test_eight_approvers_at_once_claim_the_send_once(db: Database, lifecycle: Lifecycle) -> None:
    request = requested(lifecycle)
    decisions = all_at_once([partial(lifecycle.approve, request.id, a) for a in APPROVERS])
    claims = [d for d in decisions if isinstance(d, Changed) and d.send]
    assert len(claims) == 1
    assert all(isinstance(d, Closed) for d in decisions if d is not claims[0]), decisions
    assert db.events(request.id).count("sending") == 1


@pytest.mark.parametrize("attempt", range(3))
def test_a_cancel_racing_an_approval_leaves_exactly_one_of_them_done(
        attempt: int, db: Database, lifecycle: Lifecycle) -> None:
    request = requested(lifecycle)
    approval, cancel = all_at_once([lambda: lifecycle.approve(request.id, APPROVER),
                                    lambda: lifecycle.cancel(request.id, REQUESTER)])
    final = state(lifecycle, request.id)
    outcomes: dict[State, tuple[Any, Any]] = {
        State.SENDING: (Changed, Closed),  # the approval won and claimed the send
        State.CANCELLED: (Closed, Changed),
    }
    assert final in outcomes, final
    assert (type(approval), type(cancel)) == outcomes[final]
    events = db.events(request.id)
    assert ("sending" in events) != ("cancelled" in events), events
