"""No one person can make a send possible alone: no one changes their own grants from Slack,
and only an admin of every sender code can let requesters approve their own sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.rules import grants
from bot.rules.sender_codes import get_rules
from bot.slack import commands
from bot.store.models import ALL_SENDER_CODES
from tests.harness import CODE, Database, SlackDriver, run_cli

ADMIN, CODE_ADMIN, COLLEAGUE = "UADMIN", "UCODEADMIN", "UCOLLEAGUE"


@pytest.fixture(autouse=True)
def answers_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """An admin command's reply is what these tests read: past its 2.5 s (Slack's 3 s, less the way there
    and back) the bot would answer ADMIN_TOO_SLOW instead, which on a test machine running eight workers
    on two cores happened once. That bound is test_database_down's subject; here it is out of the way."""
    monkeypatch.setattr(commands, "ACK_BUDGET", 30.0)


def say(slack: SlackDriver, user_id: str, text: str) -> str:
    response = slack.command(user_id, f"admin {text}")
    assert response.status_code == 200, response.text
    return response.text


def held(db: Database, user_id: str) -> set[tuple[str, str]]:
    with db.sessions() as session:
        return {(g.role, g.sender_code) for g in grants.list_grants(session) if g.user_id == user_id}


def refusals(db: Database) -> list[tuple[str, str | None, str]]:
    return [(e.actor_id, e.sender_code, e.details["reason"]) for e in db.audit_rows() if e.event == "refused"]


def test_an_admin_of_one_code_cannot_set_up_a_send_they_alone_approve(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(CODE_ADMIN, "admin", CODE)
    db.sender_code(CODE, label="Marketing US", approvals_required=2)

    reply = say(slack, CODE_ADMIN, f"sender-code set {CODE} --label Mine --self-approval yes --approvals 1")
    assert reply == ("Self-approval lets one person request and approve a send alone, so only an admin of every "
                     f"sender code can enable it for sender code {CODE}: ask <@{ADMIN}>. Nothing was changed.")
    for role in ("requester", "approver"):
        reply = say(slack, CODE_ADMIN, f"grant <@{CODE_ADMIN}|me> {role} {CODE}")
        assert reply == ("Nobody changes their own grants, admins included, so that no one can make a send "
                         f"possible alone: ask <@{ADMIN}>. Nothing was changed."), reply
    assert say(slack, CODE_ADMIN, f"revoke {CODE_ADMIN} admin {CODE}").startswith("Nobody changes their own grants")

    with db.sessions() as session:
        settings = get_rules(session, CODE)
    assert settings is not None and (settings.label, settings.approvals, settings.self_approval) == (
        "Marketing US", 2, False)  # the refused command changed nothing, not even the label
    assert held(db, CODE_ADMIN) == {("admin", CODE)}
    assert "You don't have access to request SMS sends" in slack.command(CODE_ADMIN).text
    assert refusals(db) == [(CODE_ADMIN, CODE, "enabling self-approval needs an admin of every sender code"),
                            (CODE_ADMIN, CODE, "own grant: grant requester"),
                            (CODE_ADMIN, CODE, "own grant: grant approver"),
                            (CODE_ADMIN, CODE, "own grant: revoke admin")]

    # What a code admin may do stays possible: fewer approvals, and grants for other people.
    assert say(slack, CODE_ADMIN, f"sender-code set {CODE} --approvals 1").startswith(f"sender code {CODE} updated")
    assert say(slack, CODE_ADMIN, f"grant {COLLEAGUE} approver {CODE}").endswith("granted")


def test_only_an_admin_of_every_code_enables_self_approval_and_it_is_audited(
        db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(CODE_ADMIN, "admin", CODE)
    db.sender_code(CODE, allow_self_approval=False)
    reply = say(slack, ADMIN, f"sender-code set {CODE} --self-approval yes")
    assert reply.startswith(f"sender code {CODE} updated: self_approval False -&gt; True"), reply
    [change] = [e for e in db.audit_rows() if e.event == "sender_code"]
    assert (change.actor_id, change.details["before"]["self_approval"], change.details["after"]["self_approval"]) == (
        ADMIN, False, True)
    # Once enabled by them, a code admin saying yes again changes nothing and is not refused; no is always allowed.
    assert say(slack, CODE_ADMIN, f"sender-code set {CODE} --self-approval yes").startswith(
        f"sender code {CODE} unchanged")
    assert say(slack, CODE_ADMIN, f"sender-code set {CODE} --self-approval no").startswith(
        f"sender code {CODE} updated: self_approval True -&gt; False")
    assert refusals(db) == []


def test_an_admin_of_every_code_cannot_grant_themselves_either_but_the_operator_can(
        db: Database, slack: SlackDriver, env: dict[str, str], tmp_path: Path) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(CODE_ADMIN, "admin", CODE)
    assert say(slack, ADMIN, f"grant {ADMIN} requester {CODE}") == (
        "Nobody changes their own grants, admins included, so that no one can make a send possible alone: "
        f"ask <@{CODE_ADMIN}>. Nothing was changed.")
    assert say(slack, ADMIN, f"grant {ADMIN} approver").endswith(
        f"the operator can, on the command line (`sms-bot grant {ADMIN} approver --sender-code '*'`). "
        "Nothing was changed.")
    assert held(db, ADMIN) == {("admin", "*")}
    assert refusals(db) == [(ADMIN, CODE, "own grant: grant requester"), (ADMIN, "*", "own grant: grant approver")]

    # The command line is the operator's break glass: it acts in the operator's name, audited as such.
    done = run_cli("grant", ADMIN, "approver", "--sender-code", "*", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert held(db, ADMIN) == {("admin", "*"), ("approver", "*")}
    last = db.audit_rows()[-1]
    assert (last.event, last.actor_id.startswith("cli:"), last.details["user_id"]) == ("grant", True, ADMIN)
