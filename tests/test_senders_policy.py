"""The sender-code registry, the daily-cap count, policy as code, and their commands (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from sqlalchemy import select, text

from bot.quiet_hours import QuietHours
from bot.rules import grants, policy_file, sender_codes
from bot.rules.sender_codes import SenderCodeError, SenderCodeRules, set_sender_code
from bot.store import schema
from bot.store.engine import make_engine
from bot.store.models import (
    ALL_SENDER_CODES,
    AuditEvent,
    Grant,
    Role,
    SendRequest,
    State,
)
from tests.harness import Database, run_cli

CODE, OTHER = "5551234567", "12345"


def audit_rows(db: Database, event: str | None = None) -> list[AuditEvent]:
    return [row for row in db.audit_rows() if event is None or row.event == event]


def rules_of(db: Database, code: str = CODE) -> SenderCodeRules | None:
    with db.sessions() as session:
        return sender_codes.get_rules(session, code)


# --- migration ---------------------------------------------------------------------------

def test_migration_keeps_existing_sender_codes(database_url: str) -> None:
    schema.upgrade(database_url, "0001")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO sender_codes (code, label, approvals_required, allow_self_approval) "
                                "VALUES ('55555', 'Old', 2, false)"))
    schema.upgrade(database_url)
    db = Database(database_url, engine)
    assert rules_of(db, "55555") == SenderCodeRules(code="55555", label="Old", approvals=2)
    command.downgrade(schema.alembic_config(database_url), "0001")
    schema.upgrade(database_url)
    assert rules_of(db, "55555") == SenderCodeRules(code="55555", label="Old", approvals=2)
    engine.dispose()


# --- set_sender_code ---------------------------------------------------------------------

def test_create_with_defaults_and_audit(db: Database) -> None:
    with db.sessions.begin() as session:
        change = set_sender_code(session, "(555) 123-4567", "UADMIN", label="Marketing", approvals=2)
    assert change.code == CODE and change.before is None and change.changed
    assert rules_of(db) == SenderCodeRules(code=CODE, label="Marketing", approvals=2)
    [event] = audit_rows(db, "sender_code")
    assert (event.actor_id, event.sender_code) == ("UADMIN", CODE)
    assert event.details == {"before": None, "after": {
        "label": "Marketing", "groups": [], "approvals": 2, "self_approval": False, "daily_cap": None,
        "quiet_hours": None, "timezone": None, "channels": [], "approvals_all_contacts": None,
        "approvers_group": None}}


def test_update_changes_only_the_given_fields(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "UADMIN", label="Marketing", groups=["VIP", "Newsletter"], approvals=2,
                        daily_cap=5, quiet_hours="21:00-8:00", timezone="America/New_York", channels=["C0123ABC"],
                        self_approval=True)
    with db.sessions.begin() as session:
        change = set_sender_code(session, CODE, "UOTHER", daily_cap=3, channels=[])
    assert rules_of(db) == SenderCodeRules(
        code=CODE, label="Marketing", groups=("VIP", "Newsletter"), approvals=2, self_approval=True, daily_cap=3,
        quiet_hours=QuietHours(time(21), time(8), "America/New_York"), timezone="America/New_York", channels=())
    assert change.before is not None and change.after is not None
    assert {k for k in change.after if change.before[k] != change.after[k]} == {"daily_cap", "channels"}
    last = audit_rows(db, "sender_code")[-1]
    assert last.actor_id == "UOTHER"
    assert (last.details["before"]["daily_cap"], last.details["after"]["daily_cap"]) == (5, 3)


def test_an_unchanged_code_is_not_audited_again(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "UADMIN", label="Marketing")
    with db.sessions.begin() as session:
        change = set_sender_code(session, CODE, "UADMIN", label=" Marketing ")
    assert not change.changed
    assert len(audit_rows(db, "sender_code")) == 1


def test_clear_nullable_fields(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "U1", daily_cap=5, quiet_hours="21:00-08:00", timezone="Europe/Berlin")
    with db.sessions.begin() as session, pytest.raises(SenderCodeError, match="quiet hours need a time zone"):
        set_sender_code(session, CODE, "U1", clear=["timezone"])
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "U1", clear=["daily_cap", "quiet_hours"])
    assert rules_of(db) == SenderCodeRules(code=CODE, timezone="Europe/Berlin")


def test_every_problem_is_reported_and_nothing_changes(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "U1", label="Before")
    with db.sessions.begin() as session, pytest.raises(SenderCodeError) as caught:
        set_sender_code(session, CODE, "U1", label="After", approvals=0, daily_cap=0, quiet_hours="21:00-08:00",
                        channels=["general"], groups=["VIP", " "])
    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert any(p.startswith("approvals: must be a whole number, at least 1 (got 0)") for p in problems)
    assert any(p.startswith("daily cap: must be a whole number of sends") for p in problems)
    assert any(p.startswith("quiet hours: quiet hours need a time zone") for p in problems)
    assert any("'general' is not a Slack channel ID" in p for p in problems)
    assert any("a group name cannot be empty" in p for p in problems)
    assert rules_of(db) == SenderCodeRules(code=CODE, label="Before")
    assert len(audit_rows(db, "sender_code")) == 1


@pytest.mark.parametrize(("values", "message"), [
    ({"timezone": "Mars/Base"}, "'Mars/Base' is not a known time zone"),
    ({"quiet_hours": "21-8", "timezone": "UTC"}, "'21' is not a time like 21:00"),
    ({"groups": ["VIP", "VIP"]}, "group 'VIP' is listed twice"),
    ({"channels": ["D0123ABC"]}, "'D0123ABC' is not a Slack channel ID"),
    ({"label": "x" * 101}, "is 101 characters; the limit is 100"),
    ({"clear": ["label"]}, "label cannot be cleared"),
    ({"daily_cap": 3, "clear": ["daily_cap"]}, "daily_cap is both given and cleared"),
])
def test_invalid_values(db: Database, values: dict[str, Any], message: str) -> None:
    with db.sessions.begin() as session, pytest.raises(SenderCodeError, match=message.replace("(", r"\(")):
        set_sender_code(session, CODE, "U1", **values)


def test_not_a_sender_code(db: Database) -> None:
    with db.sessions.begin() as session, pytest.raises(SenderCodeError, match="'SHOP' is not a sender code"):
        set_sender_code(session, "SHOP", "U1")


def test_list_sender_codes_in_code_order(db: Database) -> None:
    with db.sessions.begin() as session:
        for code in ("5550000002", "12345", "5550000001"):
            set_sender_code(session, code, "U1")
    with db.sessions() as session:
        assert [row.code for row in sender_codes.list_sender_codes(session)] == ["12345", "5550000001", "5550000002"]


def test_a_codes_quiet_hours_come_back_as_one_value_in_its_time_zone(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "U1", quiet_hours="21:00-8:00", timezone="America/New_York")
    found = rules_of(db)
    assert found is not None and found.quiet_hours == QuietHours(time(21), time(8), "America/New_York")
    assert found.quiet_hours.contains(datetime(2026, 1, 15, 2, 0))  # 21:00 in New York
    assert SenderCodeRules(code=CODE).quiet_hours is None
    with pytest.raises(ValueError, match="quiet hours in UTC for a sender code in Europe/Berlin"):
        SenderCodeRules(code=CODE, quiet_hours=QuietHours(time(21), time(8), "UTC"), timezone="Europe/Berlin")


# --- the daily cap ------------------------------------------------------------------------

def add_send(db: Database, request_id: str, state: State, sending_at: datetime | None, code: str = CODE) -> None:
    with db.sessions.begin() as session:
        created = (sending_at or datetime(2026, 1, 15, 12)) - timedelta(hours=3)
        session.add(SendRequest(id=request_id, state=state, requester_id="U1", channel_id="C1", card_ts="1.1",
                                message_name="M", sender_code=code, campaign_name=request_id, created_at=created,
                                expires_at=created + timedelta(hours=1)))
        session.flush()
        if sending_at is not None:
            session.add(AuditEvent(at=sending_at, event="sending", actor_id="U2", request_id=request_id,
                                   sender_code=code, details={}))


def test_sends_today_counts_sends_started_in_the_local_day(db: Database) -> None:
    ny = "America/New_York"  # 15 January 2026 in New York: 05:00 UTC on the 15th to 05:00 UTC on the 16th
    add_send(db, "before", State.SENT, datetime(2026, 1, 15, 4, 59))
    add_send(db, "first", State.SENT, datetime(2026, 1, 15, 5, 0))
    add_send(db, "unknown", State.UNKNOWN, datetime(2026, 1, 15, 18))
    add_send(db, "sending", State.SENDING, datetime(2026, 1, 16, 4, 59))
    add_send(db, "failed", State.FAILED, datetime(2026, 1, 15, 18))  # WhatCounts refused: not sent
    add_send(db, "pending", State.PENDING, None)
    add_send(db, "other", State.SENT, datetime(2026, 1, 15, 18), code=OTHER)
    add_send(db, "after", State.SENT, datetime(2026, 1, 16, 5, 0))
    with db.sessions() as session:
        assert sender_codes.sends_today(session, CODE, datetime(2026, 1, 15, 20), ny) == 3
        assert sender_codes.sends_today(session, CODE, datetime(2026, 1, 16, 4, 0), ny) == 3  # still the 15th there
        assert sender_codes.sends_today(session, CODE, datetime(2026, 1, 16, 6, 0), ny) == 1
        assert sender_codes.sends_today(session, CODE, datetime(2026, 1, 15, 20), None) == 3  # UTC day of the 15th
        assert sender_codes.sends_today(session, CODE, datetime(2026, 1, 16, 1), None) == 2
        assert sender_codes.sends_today(session, OTHER, datetime(2026, 1, 15, 20), ny) == 1


def test_day_bounds_follow_daylight_saving_time() -> None:
    ny = "America/New_York"
    assert sender_codes.day_bounds(datetime(2026, 3, 8, 12), ny) == (datetime(2026, 3, 8, 5), datetime(2026, 3, 9, 4))
    assert sender_codes.day_bounds(datetime(2026, 11, 1, 12), ny) == (datetime(2026, 11, 1, 4),
                                                                      datetime(2026, 11, 2, 5))
    assert sender_codes.day_bounds(datetime(2026, 1, 15, 23, 59), None) == (datetime(2026, 1, 15),
                                                                            datetime(2026, 1, 16))


# --- policy as code ----------------------------------------------------------------------

def sample_policy(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "U1", label="Marketing — Café ☕", groups=["VIP", "Newsletter: weekly"],
                        approvals=2, daily_cap=5, quiet_hours="21:00-08:00", timezone="America/New_York",
                        channels=["C0123ABC", "G0456DEF"], self_approval=False, approvals_all_contacts=3,
                        approvers_group="S0123ABC")
        set_sender_code(session, OTHER, "U1", label="yes", approvals=1, self_approval=True)
        grants.grant(session, "UREQ", Role.REQUESTER, CODE, "U1")
        grants.grant(session, "UAPP", Role.APPROVER, ALL_SENDER_CODES, "U1")
        grants.grant(session, "UAPP", Role.APPROVER, OTHER, "U1")
        grants.grant(session, "UADM", Role.ADMIN, ALL_SENDER_CODES, "U1")


def test_export_is_stable_and_readable(db: Database) -> None:
    sample_policy(db)
    with db.sessions() as session:
        exported = policy_file.export_policy(session)
        assert policy_file.export_policy(session) == exported
    document = yaml.safe_load(exported)
    assert document["version"] == 1
    assert document["sender_codes"][0] == {"code": OTHER, "label": "yes", "groups": [], "approvals": 1,
                                           "approvals_all_contacts": None, "self_approval": True,
                                           "daily_cap": None, "quiet_hours": None, "timezone": None,
                                           "channels": [], "approvers_group": None}
    assert document["sender_codes"][1]["code"] == CODE
    assert document["sender_codes"][1]["label"] == "Marketing — Café ☕"
    assert (document["sender_codes"][1]["approvals_all_contacts"], document["sender_codes"][1]["approvers_group"]) == (
        3, "S0123ABC")
    assert document["grants"] == [
        {"user": "UADM", "role": "admin", "sender_code": "*"},
        {"user": "UAPP", "role": "approver", "sender_code": "*"},
        {"user": "UAPP", "role": "approver", "sender_code": OTHER},
        {"user": "UREQ", "role": "requester", "sender_code": CODE},
    ]
    assert "Café ☕" in exported  # written as text, not as escapes


def test_export_then_import_round_trips_exactly(db: Database) -> None:
    sample_policy(db)
    with db.sessions() as session:
        exported = policy_file.export_policy(session)
    events = len(db.audit_rows())
    with db.sessions.begin() as session:
        summary = policy_file.import_policy(session, exported, "U9")
    assert not summary.changed and summary.lines() == ["no changes: the bot's policy already matches the file"]
    assert len(db.audit_rows()) == events
    # Wipe everything, then rebuild it from the file alone.
    with db.sessions.begin() as session:
        wiped = policy_file.import_policy(session, "sender_codes: []\ngrants: []\n", "U9")
    assert sorted(wiped.removed) == [OTHER, CODE] and len(wiped.revoked) == 4
    with db.sessions() as session:
        assert sender_codes.list_sender_codes(session) == [] and grants.list_grants(session) == []
    with db.sessions.begin() as session:
        rebuilt = policy_file.import_policy(session, exported, "U9")
    assert sorted(rebuilt.added) == [OTHER, CODE] and len(rebuilt.granted) == 4
    with db.sessions() as session:
        assert policy_file.export_policy(session) == exported


def test_import_makes_the_policy_exactly_the_file_and_audits_it(db: Database) -> None:
    sample_policy(db)
    document = f"""
sender_codes:
  - code: "(555) 123-4567"
    label: Marketing
    approvals: 3
    quiet_hours: "22:00-07:30"
    timezone: Europe/Berlin
  - code: "98765"
grants:
  - {{user: UREQ, role: requester, sender_code: "{CODE}"}}
  - {{user: UNEW, role: approver, sender_code: "98765"}}
"""
    before = len(db.audit_rows())
    with db.sessions.begin() as session:
        summary = policy_file.import_policy(session, document, "UIMPORT")
    assert (summary.added, summary.updated, summary.removed) == (["98765"], [CODE], [OTHER])
    assert [(g.user, g.role, g.sender_code) for g in summary.granted] == [("UNEW", "approver", "98765")]
    assert {(g.user, g.role, g.sender_code) for g in summary.revoked} == {
        ("UAPP", "approver", "*"), ("UAPP", "approver", OTHER), ("UADM", "admin", "*")}
    assert rules_of(db) == SenderCodeRules(code=CODE, label="Marketing", approvals=3,
                                              quiet_hours=QuietHours.parse("22:00-07:30", "Europe/Berlin"),
                                              timezone="Europe/Berlin")
    assert rules_of(db, OTHER) is None
    with db.sessions() as session:
        assert {(g.user_id, g.role, g.sender_code) for g in session.scalars(select(Grant))} == {
            ("UREQ", "requester", CODE), ("UNEW", "approver", "98765")}
    new = db.audit_rows()[before:]
    assert sorted(e.event for e in new) == ["grant", "revoke", "revoke", "revoke", "sender_code", "sender_code",
                                            "sender_code"]
    assert {e.actor_id for e in new} == {"UIMPORT"}
    removed = next(e for e in new if e.event == "sender_code" and e.sender_code == OTHER)
    assert removed.details["after"] is None and removed.details["before"]["label"] == "yes"


def test_a_bad_document_lists_every_problem_and_changes_nothing(db: Database) -> None:
    sample_policy(db)
    before = (len(db.audit_rows()), rules_of(db))
    document = """
version: 1
sender_codes:
  - code: 5551234567
    approvals: 0
    daly_cap: 3
  - code: "12345"
    quiet_hours: "21:00-08:00"
    channels: [general]
  - code: "1 2345"
  - label: no code
grants:
  - {user: UREQ, role: requestor, sender_code: "*"}
  - {user: someone, role: admin}
  - {user: UAPP, role: approver, sender_code: "*"}
  - {user: UAPP, role: approver, sender_code: "*"}
extra: true
"""
    with db.sessions.begin() as session, pytest.raises(policy_file.PolicyError) as caught:
        policy_file.import_policy(session, document, "U9")
    problems = caught.value.problems
    expected = [
        "extra: unknown key",
        "sender_codes[0].daly_cap: unknown key; expected one of code, label, groups,",
        "sender_codes[0].approvals: must be a whole number, at least 1 (got 0)",
        "sender_codes[0].code: write the sender code in quotes",
        "sender_codes[1].quiet_hours: quiet hours need a time zone",
        "sender_codes[1].channels: 'general' is not a Slack channel ID",
        "sender_codes[2].code: sender code 12345 is also sender_codes[1]",
        "sender_codes[3].code: missing",
        "grants[0].role: must be one of requester, approver, admin (got 'requestor')",
        "grants[1].user: must be a Slack user ID",
        "grants[1].sender_code: must be a sender code in quotes, or '*'",
        "grants[3]: the same grant as grants[2]",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected), problems
    assert (len(db.audit_rows()), rules_of(db)) == before


@pytest.mark.parametrize(("document", "message"), [
    ("", "the file is empty"),
    ("sender_codes: [\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("grants: []\n", "sender_codes: missing; write `sender_codes: []` to have none"),
    ("version: 2\nsender_codes: []\ngrants: []\n", "version: this bot reads version 1 (got 2)"),
    ("sender_codes: {}\ngrants: []\n", "sender_codes: must be a list"),
    ("sender_codes: [\"55555\"]\ngrants: []\n", "sender_codes[0]: must be a mapping"),
    ("sender_codes: [{code: '55555', self_approval: 'no'}]\ngrants: []\n",
     "sender_codes[0].self_approval: must be true or false (got 'no')"),
])
def test_document_shape_errors(db: Database, document: str, message: str) -> None:
    with db.sessions.begin() as session, pytest.raises(policy_file.PolicyError) as caught:
        policy_file.import_policy(session, document, "U9")
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_import_is_all_or_nothing_when_applying_fails(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    sample_policy(db)
    with db.sessions() as session:
        exported = policy_file.export_policy(session)
    events = len(db.audit_rows())

    def broken_grant(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("database went away")
    monkeypatch.setattr(grants, "grant", broken_grant)
    document = exported.replace("label: yes", "label: changed").replace("user: UREQ", "user: UNEW")
    with pytest.raises(RuntimeError), db.sessions.begin() as session:
        policy_file.import_policy(session, document, "U9")
    with db.sessions() as session:
        assert policy_file.export_policy(session) == exported
    assert len(db.audit_rows()) == events


# --- the command line ----------------------------------------------------------------------

def cli(db: Database, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "DATABASE_URL": db.url}
    result = run_cli(*args, env=env, cwd=tmp_path)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the functions run on both above
def test_command_line(db: Database, tmp_path: Path) -> None:
    code, out, err = cli(db, tmp_path, "sender-code", "set", "555-123-4567", "--label", "Marketing", "--groups",
                         "VIP, Newsletter", "--approvals", "2", "--daily-cap", "5", "--quiet-hours", "21:00-08:00",
                         "--timezone", "America/New_York", "--channels", "C0123ABC", "--self-approval", "no")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"sender code {CODE} added", f"{CODE}  Marketing",
        "    approvals 2, self-approval no, daily cap 5, quiet hours 21:00-08:00 America/New_York",
        "    groups: VIP, Newsletter; channels: C0123ABC; cards ask its approvers by name"]

    code, out, err = cli(db, tmp_path, "sender-code", "set", CODE, "--daily-cap", "none", "--quiet-hours", "7-8")
    assert code == 2 and out == ""
    assert err.startswith(f"sms-bot: sender code {CODE} was not changed:\n  - quiet hours: '7' is not a time")

    code, out, err = cli(db, tmp_path, "sender-code", "set", CODE, "--daily-cap", "none")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"sender code {CODE} updated: daily_cap 5 -> None"

    policy_file = tmp_path / "policy_file.yaml"
    code, out, err = cli(db, tmp_path, "policy", "export", "--output", str(policy_file))
    assert (code, out, err) == (0, f"policy written to {policy_file}\n", "")
    code, stdout_export, _ = cli(db, tmp_path, "policy", "export")
    assert stdout_export == policy_file.read_text()

    assert "grants: []" in policy_file.read_text()
    policy_file.write_text(policy_file.read_text().replace(
        "grants: []", "grants:\n- {user: UREQ, role: requester, sender_code: '*'}"))
    code, out, err = cli(db, tmp_path, "policy", "import", str(policy_file), "--dry-run")
    assert (code, out, err) == (0, "dry run, not applied: granted UREQ requester for every sender code\n", "")
    code, out, err = cli(db, tmp_path, "policy", "import", str(policy_file))
    assert (code, out, err) == (0, "granted UREQ requester for every sender code\n", "")
    with db.sessions() as session:
        assert grants.has_role(session, "UREQ", Role.REQUESTER, "99999")

    policy_file.write_text("sender_codes: [{code: '12'}]\ngrants: []\n")
    code, out, err = cli(db, tmp_path, "policy", "import", str(policy_file))
    assert code == 2 and out == ""
    assert err.startswith("sms-bot: the policy was not imported:\n  - sender_codes[0].code: '12' is not a sender code")
    code, out, err = cli(db, tmp_path, "policy", "import", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in err and "missing.yaml" in err

    code, out, err = cli(db, tmp_path, "sender-code", "list")
    assert code == 0 and out.splitlines()[0] == f"{CODE}  Marketing"
