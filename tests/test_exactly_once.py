"""Every send exactly once: double clicks, concurrent approvers, two processes, crashes, restarts."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from bot.slack.actions import ALREADY
from bot.store.models import State
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import (
    CODE,
    BotProcess,
    Database,
    SlackDriver,
    in_process_bot,
    running_bot,
)

REQUESTER, APPROVER, SECOND = "UREQUESTER", "UAPPROVER", "USECOND"


@pytest.fixture(autouse=True)
def roles(db: Database) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(SECOND, "approver")


def click_storm(drivers: list[SlackDriver], request_id: str, clicks: int = 30) -> list[int]:
    """`clicks` Approve clicks at once, alternating approvers and bot processes."""
    def one(i: int) -> int:
        driver = drivers[i % len(drivers)]
        return driver.click((APPROVER, SECOND)[i % 2], "approve", request_id).status_code

    with ThreadPoolExecutor(max_workers=clicks) as pool:
        return list(pool.map(one, range(clicks)))


def answered(slack: SlackDriver, clicks: int) -> None:
    """Wait until every losing click of `clicks` has been told why (the winner is told by the card).

    A generous bound: thirty clicks queue behind a separate bot process's ten listener threads,
    and in CI that process shares two cores with the suite's other workers.
    """
    slack.slack.wait_until(lambda: len(slack.slack.calls("chat.postEphemeral")) >= clicks - 1,
                           timeout=60, what=f"{clicks - 1} answers")


# What a losing click can be told: the request is being sent, was sent, or this approver's click
# already counted (a double click that arrived before the send was claimed).
LOSING_ANSWERS = {ALREADY[State.SENDING], ALREADY[State.SENT], "You have already approved this request."}


def test_thirty_clicks_from_two_approvers_post_once(db: Database, slack: SlackDriver,
                                                     fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    drivers = [SlackDriver(slack.bot_url, slack.slack) for _ in range(6)]
    assert click_storm(drivers, request_id) == [200] * 30
    slack.wait_outcome("4711")
    answered(slack, 30)
    answers = [a["text"] for a in slack.slack.calls("chat.postEphemeral")]
    assert len(answers) == 29  # every losing click is told why, once
    assert set(answers) <= LOSING_ANSWERS, set(answers) - LOSING_ANSWERS
    assert len(fake_whatcounts.posts()) == 1
    assert db.events(request_id).count("sending") == 1


def test_a_bot_process_and_another_replica_on_one_database_post_once(
        db: Database, env: dict[str, str], tmp_path: Path, slack: SlackDriver,
        fake_whatcounts: FakeWhatCounts) -> None:
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 1, "status": "submitted"}, delay=0.3)
    with running_bot(env, tmp_path) as other:
        request_id = slack.request(REQUESTER)
        drivers = [SlackDriver(slack.bot_url, slack.slack), SlackDriver(other.url, slack.slack)]
        assert click_storm(drivers, request_id) == [200] * 30
        slack.wait_outcome("submitted")
        answered(slack, 30)  # both replicas have handled every click
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(request_id).state == "sent"
    assert {a["text"] for a in slack.slack.calls("chat.postEphemeral")} <= LOSING_ANSWERS


@pytest.mark.slow
def test_a_bot_killed_while_sending_reports_unknown_after_restart_and_never_resends(
        db: Database, env: dict[str, str], bot_process: BotProcess, slack: SlackDriver,
        fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 1, "status": "submitted"}, held=True)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    fake_whatcounts.wait_until(fake_whatcounts.posts, what="the POST")
    bot_process.kill()
    assert db.request(request_id).state == "sending"

    # Restarted, and past the deadline the killed process had for its WhatCounts call.
    deadline = db.request(request_id).sending_deadline
    assert deadline is not None
    with in_process_bot(env, clock=lambda _session: deadline, sweeper=False) as restarted:
        restarted.sweep()
        driver = SlackDriver(restarted.url, fake_slack)
        outcome = driver.wait_outcome("Outcome unknown")
        assert "the bot stopped" in outcome["text"] and "will not be sent again" in outcome["text"]
        driver.wait_card(request_id, "outcome unknown")
        driver.click(SECOND, "approve", request_id)
        driver.wait_ephemeral(SECOND, "outcome is unknown")
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(request_id).state == "unknown"
    assert db.events(request_id)[-1] == "unknown"


def test_a_request_expires_across_a_restart(db: Database, env: dict[str, str], fake_slack: FakeSlack,
                                            fake_whatcounts: FakeWhatCounts) -> None:
    with in_process_bot(env) as first:
        request_id = SlackDriver(first.url, fake_slack).request(REQUESTER)
    expires_at = db.request(request_id).expires_at
    with in_process_bot(env, clock=lambda _session: expires_at + timedelta(minutes=1), sweeper=False) as second:
        assert db.request(request_id).state == "pending"  # nobody was running to expire it
        second.sweep()
        driver = SlackDriver(second.url, fake_slack)
        card = driver.wait_card(request_id, "Expired")
        assert '"approve"' not in json.dumps(card["blocks"])
        driver.click(APPROVER, "approve", request_id)
        driver.wait_ephemeral(APPROVER, "has expired")
    assert fake_whatcounts.posts() == []
    assert db.events(request_id) == ["requested", "expired"]


def test_an_approver_revoked_while_the_request_waits_cannot_approve(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    db.revoke(APPROVER, "approver")
    slack.click(APPROVER, "approve", request_id)
    slack.wait_ephemeral(APPROVER, "approver grant")
    assert fake_whatcounts.posts() == [] and db.request(request_id).state == "pending"


def test_a_requester_revoked_before_the_send_stops_it(db: Database, slack: SlackDriver,
                                                       fake_whatcounts: FakeWhatCounts) -> None:
    request_id = slack.request(REQUESTER)
    db.revoke(REQUESTER, "requester")
    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("no longer holds a requester grant")
    assert "Not sent" in outcome["text"]
    slack.wait_card(request_id, "no longer holds a requester grant")
    assert fake_whatcounts.posts() == []
    assert db.request(request_id).state == "failed"


def test_self_approval_only_where_the_sender_code_allows_it(db: Database, slack: SlackDriver,
                                                            fake_whatcounts: FakeWhatCounts) -> None:
    db.grant(REQUESTER, "approver")
    refused = slack.request(REQUESTER)
    slack.click(REQUESTER, "approve", refused)
    slack.wait_ephemeral(REQUESTER, "someone else must approve")

    db.sender_code(CODE, allow_self_approval=True)
    allowed = slack.request(REQUESTER)
    card = slack.slack.calls("chat.postMessage")[-1]
    assert "the requester may approve" in json.dumps(card["blocks"])
    slack.click(REQUESTER, "approve", allowed)
    slack.wait_outcome("4711")
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(refused).state == "pending"


def test_two_approvals_needed_where_the_sender_code_says_so(db: Database, slack: SlackDriver,
                                                           fake_whatcounts: FakeWhatCounts) -> None:
    db.sender_code(CODE, approvals_required=2)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    slack.wait_card(request_id, "Approvals: 1 of 2")
    slack.click(APPROVER, "approve", request_id)
    slack.wait_ephemeral(APPROVER, "already approved")
    assert fake_whatcounts.posts() == [] and db.request(request_id).state == "pending"
    slack.click(SECOND, "approve", request_id)
    outcome = slack.wait_outcome("4711")
    assert f"<@{APPROVER}>, <@{SECOND}>" in outcome["text"]
    assert len(fake_whatcounts.posts()) == 1
