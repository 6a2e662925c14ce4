"""Forged, unsigned and stale requests change nothing; a button's value is only a reference."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from tests.fakes import FakeSlack, FakeWhatCounts
from tests.harness import CODE, SECRETS, Database, InProcessBot, SlackDriver

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"


@pytest.mark.parametrize("forgery", ["wrong secret", "unsigned", "stale", "tampered body"])
def test_forged_requests_are_refused(forgery: str, db: Database, slack: SlackDriver,
                                     fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    click = json.dumps({"type": "block_actions", "user": {"id": APPROVER}, "team": {"id": "T1"},
                        "channel": {"id": "C0CHANNEL"}, "api_app_id": "A1", "trigger_id": "t",
                        "actions": [{"action_id": "approve", "value": request_id, "type": "button",
                                     "block_id": "decision", "action_ts": "1"}]})
    body = urlencode({"payload": click})
    if forgery == "wrong secret":
        response = SlackDriver(slack.bot_url, fake_slack, secret="not-the-secret").post(body)
    elif forgery == "unsigned":
        response = slack.post(body, sign=False)
    elif forgery == "stale":
        response = slack.post(body, timestamp=int(time.time()) - 6 * 60)
    else:
        signature = slack.verifier.generate_signature(timestamp=str(int(time.time())), body=body)
        response = slack.post(body.replace("approve", "approve ", 1), signature=signature)
    assert response.status_code == 401
    slack.settle()  # whatever the request set off has finished
    assert fake_whatcounts.posts() == []
    assert db.request(request_id).state == "pending"
    assert db.events(request_id) == ["requested"]

    # The same click, signed as Slack signs it, does send: what was refused was the forgery.
    assert slack.post(body).status_code == 200
    slack.wait_outcome("4711")
    assert len(fake_whatcounts.posts()) == 1


def test_a_crafted_click_cannot_approve_a_request_of_another_sender_code(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    other_code = "5559876543"
    db.sender_code(other_code)
    db.grant(REQUESTER, "requester", other_code)
    db.grant(APPROVER, "approver", CODE)  # may approve CODE only
    request_id = slack.request(REQUESTER, sender_code=other_code)
    slack.click(APPROVER, "approve", request_id)
    slack.wait_ephemeral(APPROVER, f"approver grant for sender code {other_code}")
    slack.click(APPROVER, "approve", "does-not-exist")
    slack.wait_ephemeral(APPROVER, "no longer exists")
    assert fake_whatcounts.posts() == []
    assert db.request(request_id).state == "pending"


def test_no_secret_reaches_the_log_the_database_or_slack(db: Database, slack: SlackDriver, bot_app: InProcessBot,
                                                          fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    slack.wait_outcome("4711")
    bot_app.stop()
    assert "WhatCounts send sent" in bot_app.log()  # the log was written, at the level the bot runs at
    with db.engine.connect() as connection:
        dump = "\n".join(str(row) for table in ("send_requests", "audit_events", "approvals", "grants")
                         for row in connection.exec_driver_sql(f"select * from {table}"))
    sent_to_slack = "\n".join(r.body.decode() for r in fake_slack.received)
    for secret in SECRETS:
        assert secret not in bot_app.log()
        assert secret not in dump
        assert secret not in sent_to_slack
    assert request_id in dump
