""""Send test to my phone", end to end through the real server on SQLite and PostgreSQL: the exact call
WhatCounts receives, once per click, the limits, the refusals, WhatCounts' faults, the thread note and
the audit trail, with the phone never shown in the channel."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot.quiet_hours import format_time
from bot.store.engine import database_now
from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import BASIC_CREDENTIALS, CODE, Database, SlackDriver, bot_with, in_process_bot

REQUESTER, APPROVER, STRANGER = "UREQUESTER", "UAPPROVER", "USTRANGER"
PHONE, APPROVER_PHONE = "+15550001234", "+447700900123"
MASKED = "+•••••••1234"  # the last four digits only
TEST = "test_send"


@pytest.fixture(autouse=True)
def roles(db: Database) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.test_phone(REQUESTER, PHONE)


def thread_notes(slack: SlackDriver, db: Database, request_id: str) -> list[str]:
    card_ts = db.request(request_id).card_ts
    return [c["text"] for c in slack.slack.calls("chat.postMessage") if c.get("thread_ts") == card_ts]


def audited_tests(db: Database, request_id: str) -> list[tuple[str, str, str]]:
    """(actor, outcome, masked phone) of every test-send audit event of the request."""
    return [(e.actor_id, e.details["outcome"], e.details["phone"]) for e in db.audit_rows()
            if e.request_id == request_id and e.event == TEST]


def everything_slack_was_told(slack: SlackDriver) -> str:
    return json.dumps([r.params() for r in slack.slack.received])


def test_the_requester_gets_the_current_text_on_their_phone_once_and_the_thread_says_so_without_the_number(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    card = slack.slack.calls("chat.postMessage")[-1]
    assert "Send test to my phone" in json.dumps(card["blocks"])
    edited = "Spring sale: 25% off / everything + more? #deals. Reply STOP"
    fake_whatcounts.messages = [{**SPRING_SALE, "messageText": edited}]  # edited in WhatCounts since the card

    slack.click(REQUESTER, TEST, request_id)
    told = slack.wait_ephemeral(REQUESTER, "Test sent")
    slack.settle()

    [post] = fake_whatcounts.phone_posts()
    assert post.raw_path == ("/rest/sms/sendMessageToPhone/Spring%20sale%3A%2025%25%20off%20%2F%20everything%20%2B"
                             "%20more%3F%20%23deals%2E%20Reply%20STOP/%2B15550001234/5551234567")
    assert post.body == b""
    assert post.headers["authorization"] == f"Basic {BASIC_CREDENTIALS}"
    assert post.headers["accept"] == "application/vnd.whatcounts-v1+json"
    assert post.headers["content-type"] == "application/json"
    assert told == (f"Test sent to your phone {MASKED} through sender code {CODE} (WhatCounts id 8123). Note: "
                    "WhatCounts' text of this message is no longer the one on the card; the test carried WhatCounts' "
                    "text as it is now.")
    assert thread_notes(slack, db, request_id) == [f"Test sent to <@{REQUESTER}>'s phone."]
    assert PHONE not in everything_slack_was_told(slack) and "0001234" not in everything_slack_was_told(slack)
    assert audited_tests(db, request_id) == [(REQUESTER, "sending", MASKED), (REQUESTER, "sent", MASKED)]
    assert db.request(request_id).state == "pending"  # a test decides nothing
    assert fake_whatcounts.posts() == [post]


def test_an_approver_with_a_phone_may_test_and_a_stranger_or_someone_without_a_phone_is_refused(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    db.test_phone(STRANGER, "+15559990000")  # a phone alone is not enough: the click must be theirs to make

    slack.click(STRANGER, TEST, request_id)
    assert "Only the requester and the approvers of sender code" in slack.wait_ephemeral(STRANGER, "Only")
    slack.click(APPROVER, TEST, request_id)
    assert "You have no test phone registered" in slack.wait_ephemeral(APPROVER, "no test phone")
    assert fake_whatcounts.phone_posts() == []

    db.test_phone(APPROVER, APPROVER_PHONE)
    slack.click(APPROVER, TEST, request_id)
    slack.wait_ephemeral(APPROVER, "Test sent to your phone +••••••••0123")
    [post] = fake_whatcounts.phone_posts()
    assert "/%2B447700900123/5551234567" in post.raw_path
    refused = [(e.actor_id, e.details["action"]) for e in db.audit_rows() if e.event == "refused"]
    assert refused == [(STRANGER, TEST), (APPROVER, TEST)]
    assert thread_notes(slack, db, request_id) == [f"Test sent to <@{APPROVER}>'s phone."]


def test_a_repeated_click_and_a_double_click_send_once(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    for _ in range(3):  # Slack delivering the same click again: the same action_ts
        slack.click(REQUESTER, TEST, request_id, action_ts="1700000123.000100")
    slack.click(REQUESTER, TEST, request_id)  # a second click right after the first
    slack.settle()

    assert len(fake_whatcounts.phone_posts()) == 1
    told = slack.ephemerals(REQUESTER)
    assert sum("Test sent" in t for t in told) == 1
    assert told.count("This click was already handled.") == 2
    assert sum("one click sends once" in t for t in told) == 1
    assert audited_tests(db, request_id) == [(REQUESTER, "sending", MASKED), (REQUESTER, "sent", MASKED)]
    assert [e.details["reason"] for e in db.audit_rows() if e.event == "refused"] == [
        next(t for t in told if "one click sends once" in t)]  # the double click is kept; Slack's repeats are not


def clock_at(offset: timedelta) -> Callable[[Session], datetime]:
    """The life cycle's clock (the database's), moved by `offset`: past the double-click window."""
    return lambda session: database_now(session) + offset


def test_the_limits_per_request_and_per_day_are_counted_in_the_database(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    with bot_with(env, tmp_path, fake_slack, TEST_SENDS_PER_REQUEST="2", TEST_SENDS_PER_DAY="3") as (bot, slack):
        first, second = slack.request(REQUESTER), slack.request(REQUESTER, campaign_name="Other")
        lifecycle = bot.runtime.core.lifecycle
        for minutes, request_id in ((0, first), (1, first), (2, first), (3, second), (4, second)):
            lifecycle.clock = clock_at(timedelta(minutes=minutes))
            slack.click(REQUESTER, TEST, request_id)
            slack.settle()
        told = slack.ephemerals(REQUESTER)
    assert len(fake_whatcounts.phone_posts()) == 3
    assert told[2] == "You have had 2 test sends for this request, the most allowed (TEST_SENDS_PER_REQUEST is 2)."
    assert told[4] == "You have had 3 test sends in the last 24 hours, the most allowed (TEST_SENDS_PER_DAY is 3)."
    assert [e.details["reason"] for e in db.audit_rows() if e.event == "refused"] == [told[2], told[4]]


def test_a_test_that_never_reached_whatcounts_does_not_count(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    with bot_with(env, tmp_path, fake_slack, TEST_SENDS_PER_REQUEST="1") as (bot, slack):
        request_id = slack.request(REQUESTER)
        fake_whatcounts.messages = []  # the message was deleted in WhatCounts
        slack.click(REQUESTER, TEST, request_id)
        assert "no longer has an SMS message named “Spring Sale”" in slack.wait_ephemeral(REQUESTER, "Test not sent")
        fake_whatcounts.messages = [SPRING_SALE]
        bot.runtime.core.lifecycle.clock = clock_at(timedelta(minutes=1))
        slack.click(REQUESTER, TEST, request_id)
        slack.wait_ephemeral(REQUESTER, "Test sent")
    assert len(fake_whatcounts.phone_posts()) == 1
    assert [o for _, o, _ in audited_tests(db, request_id)] == ["sending", "not_sent", "sending", "sent"]


def test_dry_run_calls_nothing_and_says_so(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_DRY_RUN="1") as (_bot, slack):
        request_id = slack.request(REQUESTER)
        gets = len(fake_whatcounts.received)
        slack.click(REQUESTER, TEST, request_id)
        told = slack.wait_ephemeral(REQUESTER, "DRY RUN")
        slack.settle()
    assert told == (f"DRY RUN: WhatCounts was not called. A test send would have texted message “Spring Sale” to "
                    f"your phone {MASKED} through sender code {CODE}.")
    assert len(fake_whatcounts.received) == gets  # no call at all
    assert thread_notes(slack, db, request_id) == [
        f"DRY RUN: a test of this message would have gone to <@{REQUESTER}>'s phone."]
    assert audited_tests(db, request_id) == [(REQUESTER, "dry_run", MASKED)]


def test_only_a_waiting_request_can_be_tested(db: Database, slack: SlackDriver,
                                              fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    slack.click(REQUESTER, "cancel", request_id)
    slack.wait_card(request_id, "Cancelled")
    slack.click(REQUESTER, TEST, request_id)
    assert "only for requests still waiting for approval" in slack.wait_ephemeral(REQUESTER, "Test sends are")
    assert fake_whatcounts.phone_posts() == []
    assert "Send test to my phone" not in json.dumps(slack.wait_card(request_id, "Cancelled")["blocks"])


def test_quiet_hours_stop_a_test_as_they_stop_the_campaign(db: Database, slack: SlackDriver,
                                                           fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    now = datetime.now(UTC)  # quiet hours from a moment ago, set after the request was made
    start, end = (now - timedelta(minutes=5)).time(), (now + timedelta(hours=2)).time()
    db.sender_code(CODE, quiet_start=start.replace(second=0, microsecond=0),
                   quiet_end=end.replace(second=0, microsecond=0), timezone="UTC")
    slack.click(REQUESTER, TEST, request_id)
    told = slack.wait_ephemeral(REQUESTER, "No test send now")
    assert f"inside sender code {CODE}'s quiet hours" in told and f"after {format_time(end)}" in told
    assert fake_whatcounts.phone_posts() == []
    assert [e.details["reason"] for e in db.audit_rows() if e.event == "refused"] == [told]


# --- WhatCounts on a bad day: told privately, audited, never retried ------------------------------

@pytest.mark.parametrize(("reply", "said", "outcome"), [
    # held: the read's timeout or the call's wall clock, whichever comes first, ends it
    (WhatCountsReply(200, {"id": 1}, held=True), "Test send outcome unknown: ", "unknown"),
    (WhatCountsReply(200, drop=True), "Test send outcome unknown: the connection to WhatCounts broke", "unknown"),
    (WhatCountsReply(200, "<html>ok</html>"), "Test send outcome unknown: WhatCounts answered 200 but not with JSON",
     "unknown"),
    (WhatCountsReply(500, {"error": "Phone +15550001234 has opted out", "status": "Internal Server Error",
                           "statusCode": 500}),
     "WhatCounts refused the test send to your phone +•••••••1234 (HTTP 500): “Phone +•••••••1234 has opted out”",
     "refused"),
    (WhatCountsReply(400, {"error": "Invalid phone", "status": "Bad Request", "statusCode": 400}),
     "(HTTP 400): “Invalid phone”", "refused"),
    (WhatCountsReply(503, "<html>Service Unavailable</html>"), "HTTP 503 Service Unavailable: an answer that is not "
                                                                "WhatCounts' own error", "unknown"),
    (WhatCountsReply(200, {"id": 1}, drip=0.2), "did not finish answering within 2 s", "unknown"),
    (WhatCountsReply(200, {"id": 8123, "status": "sent"}, cut=60),
     "Test send outcome unknown: the connection to WhatCounts broke", "unknown"),
], ids=["slow", "no-answer", "not-json", "500-whatcounts-error", "400-whatcounts-error", "503-gateway-page",
        "trickled", "crashed-mid-answer"])
def test_each_fault_is_told_privately_audited_and_never_retried(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts, reply: WhatCountsReply, said: str,
        outcome: str) -> None:
    fake_whatcounts.phone_reply = reply
    request_id = slack.request(REQUESTER)  # WHATCOUNTS_TIMEOUT is 2 s
    slack.click(REQUESTER, TEST, request_id)
    told = slack.wait_ephemeral(REQUESTER, said)
    slack.settle()
    assert len(fake_whatcounts.phone_posts()) == 1
    assert "does not try again by itself" in told
    assert audited_tests(db, request_id) == [(REQUESTER, "sending", MASKED), (REQUESTER, outcome, MASKED)]
    [note] = thread_notes(slack, db, request_id)
    assert f"<@{REQUESTER}>'s phone" in note and "Test sent" not in note
    assert PHONE not in note
    assert PHONE[1:] not in json.dumps([e.details for e in db.audit_rows()])  # not even in WhatCounts' words


def test_clicks_racing_on_two_replicas_send_once(db: Database, env: dict[str, str], fake_slack: FakeSlack,
                                                 fake_whatcounts: FakeWhatCounts) -> None:
    """The claim is counted in the database with the clicker's row locked: without the lock, both replicas
    would find no test send yet and each send one."""
    with in_process_bot(env) as one, in_process_bot(env) as two:
        drivers = [SlackDriver(one.url, fake_slack), SlackDriver(two.url, fake_slack)]
        request_id = drivers[0].request(REQUESTER)
        with ThreadPoolExecutor(max_workers=8) as pool:
            clicks = [pool.submit(drivers[i % 2].click, REQUESTER, TEST, request_id) for i in range(8)]
            assert [c.result().status_code for c in clicks] == [200] * 8
        for driver in drivers:
            driver.settle()
            driver.close()
    assert len(fake_whatcounts.phone_posts()) == 1
    told = [c["text"] for c in fake_slack.calls("chat.postEphemeral")]
    assert sum("Test sent" in t for t in told) == 1 and len(told) == 8
    assert [o for _, o, _ in audited_tests(db, request_id)] == ["sending", "sent"]


def test_a_requester_whose_grant_was_revoked_may_no_longer_test(db: Database, slack: SlackDriver,
                                                                fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    db.revoke(REQUESTER, "requester")
    slack.click(REQUESTER, TEST, request_id)
    slack.wait_ephemeral(REQUESTER, "Only the requester and the approvers")
    assert fake_whatcounts.phone_posts() == []
