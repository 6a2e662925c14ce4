"""Replicas whose clocks disagree still agree on what has expired and which send is lost: the database keeps time.

A replica's clock is skewed for real: time-machine moves this process's clock (Python's
`time` and `datetime`), which is all a bot process has of its own; the databases keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import update

from bot.requests.fields import RequestFields
from bot.requests.lifecycle import Changed, Lifecycle
from bot.store.engine import database_now, utcnow
from bot.store.models import SendRequest
from bot.whatcounts.client import WhatCountsClient
from tests.fakes import FakeWhatCounts
from tests.harness import CHANNEL, CODE, Database

AHEAD, BEHIND = timedelta(minutes=2), timedelta(minutes=-2)


@pytest.fixture
def whatcounts(fake_whatcounts: FakeWhatCounts) -> Iterator[WhatCountsClient]:
    client = WhatCountsClient(fake_whatcounts.url, "acme", "pw", timeout=2)
    yield client
    client.close()


def skewed(skew: timedelta) -> AbstractContextManager[object]:
    """This process's clock `skew` off true time, and running, as on a replica whose clock is wrong."""
    return time_machine.travel(datetime.now(UTC) + skew, tick=True)


def replica(db: Database, whatcounts: WhatCountsClient) -> Lifecycle:
    return Lifecycle(db.sessions, whatcounts, request_ttl=timedelta(minutes=1))


def a_request(db: Database, lifecycle: Lifecycle) -> str:
    db.allow_sends("UREQ", "UAPP")
    draft = lifecycle.draft("UREQ", "T1", CHANNEL, RequestFields("Spring Sale", CODE, "Spring 2026"))
    assert isinstance(draft, SendRequest), draft
    lifecycle.store(draft, "1700000000.000100")
    return draft.id


def test_a_replica_two_minutes_ahead_does_not_call_another_replicas_send_lost(
        db: Database, whatcounts: WhatCountsClient) -> None:
    sender, ahead = replica(db, whatcounts), replica(db, whatcounts)
    with skewed(BEHIND):
        request_id = a_request(db, sender)
        claimed = sender.approve(request_id, "UAPP")
    assert isinstance(claimed, Changed) and claimed.send  # the sender is now calling WhatCounts

    with skewed(AHEAD):
        assert ahead.mark_lost_sends() == []
        assert db.request(request_id).state == "sending"
        with db.sessions.begin() as session:  # once the deadline has passed on the database's clock, it is lost
            session.execute(update(SendRequest).values(sending_deadline=database_now(session) - timedelta(seconds=1)))
        assert [view.request.id for view in ahead.mark_lost_sends()] == [request_id]


def test_a_replica_ahead_neither_expires_a_fresh_request_nor_refuses_its_approval(
        db: Database, whatcounts: WhatCountsClient) -> None:
    behind, ahead = replica(db, whatcounts), replica(db, whatcounts)
    with skewed(BEHIND):
        request_id = a_request(db, behind)  # one minute to live, written by a clock two minutes slow
    with skewed(AHEAD):
        assert ahead.expire_due() == []
        decision = ahead.approve(request_id, "UAPP")
    assert isinstance(decision, Changed) and decision.send
    assert db.events(request_id) == ["requested", "approved", "sending"]


def test_expiry_and_deadlines_are_stamped_in_the_databases_time(db: Database, whatcounts: WhatCountsClient) -> None:
    far_behind = replica(db, whatcounts)
    with skewed(timedelta(days=-3)):
        request_id = a_request(db, far_behind)
        far_behind.approve(request_id, "UAPP")
    stored = db.request(request_id)
    assert abs(stored.created_at - utcnow()) < timedelta(minutes=1)
    assert stored.expires_at - stored.created_at == timedelta(minutes=1)
    assert stored.sending_deadline is not None and stored.sending_deadline > utcnow()
