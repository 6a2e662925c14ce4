"""WhatCounts on a bad day, end to end: a dripped answer, a gateway's page, an odd success, an edited message.

Each test drives the real server as Slack does, with the fake WhatCounts doing exactly the fault.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bot.requests.lifecycle import Lifecycle
from bot.rules.sender_codes import ALL_CONTACTS
from bot.store.engine import database_now
from tests.fakes import (
    SPRING_SALE,
    SUCCESS_BODY,
    FakeSlack,
    FakeWhatCounts,
    WhatCountsReply,
)
from tests.harness import CODE, Database, SlackDriver, bot_with, form_errors, run_cli

REQUESTER, APPROVER, ADMIN = "UREQUESTER", "UAPPROVER", "UADMIN"


@pytest.fixture(autouse=True)
def roles(db: Database) -> None:
    db.allow_sends(REQUESTER, APPROVER)


# --- 7: the whole call is bounded, and a late answer is never dropped ------------------------

def test_an_answer_dripped_past_the_timeout_is_reported_unknown_not_lost(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    # A byte every 0.1 s keeps every read alive; the whole answer would take minutes.
    fake_whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, drip=0.1, headers={"X-Padding": "." * 2000})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)

    outcome = slack.wait_outcome("Outcome unknown")
    assert "did not finish answering within 2 s" in outcome["text"]
    assert "the bot stopped" not in outcome["text"]
    slack.wait_card(request_id, "did not finish answering")
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(request_id).state == "unknown"
    assert db.events(request_id) == ["requested", "approved", "sending", "unknown"]


def test_an_acceptance_arriving_after_an_admin_recorded_not_sent_is_a_conflict_admins_see(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.grant(ADMIN, "admin")
    fake_whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, held=True)
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_TIMEOUT="20") as (_bot, slack):
        request_id = slack.request(REQUESTER)
        slack.click(APPROVER, "approve", request_id)
        fake_whatcounts.wait_until(fake_whatcounts.posts, what="the POST")

        # Five minutes on (the database's clock), a sweep gives the send up for lost; an admin records "not sent".
        later = Lifecycle(db.sessions, whatcounts=None,
                          clock=lambda session: database_now(session) + timedelta(minutes=5))
        assert [v.request.id for v in later.mark_lost_sends()] == [request_id]
        resolved = run_cli("resolve", request_id, "not-sent", "--admin", ADMIN, "--note", "support saw nothing",
                           env=env, cwd=tmp_path)
        assert resolved.returncode == 0, resolved.stderr
        assert db.request(request_id).state == "failed"
        # Not `slack.wait_outcome`: it first waits for the bot to be idle, and the held send keeps it busy.
        fake_slack.wait_for("chat.postMessage",
                            lambda p: bool(p.get("thread_ts")) and "Recorded as not sent" in p.get("text", ""))

        fake_whatcounts.release()  # and now WhatCounts says it accepted the send
        outcome = slack.wait_outcome("Conflicting outcomes")
        assert "recorded as not sent by UADMIN" in outcome["text"] and "support saw nothing" in outcome["text"]
        assert "accepted the send (id 4711" in outcome["text"]
        assert f"tell an admin of sender code {CODE} (<@{ADMIN}>), who can record the answer" in outcome["text"]
        assert "sms-bot" not in outcome["text"]
        slack.wait_card(request_id, "Conflicting outcomes")

    request = db.request(request_id)
    assert (request.state, request.whatcounts_id) == ("unknown", "4711")
    assert db.events(request_id) == ["requested", "approved", "sending", "unknown", "resolved",
                                     "late_outcome_conflict"]
    exported = run_cli("audit", "--request", request_id, "--format", "jsonl", env=env, cwd=tmp_path)
    conflict = json.loads(exported.stdout.splitlines()[-1])
    assert conflict["event"] == "late_outcome_conflict"
    assert conflict["details"]["recorded"] == "failed" and conflict["details"]["whatcounts_id"] == "4711"
    assert len(fake_whatcounts.posts()) == 1


# --- 8: only WhatCounts refuses ---------------------------------------------------------------

@pytest.mark.parametrize("reply", [
    WhatCountsReply(502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
    WhatCountsReply(302, "", headers={"Location": "https://login.example.test/"}),
    WhatCountsReply(500, {"message": "upstream connect error"}),
], ids=["502-gateway-page", "302-redirect", "500-not-whatcounts-json"])
def test_an_answer_that_is_not_whatcounts_own_error_is_unknown_and_counts_against_the_cap(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts, reply: WhatCountsReply) -> None:
    db.sender_code(CODE, daily_cap=1)
    fake_whatcounts.reply = reply
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)

    outcome = slack.wait_outcome("Outcome unknown")
    assert f"HTTP {reply.status}" in outcome["text"] and "may have reached WhatCounts" in outcome["text"]
    assert "refused" not in outcome["text"]
    card = json.dumps(slack.wait_card(request_id, "outcome unknown")["blocks"])
    assert "refused" not in card and "sms-bot" not in card
    assert "who can record the answer with *Record outcome* below" in card
    request = db.request(request_id)
    assert (request.state, request.http_status) == ("unknown", reply.status)

    # The send may have gone out, so it counts against the sender code's daily cap.
    response = slack.submit(REQUESTER, slack.open_form(REQUESTER), message_name="Spring Sale", sender_code=CODE,
                            campaign_name="Spring 2026 again", group_name=ALL_CONTACTS)
    assert "daily cap" in form_errors(response)["sender_code"]
    assert len(fake_whatcounts.posts()) == 1


# --- 9: an unexpected success is still recorded -----------------------------------------------

def test_a_success_whose_id_and_status_outgrow_their_columns_is_recorded_in_full(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    long_id, long_status = "WC-" + "7" * 197, "submitted-" + "q" * 90
    fake_whatcounts.reply = WhatCountsReply(200, {**SUCCESS_BODY, "id": long_id, "status": long_status})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)

    outcome = slack.wait_outcome("WhatCounts accepted the send")
    assert long_id in outcome["text"] and long_status in outcome["text"]  # in full, to quote to support
    request = db.request(request_id)
    assert request.state == "sent" and request.whatcounts_id and long_id.startswith(request.whatcounts_id[:-1])
    sent = [e for e in db.audit_rows() if e.request_id == request_id and e.event == "sent"]
    assert [(e.details["whatcounts_id"], e.details["whatcounts_status"]) for e in sent] == [(long_id, long_status)]


# --- 10: what approvers approved is what is sent ----------------------------------------------

@pytest.mark.parametrize("change, said", [
    (lambda fake: setattr(fake, "messages", [{**SPRING_SALE, "messageText": "Everything free! Reply STOP"}]),
     "was changed in WhatCounts after this was requested"),
    (lambda fake: setattr(fake, "messages", []), "no longer has an SMS message named “Spring Sale”"),
    (lambda fake: setattr(fake, "listing_fault", WhatCountsReply(503, "<html>Service Unavailable</html>")),
     "could not be asked for the current text"),
], ids=["text-edited", "message-deleted", "text-cannot-be-checked"])
def test_a_message_changed_after_the_card_showed_it_is_not_sent_and_everyone_is_told_why(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts, change, said: str) -> None:
    request_id = slack.request(REQUESTER)
    card = json.dumps(slack.slack.calls("chat.postMessage")[-1]["blocks"])
    assert "Spring sale: 20% off everything" in card  # what the approvers see
    change(fake_whatcounts)
    slack.click(APPROVER, "approve", request_id)

    outcome = slack.wait_outcome("Not sent")
    assert said in outcome["text"]
    assert f"<@{REQUESTER}>" in outcome["text"] and f"<@{APPROVER}>" in outcome["text"]
    slack.wait_card(request_id, "SMS send failed")
    assert fake_whatcounts.posts() == []
    assert db.request(request_id).state == "failed"
    assert db.events(request_id) == ["requested", "approved", "sending", "failed"]


def test_a_card_that_said_the_text_was_unverified_is_sent_although_it_cannot_be_checked(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    fake_whatcounts.listing_fault = WhatCountsReply(503, "<html>Service Unavailable</html>")
    request_id = slack.request(REQUESTER)
    assert "The message could not be verified" in json.dumps(slack.slack.calls("chat.postMessage")[-1]["blocks"])
    slack.click(APPROVER, "approve", request_id)

    slack.wait_outcome("WhatCounts accepted the send")
    gets = [r for r in fake_whatcounts.received if r.method == "GET"]
    assert len(gets) >= 2 and len(fake_whatcounts.posts()) == 1  # asked again before the POST, then sent
    assert db.request(request_id).state == "sent"
