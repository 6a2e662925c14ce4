"""One reminder in the card's thread before a request expires, for the approvers who have not decided."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text, update

from bot.store import schema
from bot.store.engine import make_engine, utcnow
from bot.store.models import SendRequest
from tests.fakes import FakeSlack
from tests.harness import Database, SlackDriver, insert_old_request, running_bot

REQUESTER, APPROVER, OTHER_APPROVER = "UREQUESTER", "UAPPROVER", "UAPPROVER2"


def reminders(slack: SlackDriver) -> list[dict[str, Any]]:
    return [c for c in slack.slack.calls("chat.postMessage")
            if c.get("thread_ts") and c.get("text", "").startswith("Reminder")]


def half_its_time_passes(db: Database, request_id: str) -> None:
    """Move the request's start back by its whole time to live: more than half of it has now passed."""
    with db.sessions.begin() as session:
        r = session.get(SendRequest, request_id)
        assert r is not None
        session.execute(update(SendRequest).where(SendRequest.id == request_id)
                        .values(created_at=r.created_at - (r.expires_at - r.created_at)))


def sweep(slack: SlackDriver) -> None:
    assert slack.bot is not None
    slack.bot.sweep()


def test_halfway_to_expiry_the_thread_reminds_the_approvers_who_have_not_decided_once(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(OTHER_APPROVER, "approver")
    request_id = slack.request(REQUESTER)
    sweep(slack)
    assert reminders(slack) == []  # not yet: less than half its time has passed
    half_its_time_passes(db, request_id)
    sweep(slack)
    sweep(slack)
    [reminder] = reminders(slack)
    assert reminder["thread_ts"] == db.request(request_id).card_ts
    assert f"<@{APPROVER}>" in reminder["text"] and f"<@{OTHER_APPROVER}>" in reminder["text"]
    assert f"<@{REQUESTER}>, " not in reminder["text"]  # the requester is not asked to approve their own send
    assert db.request(request_id).state == "pending"


def test_a_request_already_decided_is_not_reminded(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    slack.reject(APPROVER, request_id, "Wrong group")
    half_its_time_passes(db, request_id)
    sweep(slack)
    assert reminders(slack) == []


def test_a_reminder_slack_refused_is_posted_by_a_later_sweep_and_only_once(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    half_its_time_passes(db, request_id)
    slack.slack.fail("chat.postMessage", "ratelimited", times=1,
                     when=lambda params: str(params.get("text", "")).startswith("Reminder"))
    sweep(slack)
    assert db.request(request_id).reminded_at is None
    sweep(slack)
    sweep(slack)
    assert len(reminders(slack)) == 2  # the refused try, then the one Slack took
    assert db.request(request_id).reminded_at is not None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_bot_processes_sweeping_one_database_remind_once(
        db: Database, env: dict[str, str], tmp_path: Path, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    """This bot and a `sms-bot serve` process both sweep (it every 0.1 s, this one in eight threads at once)
    while Slack is slow to take the post: the reminder is claimed by one of them and posted once."""
    db.allow_sends(REQUESTER, APPROVER)
    with running_bot({**env, "SWEEP_INTERVAL_SECONDS": "0.1"}, tmp_path):
        request_id = slack.request(REQUESTER)
        fake_slack.slow("chat.postMessage", 0.5)
        half_its_time_passes(db, request_id)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _i: sweep(slack), range(8)))
        fake_slack.wait_until(lambda: db.request(request_id).reminded_at is not None, what="the reminder")
        fake_slack.slow("chat.postMessage", 0)
        sweep(slack)
        time.sleep(0.35)  # the other process sweeps three more times, finding it reminded
    assert len(reminders(slack)) == 1
    assert len([c for c in fake_slack.calls("chat.postMessage") if c.get("thread_ts")]) == 1


def test_migration_0007_keeps_requests_and_remembers_reminders(database_url: str) -> None:
    schema.upgrade(database_url, "0006")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        insert_old_request(connection, "old")
    for _ in range(2):  # up, and down and up again
        schema.upgrade(database_url)
        with engine.begin() as connection:
            assert connection.execute(text("SELECT reminded_at FROM send_requests WHERE id = 'old'")).scalar() is None
            connection.execute(text("UPDATE send_requests SET reminded_at = :at"), {"at": utcnow()})
        command.downgrade(schema.alembic_config(database_url), "0006")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT campaign_name FROM send_requests")).scalar() == "Old"
    engine.dispose()
