"""The requester hears every ending, once, in the card's thread: sent, failed and unknown are
broadcast to the channel in a line (not the whole card again); rejected, cancelled, withdrawn
and expired stay in the thread. Conversations through the real server, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import text

from bot.store import schema
from bot.store.engine import make_engine
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CODE, Database, SlackDriver, in_process_bot, insert_old_request

REQUESTER, APPROVER, ADMIN = "UREQUESTER", "UAPPROVER", "UADMIN"


def replies(fake_slack: FakeSlack, card_ts: str) -> list[dict[str, Any]]:
    return [c for c in fake_slack.calls("chat.postMessage") if c.get("thread_ts") == card_ts]


def told(slack: SlackDriver, db: Database, request_id: str, contains: str, refused: int = 0) -> dict[str, Any]:
    """The one reply in the request's thread that tells the requester `contains` (after `refused`
    tries Slack turned away, which the fake records too)."""
    card_ts = db.request(request_id).card_ts
    reply = slack.slack.wait_until(
        lambda: next((c for c in replies(slack.slack, card_ts) if contains in c.get("text", "")), None),
        what=f"the requester told {contains!r}")
    slack.settle()
    assert reply["text"].startswith(f"<@{REQUESTER}>")  # and, for an outcome, the approvers after them
    assert [c["text"] for c in replies(slack.slack, card_ts)].count(reply["text"]) == 1 + refused
    return reply


def test_a_sent_request_is_told_to_the_requester_and_the_channel_in_a_line_not_the_card_again(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    reply = told(slack, db, request_id, "4711")
    assert reply["text"].startswith(f"<@{REQUESTER}>, <@{APPROVER}>: ")  # who asked, and who let it go
    assert reply["reply_broadcast"] is True
    assert "message *Spring Sale*" in reply["text"] and "Requested by" not in reply["text"]
    assert "Description" not in reply["text"] and "description" not in reply["text"]


def test_a_failed_send_is_told_to_the_requester_and_broadcast(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.reply = WhatCountsReply(500, {"error": "boom", "status": "Internal Server Error",
                                                  "statusCode": 500})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    assert told(slack, db, request_id, "HTTP 500")["reply_broadcast"] is True


def test_a_rejection_tells_the_requester_its_reason_once_and_only_in_the_thread(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    assert slack.reject(APPROVER, request_id, "Wrong list").text == ""
    reply = told(slack, db, request_id, "rejected this request")
    assert reply["text"] == f"<@{REQUESTER}>: <@{APPROVER}> rejected this request: “Wrong list”"
    assert reply["reply_broadcast"] is False
    assert len(replies(slack.slack, db.request(request_id).card_ts)) == 1
    assert db.request(request_id).outcome_posted is True


def test_a_cancel_is_told_in_the_thread_and_not_broadcast(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    slack.click(REQUESTER, "cancel", request_id)
    reply = told(slack, db, request_id, "you cancelled this request. Nothing will be sent.")
    assert reply["reply_broadcast"] is False


def test_a_withdrawn_request_is_told_once_not_twice(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(ADMIN, "admin", CODE)
    request_id = slack.request(REQUESTER)
    slack.click(ADMIN, "withdraw", request_id)
    reply = told(slack, db, request_id, "withdrew this request")
    assert reply["reply_broadcast"] is False
    assert len(replies(slack.slack, db.request(request_id).card_ts)) == 1


def test_an_expired_request_is_told_once_though_two_replicas_sweep(
        db: Database, env: dict[str, str], fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    with in_process_bot(env) as first:
        request_id = SlackDriver(first.url, fake_slack).request(REQUESTER)
    later = db.request(request_id).expires_at + timedelta(minutes=1)
    with (in_process_bot(env, clock=lambda _session: later, sweeper=False) as one,
          in_process_bot(env, clock=lambda _session: later, sweeper=False) as two):
        for bot in (one, two, one, two):
            bot.sweep()
        driver = SlackDriver(one.url, fake_slack)
        reply = told(driver, db, request_id, "nobody decided on this request before it expired")
    assert reply["reply_broadcast"] is False and "Run /sms-send again" in reply["text"]
    assert len(replies(fake_slack, db.request(request_id).card_ts)) == 1


def test_a_thread_reply_slack_refused_is_told_by_a_later_sweep(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_slack.fail("chat.postMessage", "internal_error", times=1, when=lambda p: bool(p.get("thread_ts")))
    slack.click(REQUESTER, "cancel", request_id)
    slack.wait_card(request_id, "Cancelled by")
    slack.slack.wait_until(lambda: db.request(request_id).outcome_posted or None,
                           what="the bot's own sweeper to tell it")
    told(slack, db, request_id, "you cancelled this request", refused=1)
    assert slack.bot is not None and f"request {request_id}: outcome post failed, will retry" in slack.bot.log()


# --- 0008: endings from before it count as told, so the first sweep does not tell them again -----


def test_migration_0008_counts_past_endings_as_told_and_leaves_outcomes_to_post(database_url: str) -> None:
    schema.upgrade(database_url, "0007")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        for request_id, state in (("rej", "rejected"), ("can", "cancelled"), ("exp", "expired"),
                                  ("unk", "unknown"), ("pen", "pending")):
            insert_old_request(connection, request_id, state, approvals=2)

    def posted() -> dict[str, bool]:
        with engine.connect() as connection:
            return {row[0]: bool(row[1]) for row in connection.execute(
                text("SELECT id, outcome_posted FROM send_requests"))}

    for _ in range(2):  # up, and down and up again
        schema.upgrade(database_url)
        assert posted() == {"rej": True, "can": True, "exp": True, "unk": False, "pen": False}
        command.downgrade(schema.alembic_config(database_url), "0007")
        assert len(posted()) == 5
    engine.dispose()
