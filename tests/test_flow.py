"""The /sms-send flow end to end: signed requests into the real server, fakes of Slack and WhatCounts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bot.store.models import ALL_SENDER_CODES
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import (
    CHANNEL,
    CODE,
    WHATCOUNTS_PASSWORD,
    WHATCOUNTS_REALM,
    Database,
    InProcessBot,
    SlackDriver,
    bot_with,
    request_id_of,
)

REQUESTER, APPROVER, OUTSIDER = "UREQUESTER", "UAPPROVER", "UOUTSIDER"


def labels(view: dict[str, Any]) -> list[str]:
    return [block["label"]["text"] for block in view["blocks"] if block["type"] == "input"]


def test_healthz_says_the_process_is_up_even_while_readyz_says_the_schema_is_not(
        db: Database, bot_app: InProcessBot) -> None:
    for path in ("/healthz", "/readyz"):
        answer = bot_app.get(path)
        assert (answer.status_code, answer.text) == (200, "ok\n")
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    not_ready = bot_app.get("/readyz")
    assert not_ready.status_code == 503 and "database schema at 0000_older" in not_ready.text
    assert bot_app.get("/healthz").status_code == 200  # alive: restarting it would not help
    assert bot_app.get("/nothing-here").status_code == 404


def test_help_is_ephemeral_and_opens_nothing(db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    response = slack.command(OUTSIDER, "help")
    assert response.status_code == 200
    assert "/sms-send" in response.text and "Approve" in response.text
    assert fake_slack.calls("views.open") == []


def test_happy_path(db: Database, slack: SlackDriver, fake_slack: FakeSlack,
                    fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, label="Marketing US", groups=["VIP customers", "Leads"])
    view = slack.open_form(REQUESTER)
    assert labels(view) == ["SMS message", "Sender code", "Campaign name", "Description", "Send to", "Send at"]
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    assert [b.get("optional", False) for b in inputs] == [False, False, False, True, False, True]
    assert [b["element"]["type"] for b in inputs] == [
        "external_select", "static_select", "plain_text_input", "plain_text_input", "static_select", "datetimepicker"]
    # The requester's only code is chosen already, so its groups are offered, never free text.
    assert inputs[1]["element"]["initial_option"]["value"] == CODE
    assert [o["value"] for o in inputs[4]["element"]["options"]] == ["VIP customers", "Leads", "*"]
    assert "Marketing US" in json.dumps(view["blocks"])

    response = slack.submit(REQUESTER, view, message_name="Spring Sale", sender_code=CODE,
                            campaign_name="Spring 2026 / week 1", description="Promo & more <!channel>",
                            group_name="VIP customers")
    assert response.status_code == 200 and response.text == ""
    card = fake_slack.calls("chat.postMessage")[0]
    assert card["channel"] == CHANNEL
    card_text = json.dumps(card["blocks"])
    for expected in (f'"user_id": "{REQUESTER}"', "Spring Sale", CODE, "Marketing US", "Spring 2026 / week 1",
                     # what people typed is rich text, shown as typed: it can never ping or link
                     "VIP customers", '{"text": "Promo & more <!channel>", "type": "text"}',
                     '"Approve"', '"Reject"', '"Cancel request"',
                     # the text as it goes out, its length and segments, the approvals, expiry, quiet hours
                     "20% off everything until Sunday", "68 characters, 1 SMS segment (GSM-7",
                     "Approvals: 0 of 1", "Expires <!date^"):
        assert expected in card_text, expected
    assert "ALL CONTACTS" not in card_text and "Quiet hours" not in card_text  # the code has none: no empty row
    request_id = request_id_of(card)

    assert slack.click(APPROVER, "approve", request_id).status_code == 200
    sending = slack.wait_card(request_id, "sending")
    assert '"approve"' not in json.dumps(sending["blocks"])
    outcome = slack.wait_outcome("4711")
    assert outcome["thread_ts"] == db.request(request_id).card_ts and outcome["reply_broadcast"] is True
    for expected in ("submitted", "Spring Sale", CODE, "Spring 2026 / week 1", "VIP customers",
                     f"<@{REQUESTER}>", f"<@{APPROVER}>"):
        assert expected in outcome["text"], expected
    slack.wait_card(request_id, "4711")

    [post] = fake_whatcounts.posts()
    assert post.path == ("/rest/sms/sendMessageToSenderCode/Spring%20Sale/5551234567/"
                         "Spring%202026%20%2F%20week%201")
    assert post.query == "description=Promo%20%26%20more%20%3C%21channel%3E&groupName=VIP%20customers"
    expected_auth = base64.b64encode(f"{WHATCOUNTS_REALM}:{WHATCOUNTS_PASSWORD}".encode()).decode()
    assert post.headers["authorization"] == f"Basic {expected_auth}"
    assert post.headers["accept"] == "application/vnd.whatcounts-v1+json"
    assert post.headers["content-type"] == "application/json"

    request = db.request(request_id)
    assert (request.state, request.whatcounts_id, request.whatcounts_status) == ("sent", "4711", "submitted")
    assert db.events(request_id) == ["requested", "approved", "sending", "sent"]


def test_whatcounts_500_error_is_reported(db: Database, slack: SlackDriver,
                                          fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.reply = WhatCountsReply(500, {"error": "SMS message Spring Sale not found",
                                                  "status": "Internal Server Error", "statusCode": 500})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("HTTP 500")
    assert "SMS message Spring Sale not found" in outcome["text"]
    assert "check the *Message name*" in outcome["text"]
    assert len(fake_whatcounts.posts()) == 1
    request = db.request(request_id)
    assert (request.state, request.http_status) == ("failed", 500)


def test_whatcounts_401_blames_the_bots_credentials(db: Database, slack: SlackDriver,
                                                    fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.reply = WhatCountsReply(401, {"error": "Unauthorized", "status": "Unauthorized",
                                                  "statusCode": 401})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("HTTP 401")
    assert "credentials" in outcome["text"] and "nothing was sent" in outcome["text"]


def test_timeout_reports_unknown_and_never_resends(db: Database, env: dict[str, str], tmp_path: Path,
                                                   fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 1, "status": "submitted"}, held=True)  # never in time
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_TIMEOUT="0.5") as (_bot, slack):
        request_id = slack.request(REQUESTER)
        slack.click(APPROVER, "approve", request_id)
        outcome = slack.wait_outcome("Outcome unknown")
    assert "It will not be sent again by itself" in outcome["text"]
    assert "whether this campaign went out before asking again" in outcome["text"]
    assert "who can record the answer with *Record outcome* below" in outcome["text"]
    assert "sms-bot" not in outcome["text"]
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(request_id).state == "unknown"


def test_user_without_grant_gets_no_form(db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.grant("UADMIN", "admin", ALL_SENDER_CODES)
    response = slack.command(OUTSIDER)
    assert response.status_code == 200
    assert "requester" in response.text and "<@UADMIN>" in response.text
    assert fake_slack.calls("views.open") == []


def test_wrong_approvers_are_refused(db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(REQUESTER, "approver")
    request_id = slack.request(REQUESTER)
    slack.click(OUTSIDER, "approve", request_id)
    slack.wait_ephemeral(OUTSIDER, "approver grant")
    slack.click(REQUESTER, "approve", request_id)
    slack.wait_ephemeral(REQUESTER, "someone else must approve")
    assert fake_whatcounts.posts() == []
    assert db.request(request_id).state == "pending"
    assert db.events(request_id) == ["requested", "refused", "refused"]  # each attempt kept, nothing else


def test_reject(db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    assert slack.reject(APPROVER, request_id, "Wrong list").text == ""
    card = slack.wait_card(request_id, "Rejected by")
    assert f"<@{APPROVER}>" in json.dumps(card["blocks"]) and "UTC" in json.dumps(card["blocks"])
    slack.click(APPROVER, "approve", request_id)
    slack.wait_ephemeral(APPROVER, "already rejected")
    assert fake_whatcounts.posts() == []


def test_cancel_only_by_requester(db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "cancel", request_id)
    slack.wait_ephemeral(APPROVER, "Only the person who asked")
    slack.click(REQUESTER, "cancel", request_id)
    slack.wait_card(request_id, f"Cancelled by <@{REQUESTER}>")
    assert db.request(request_id).state == "cancelled"
    assert fake_whatcounts.posts() == []
