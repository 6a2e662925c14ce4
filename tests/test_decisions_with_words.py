"""Decisions carry words: Reject with a reason, Approve with a note, an admin's Withdraw, and
an admin's Record outcome, as conversations through the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import text

from bot.requests.reading import read_view
from bot.store import schema
from bot.store.engine import make_engine, utcnow
from bot.store.models import Approval
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CODE, Database, SlackDriver, form_errors, insert_old_request

REQUESTER, APPROVER, ADMIN, STRANGER = "UREQUESTER", "UAPPROVER", "UADMIN", "USTRANGER"


def thread_replies(slack: SlackDriver, contains: str) -> list[dict[str, Any]]:
    return [c for c in slack.slack.calls("chat.postMessage") if c.get("thread_ts") and contains in c.get("text", "")]


def shown(card: dict[str, Any]) -> str:
    return json.dumps(card["blocks"], ensure_ascii=False)


def audit_of(db: Database, request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.event, e.actor_id, e.details) for e in db.audit_rows() if e.request_id == request_id]


def test_reject_asks_for_a_reason_and_the_requester_reads_it_on_the_card_and_in_the_thread(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    modal = slack.open_modal(APPROVER, "reject", request_id)
    assert modal["callback_id"] == "reject_request" and "Reason" in json.dumps(modal["blocks"])
    assert slack.submit(APPROVER, modal, note="Wrong list: use *Spring VIP* <!channel>").text == ""

    card = shown(slack.wait_card(request_id, "Rejected by"))
    assert f"Rejected by <@{APPROVER}>" in card and "“Wrong list: use *Spring VIP* &lt;!channel&gt;”" in card
    reply = slack.slack.wait_until(lambda: thread_replies(slack, "rejected this request"), what="the reply")[0]
    assert reply["text"] == (f"<@{REQUESTER}>: <@{APPROVER}> rejected this request: "
                             "“Wrong list: use *Spring VIP* &lt;!channel&gt;”")
    assert reply["thread_ts"] == db.request(request_id).card_ts
    assert ("rejected", APPROVER, {"reason": "Wrong list: use *Spring VIP* <!channel>"}) in audit_of(db, request_id)
    assert db.request(request_id).reason == "Wrong list: use *Spring VIP* <!channel>"
    assert fake_whatcounts.posts() == []


def test_a_reject_without_a_reason_or_with_an_invisible_one_is_refused_on_the_field(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    modal = slack.open_modal(APPROVER, "reject", request_id)
    assert form_errors(slack.submit(APPROVER, modal, note="   ")) == {"note": "Enter a reason."}
    hidden = form_errors(slack.submit(APPROVER, modal, note="ok\u200b"))["note"]
    assert "invisible" in hidden and "U+200B" in hidden
    slack.settle()
    assert db.request(request_id).state == "pending" and db.events(request_id) == ["requested"]


def test_approve_with_a_note_sends_and_shows_the_note_on_the_card_in_the_thread_and_in_the_audit(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    modal = slack.open_modal(APPROVER, "approve_with_note", request_id)
    says = json.dumps(modal["blocks"])
    assert "This sends to ALL CONTACTS of sender code" in says and "It cannot be undone." in says  # the confirm
    assert modal["submit"]["text"] == "Approve"
    assert slack.submit(APPROVER, modal, note="Checked with legal").text == ""

    slack.wait_outcome("WhatCounts accepted the send")
    assert len(fake_whatcounts.posts()) == 1
    assert f"<@{APPROVER}>: “Checked with legal”" in shown(slack.wait_card(request_id, "submitted"))
    slack.slack.wait_until(lambda: thread_replies(slack, f"<@{APPROVER}> approved: “Checked with legal”"),
                           what="the note in the thread")
    assert ("approved", APPROVER, {"note": "Checked with legal"}) in audit_of(db, request_id)


def test_an_admin_withdraws_a_stale_request_and_the_requester_is_told(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(ADMIN, "admin", CODE)
    request_id = slack.request(REQUESTER)
    slack.click(ADMIN, "withdraw", request_id)
    card = shown(slack.wait_card(request_id, "Withdrawn by"))
    assert f"Withdrawn by <@{ADMIN}>" in card and f"an admin of sender code {CODE}" in card
    reply = slack.slack.wait_until(lambda: thread_replies(slack, "withdrew this request"), what="the reply")[0]
    assert reply["text"].startswith(f"<@{REQUESTER}>: <@{ADMIN}>, an admin of sender code {CODE}, withdrew")
    assert db.request(request_id).state == "cancelled" and db.request(request_id).closed_by == ADMIN
    assert db.events(request_id) == ["requested", "withdrawn"]
    slack.click(APPROVER, "approve", request_id)
    slack.wait_ephemeral(APPROVER, "already cancelled")
    assert fake_whatcounts.posts() == []


def test_a_withdraw_by_someone_who_is_not_an_admin_of_the_code_is_refused_and_kept(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(ADMIN, "admin", "99999")  # an admin, of another sender code
    request_id = slack.request(REQUESTER)
    for someone in (APPROVER, ADMIN):
        slack.click(someone, "withdraw", request_id)
        slack.wait_ephemeral(someone, f"Only an admin of sender code {CODE} can withdraw a request.")
    assert db.request(request_id).state == "pending"
    refused = [(actor, d["action"]) for event, actor, d in audit_of(db, request_id) if event == "refused"]
    assert refused == [(APPROVER, "withdraw"), (ADMIN, "withdraw")]
    assert thread_replies(slack, "withdrew") == []


def unknown_outcome(db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> str:
    """A request sent whose outcome WhatCounts left unknown (a 200 without a send id)."""
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.reply = WhatCountsReply(200, {"status": "submitted"})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    card = slack.wait_card(request_id, "outcome unknown")
    assert any(e.get("action_id") == "record_outcome" for b in card["blocks"] for e in b.get("elements", []))
    return request_id


def test_an_admin_records_an_unknown_outcome_in_slack(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    request_id = unknown_outcome(db, slack, fake_whatcounts)
    db.grant(ADMIN, "admin", CODE)
    modal = slack.open_modal(ADMIN, "record_outcome", request_id)
    assert form_errors(slack.submit(ADMIN, modal, verdict="sent", note="")) == {"note": "Enter a note."}
    assert slack.submit(ADMIN, modal, verdict="sent", note="Support ticket 42: delivered").text == ""

    outcome = slack.wait_outcome("Recorded as sent")
    assert f"Recorded as sent: Support ticket 42: delivered (recorded by <@{ADMIN}>)" in outcome["text"]
    slack.wait_card(request_id, "Recorded as sent")
    assert db.request(request_id).state == "sent"
    assert ("resolved", ADMIN, {"outcome": "sent", "note": "Support ticket 42: delivered"}) in audit_of(db, request_id)
    assert len(fake_whatcounts.posts()) == 1  # recorded, never sent again


def test_recording_an_outcome_is_refused_for_someone_not_an_admin_of_the_code(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    request_id = unknown_outcome(db, slack, fake_whatcounts)
    modal = slack.open_modal(APPROVER, "record_outcome", request_id)
    refused = form_errors(slack.submit(APPROVER, modal, verdict="not-sent", note="I think it failed"))
    assert refused == {"note": f"Only an admin of sender code {CODE} can record the outcome of its sends "
                               "(no admin grant)."}
    assert db.request(request_id).state == "unknown"
    assert ("refused", APPROVER, {"action": "resolve", "reason": refused["note"]}) in audit_of(db, request_id)


# --- the migration that holds an approval's note (0006), with approvals already in the database -----


def test_migration_0006_keeps_existing_approvals_and_takes_notes(database_url: str) -> None:
    schema.upgrade(database_url, "0005")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        insert_old_request(connection, "old", approvals=2)
        connection.execute(text("INSERT INTO approvals (request_id, approver_id, approved_at) "
                                "VALUES ('old', 'U2', :at)"), {"at": utcnow()})
    db = Database(database_url, engine)
    for _ in range(2):  # up, and down and up again
        schema.upgrade(database_url)
        with db.sessions.begin() as session:
            old = read_view(session, "old")
            assert old is not None and (old.approvers, old.notes) == (("U2",), ())
            session.add(Approval(request_id="old", approver_id="U3", approved_at=utcnow(), note="Looks right"))
        with db.sessions() as session:
            assert (view := read_view(session, "old")) is not None and view.notes == (("U3", "Looks right"),)
        command.downgrade(schema.alembic_config(database_url), "0005")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM approvals")).scalar() == 2
            connection.execute(text("DELETE FROM approvals WHERE approver_id = 'U3'"))
    engine.dispose()


def test_a_reason_submitted_after_someone_else_decided_is_told_what_happened_and_changes_nothing(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant("UOTHER", "approver", CODE)
    request_id = slack.request(REQUESTER)
    modal = slack.open_modal(APPROVER, "reject", request_id)
    slack.click("UOTHER", "approve", request_id)
    slack.wait_outcome("WhatCounts accepted the send")
    assert form_errors(slack.submit(APPROVER, modal, note="Too late")) == {"note": "This request was already sent."}
    assert db.request(request_id).state == "sent" and "rejected" not in db.events(request_id)


def test_when_slack_will_not_open_the_window_the_approver_is_told_to_click_again(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_slack.fail("views.open", "expired_trigger_id", times=1)
    slack.click(APPROVER, "reject", request_id)
    slack.wait_ephemeral(APPROVER, "Slack did not open the window in time. Click the button again.")
    assert slack.reject(APPROVER, request_id, "Second try").text == ""
    slack.wait_card(request_id, "Second try")


def test_a_thread_reply_slack_refuses_leaves_the_decision_and_its_card_standing(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_slack.fail("chat.postMessage", "internal_error", when=lambda p: bool(p.get("thread_ts")))
    assert slack.reject(APPROVER, request_id, "Not this week").text == ""
    slack.wait_card(request_id, "Not this week")
    slack.settle()
    assert db.request(request_id).state == "rejected" and db.events(request_id)[-1] == "rejected"
    assert slack.bot is not None and f"request {request_id}: outcome post failed, will retry" in slack.bot.log()
    assert db.request(request_id).outcome_posted is False  # the requester is told by a later sweep
