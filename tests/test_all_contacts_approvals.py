"""More eyes for All contacts: a per-code number of approvals for sends to All contacts (#13),
and the migration that adds it with the approvers group (#12)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from bot.rules import policy_file
from bot.rules.cache import RulesCache
from bot.rules.sender_codes import SenderCodeError, SenderCodeRules, get_rules, set_sender_code
from bot.store import schema
from bot.store.engine import make_engine
from tests.fakes import FakeSlack, FakeWhatCounts
from tests.harness import CODE, Database, SlackDriver, insert_old_request, run_cli

REQUESTER, APPROVER, APPROVER2, ADMIN = "UREQUESTER", "UAPPROVER", "UAPPROVER2", "UADMIN"


def two_approvers_for_all_contacts(db: Database) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP"], approvals_all_contacts=2)
    db.grant(APPROVER2, "approver")


def test_a_send_to_all_contacts_waits_for_the_codes_higher_number(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    two_approvers_for_all_contacts(db)
    request_id = slack.request(REQUESTER, group_name="*")
    assert db.request(request_id).approvals_required == 2
    card = json.dumps(fake_slack.calls("chat.postMessage")[0]["blocks"])
    assert "Needs 2 approvals: sends to All contacts need 2 for this sender code." in card

    slack.click(APPROVER, "approve", request_id)
    slack.wait_card(request_id, f"Approvals: 1 of 2 (<@{APPROVER}>)")
    assert db.request(request_id).state == "pending" and fake_whatcounts.posts() == []

    slack.click(APPROVER2, "approve", request_id)
    slack.wait_outcome("submitted")
    assert db.request(request_id).state == "sent" and len(fake_whatcounts.posts()) == 1


def test_a_send_to_a_group_of_that_code_needs_the_normal_number(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    two_approvers_for_all_contacts(db)
    request_id = slack.request(REQUESTER, group_name="VIP")
    assert db.request(request_id).approvals_required == 1
    card = json.dumps(fake_slack.calls("chat.postMessage")[0]["blocks"])
    assert "Needs 1 approval: sends to a group need 1 for this sender code." in card
    slack.click(APPROVER, "approve", request_id)
    slack.wait_outcome("submitted")
    assert len(fake_whatcounts.posts()) == 1


def test_a_request_keeps_the_number_it_was_made_with(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    two_approvers_for_all_contacts(db)
    request_id = slack.request(REQUESTER, group_name="*")
    with db.sessions.begin() as session:  # lowered after the request was made: this request still needs 2
        set_sender_code(session, CODE, ADMIN, clear=["approvals_all_contacts"])
    slack.click(APPROVER, "approve", request_id)
    slack.wait_card(request_id, f"Approvals: 1 of 2 (<@{APPROVER}>)")
    assert db.request(request_id).state == "pending" and fake_whatcounts.posts() == []


def test_the_form_shows_the_rule_from_the_rules_cache(db: Database, slack: SlackDriver) -> None:
    db.sender_code(CODE, approvals_required=1)
    db.grant(REQUESTER, "requester")
    assert "(2 for All contacts)" not in json.dumps(slack.open_form(REQUESTER)["blocks"])
    with db.sessions.begin() as session:  # elsewhere: the cache sees the policy version move
        set_sender_code(session, CODE, ADMIN, approvals_all_contacts=2)
    assert "1 approval needed (2 for All contacts)" in json.dumps(slack.open_form(REQUESTER)["blocks"])
    rules = RulesCache(db.sessions, max_age=0).current().codes
    assert [(r.approvals, r.approvals_all_contacts) for r in rules] == [(1, 2)]


@pytest.mark.parametrize(("values", "message"), [
    ({"approvals": 2, "approvals_all_contacts": 1}, "approvals all contacts: is 1, fewer than the 2 approvals"),
    ({"approvals_all_contacts": 0}, "approvals all contacts: must be a whole number, at least 1, or none"),
    ({"approvers_group": "marketing"}, "approvers group: 'marketing' is not a Slack user group ID"),
    ({"approvals_all_contacts": 2, "clear": ["approvals_all_contacts"]}, "approvals_all_contacts is both given"),
])
def test_invalid_settings_change_nothing(db: Database, values: dict[str, object], message: str) -> None:
    db.sender_code(CODE, label="Before")
    with db.sessions.begin() as session, pytest.raises(SenderCodeError, match=message):
        set_sender_code(session, CODE, ADMIN, **values)  # type: ignore[arg-type]
    with db.sessions() as session:
        assert get_rules(session, CODE) == SenderCodeRules(code=CODE, label="Before")


def test_raising_the_normal_number_past_the_all_contacts_one_is_refused(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", "*")
    db.sender_code(CODE, approvals_required=1, approvals_all_contacts=2)
    reply = slack.command(ADMIN, f"admin sender-code set {CODE} --approvals 3").text
    assert "was not changed" in reply and "approvals all contacts: is 2, fewer than the 3 approvals" in reply, reply
    reply = slack.command(ADMIN, f"admin sender-code set {CODE} --approvals 3 --approvals-all-contacts none").text
    assert "approvals_all_contacts 2 -&gt; None" in reply and "approvals 3," in reply, reply


def test_the_policy_file_checks_the_all_contacts_number_against_the_codes(db: Database) -> None:
    document = (f"sender_codes:\n- {{code: '{CODE}', approvals: 3, approvals_all_contacts: 2}}\n"
                "- {code: '12345', approvals_all_contacts: two}\ngrants: []\n")
    with db.sessions.begin() as session, pytest.raises(policy_file.PolicyError) as caught:
        policy_file.import_policy(session, document, "U1")
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "sender_codes[0].approvals_all_contacts", "sender_codes[1].approvals_all_contacts"]
    with db.sessions.begin() as session:
        policy_file.import_policy(session, document.replace("approvals_all_contacts: 2", "approvals_all_contacts: 4")
                                  .replace("two", "1"), "U1")
        assert get_rules(session, CODE) == SenderCodeRules(code=CODE, approvals=3, approvals_all_contacts=4)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the functions run on both above
def test_command_line(db: Database, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "DATABASE_URL": db.url}
    done = run_cli("sender-code", "set", CODE, "--approvals", "2", "--approvals-all-contacts", "3",
                   "--approvers-group", "S0123ABCD", env=env, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1:] == [
        f"{CODE}  (no label)", "    approvals 2 (3 for All contacts), self-approval no, no daily cap, no quiet hours",
        "    groups: none; channels: any; cards ask user group S0123ABCD"]
    done = run_cli("sender-code", "set", CODE, "--approvals-all-contacts", "1", env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == (
        f"sms-bot: sender code {CODE} was not changed:\n  - approvals all contacts: is 1, fewer than the 2 "
        "approvals a send to a group needs: a send to All contacts needs at least as many\n")
    done = run_cli("sender-code", "set", CODE, "--approvals-all-contacts", "none", "--approvers-group", "none",
                   env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == (
        f"sender code {CODE} updated: approvals_all_contacts 3 -> None; approvers_group 'S0123ABCD' -> None")


def test_migration_0009_adds_both_settings_unset_and_keeps_codes_and_requests(database_url: str) -> None:
    schema.upgrade(database_url, "0008")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO sender_codes (code, label, approvals_required, allow_self_approval, "
                                f"groups, channels) VALUES ('{CODE}', 'Old', 2, false, '[]', '[]')"))
        insert_old_request(connection, "old", approvals=2)
    db = Database(database_url, engine)
    for _ in range(2):  # up, and down and up again
        schema.upgrade(database_url)
        with db.sessions() as session:
            assert get_rules(session, CODE) == SenderCodeRules(code=CODE, label="Old", approvals=2)
        with db.engine.connect() as connection:
            version = connection.execute(text("SELECT version FROM policy_version")).scalar_one()
        with db.sessions.begin() as session:  # the triggers of 0004 still see changes to the table
            set_sender_code(session, CODE, ADMIN, approvals_all_contacts=3, approvers_group="S0123ABCD")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT version FROM policy_version")).scalar_one() > version
        command.downgrade(schema.alembic_config(database_url), "0008")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT label FROM sender_codes")).scalar() == "Old"
            assert connection.execute(text("SELECT approvals_required FROM send_requests")).scalar() == 2
    engine.dispose()
