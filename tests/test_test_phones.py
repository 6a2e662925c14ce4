"""Registering test phones: only admins of every sender code, never their own, from Slack, the command line and
the policy file; E.164 checked with a clear error; the migration that adds them, on both databases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from alembic import command
from sqlalchemy import inspect, text

from bot.ops.config import ConfigError, load_settings
from bot.rules import policy_file, test_phones
from bot.store import schema
from bot.store.engine import make_engine
from bot.store.models import ALL_SENDER_CODES
from tests.harness import CODE, Database, SlackDriver, insert_old_request, run_cli

ADMIN, ADMIN2, CODE_ADMIN, PERSON = "UADMIN", "UADMIN2", "UCODEADMIN", "U0PERSON"


def say(slack: SlackDriver, user_id: str, words: str) -> str:
    response = slack.command(user_id, f"admin {words}")
    assert response.status_code == 200, response.text
    return response.text


def phones(db: Database) -> dict[str, tuple[str, str]]:
    with db.sessions() as session:
        return {r.user_id: (r.phone, r.set_by) for r in test_phones.list_test_phones(session)}


@pytest.mark.parametrize(("raw", "phone"), [
    ("+15551234567", "+15551234567"), (" +1 (555) 123-4567 ", "+15551234567"), ("+44 7700.900123", "+447700900123"),
    ("<tel:+15551234567|+1 555 123 4567>", "+15551234567"),
])
def test_phones_are_read_as_e164(raw: str, phone: str) -> None:
    assert test_phones.parse_phone(raw) == phone


@pytest.mark.parametrize("raw", ["5551234567", "+0551234567", "+1555", "+1234567890123456", "+1555abc4567",
                                 "tel:+15551234567", "+1 555 123 4567 ext 2", ""])
def test_anything_else_is_refused_saying_what_is_expected(raw: str) -> None:
    expected = re.escape("is not a phone number in E.164 form: a + and the country")
    with pytest.raises(test_phones.PhoneError, match=expected):
        test_phones.parse_phone(raw)


def test_an_admin_of_every_code_registers_lists_and_removes_someone_elses_phone_from_slack(
        db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    assert say(slack, ADMIN, f"test-phone set <@{PERSON}|person> +1 555 123 4567") == (
        f"<@{PERSON}>: test phone +•••••••4567 registered")
    assert say(slack, ADMIN, f"test-phone set {PERSON} +15551234567").endswith("already registered")
    listed = say(slack, ADMIN, "test-phone list")
    assert listed.startswith("*Test phones*\n• <@U0PERSON>: +•••••••4567 (by <@UADMIN>, ")
    assert "5551234567" not in listed
    assert phones(db) == {PERSON: ("+15551234567", ADMIN)}
    assert "test-phone set USER PHONE" in say(slack, ADMIN, "help")

    assert say(slack, ADMIN, f"test-phone remove {PERSON}") == f"<@{PERSON}>: test phone removed"
    assert say(slack, ADMIN, f"test-phone remove {PERSON}") == f"<@{PERSON}>: had no test phone"
    assert phones(db) == {}
    events = [(e.event, e.actor_id, e.details) for e in db.audit_rows() if e.event == "test_phone"]
    assert events == [("test_phone", ADMIN, {"user_id": PERSON, "action": "set", "phone": "+•••••••4567"}),
                      ("test_phone", ADMIN, {"user_id": PERSON, "action": "remove", "phone": "+•••••••4567"})]


def test_nobody_registers_their_own_phone_and_an_admin_of_one_code_registers_none(
        db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(ADMIN2, "admin", ALL_SENDER_CODES)
    db.grant(CODE_ADMIN, "admin", CODE)
    own = say(slack, ADMIN, f"test-phone set {ADMIN} +15551234567")
    assert own == ("Nobody registers or removes their own test phone, admins included, so that no one can have texts "
                   f"sent to a number only they vouch for: ask <@{ADMIN2}>. Nothing was changed.")
    scoped = say(slack, CODE_ADMIN, f"test-phone set {PERSON} +15551234567")
    assert scoped.startswith(f"You administer sender code(s) {CODE} only; registering a test phone for every "
                             "sender code needs an admin grant for it.")
    assert "is only for admins" in say(slack, PERSON, f"test-phone set {PERSON} +15551234567")
    assert phones(db) == {}
    refused = [(e.actor_id, e.details["reason"]) for e in db.audit_rows() if e.event == "refused"]
    assert refused == [(ADMIN, "own test phone: set"),
                       (CODE_ADMIN, "registering a test phone needs an admin of every sender code"),
                       (PERSON, "holds no admin grant")]


@pytest.mark.parametrize(("words", "said"), [
    (f"test-phone set {PERSON} 5551234567", "'5551234567' is not a phone number in E.164 form"),
    ("test-phone set someone +15551234567", "'someone' is not a Slack user ID"),
    (f"test-phone set {PERSON}", "the following arguments are required: PHONE"),
    ("test-phone call", "'test-phone call' is not an admin command"),
])
def test_bad_input_says_what_is_wrong_and_changes_nothing(db: Database, slack: SlackDriver, words: str,
                                                          said: str) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    assert said in say(slack, ADMIN, words)
    assert phones(db) == {}


def test_the_operator_manages_phones_on_the_command_line(db: Database, env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli("test-phone", "set", PERSON, "+44 7700 900123", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"{PERSON}: test phone +447700900123 registered\n")
    listed = run_cli("test-phone", "list", env=env, cwd=tmp_path).stdout.splitlines()
    assert listed[0] == "USER\tPHONE\tSET BY\tSET AT" and listed[1].startswith(f"{PERSON}\t+447700900123\tcli:")
    bad = run_cli("test-phone", "set", PERSON, "07700 900123", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "is not a phone number in E.164 form" in bad.stderr
    assert run_cli("test-phone", "set", "nobody", "+15551234567", env=env, cwd=tmp_path).returncode == 2
    assert run_cli("test-phone", "remove", PERSON, env=env, cwd=tmp_path).stdout == f"{PERSON}: test phone removed\n"
    assert phones(db) == {}


def test_the_policy_file_carries_the_phones_and_leaves_them_alone_when_it_does_not(db: Database) -> None:
    db.test_phone(PERSON, "+15551234567")
    with db.sessions() as session:
        exported = policy_file.export_policy(session)
    assert yaml.safe_load(exported)["test_phones"] == [{"user": PERSON, "phone": "+15551234567"}]
    with db.sessions.begin() as session:
        assert not policy_file.import_policy(session, exported, "UIMPORT").changed
        older = policy_file.import_policy(session, "sender_codes: []\ngrants: []\n", "UIMPORT")  # no test_phones key
    assert older.lines() == ["no changes: the bot's policy already matches the file"] and phones(db) != {}

    document = "sender_codes: []\ngrants: []\ntest_phones:\n  - {user: U0OTHER, phone: '+44 7700 900123'}\n"
    with db.sessions.begin() as session:
        summary = policy_file.import_policy(session, document, "UIMPORT")
    assert summary.lines() == ["test phone of U0OTHER set", f"test phone of {PERSON} removed"]
    assert phones(db) == {"U0OTHER": ("+447700900123", "UIMPORT")}


def test_a_bad_phone_in_the_policy_file_is_named_with_its_path(db: Database) -> None:
    document = ("sender_codes: []\ngrants: []\ntest_phones:\n  - {user: U0ONE, phone: 5551234567}\n"
                "  - {user: someone, phone: '+15551234567'}\n  - {user: U0ONE, phone: '+15551234567'}\n")
    with pytest.raises(policy_file.PolicyError) as raised, db.sessions.begin() as session:
        policy_file.import_policy(session, document, "UIMPORT")
    problems = raised.value.problems
    assert problems[0].startswith("test_phones[0].phone: '5551234567' is not a phone number in E.164 form")
    assert problems[0].endswith("Write it in quotes: YAML reads +15551234567 as a number.")
    assert problems[1].startswith("test_phones[1].user: must be a Slack user ID")
    assert problems[2] == "test_phones[2].user: U0ONE has a test phone earlier in the list; one phone per person"


@pytest.mark.parametrize(("name", "raw"), [("TEST_SENDS_PER_REQUEST", "three"), ("TEST_SENDS_PER_REQUEST", "21"),
                                           ("TEST_SENDS_PER_DAY", "-1"), ("TEST_SENDS_PER_DAY", "1.5"),
                                           ("TEST_SENDS_PER_DAY", "²")])
def test_the_limits_are_whole_numbers_in_range(env: dict[str, str], name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**env, name: raw})
    assert [p for p in raised.value.problems if p.startswith(f"{name} must be a whole number from 0 to ")]
    settings = load_settings({**env, "TEST_SENDS_PER_REQUEST": "0", "TEST_SENDS_PER_DAY": "100"})
    assert (settings.test_sends_per_request, settings.test_sends_per_day) == (0, 100)


def test_migration_0011_adds_the_tables_beside_existing_requests_and_drops_them_on_downgrade(
        database_url: str) -> None:
    schema.upgrade(database_url, "0010")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            insert_old_request(connection, "old")
        schema.upgrade(database_url)
        assert {"test_phones", "test_sends"} <= set(inspect(engine).get_table_names())
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO test_phones (user_id, phone, set_by, set_at) "
                                    "VALUES ('U1', '+15551234567', 'cli:op', CURRENT_TIMESTAMP)"))
            connection.execute(text("INSERT INTO test_sends (request_id, user_id, click, at, outcome) "
                                    "VALUES ('old', 'U1', '1.1', CURRENT_TIMESTAMP, 'sent')"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT state FROM send_requests")).scalar_one() == "pending"
            assert connection.execute(text("SELECT phone FROM test_phones")).scalar_one() == "+15551234567"
        command.downgrade(schema.alembic_config(database_url), "0010")
        assert not {"test_phones", "test_sends"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
