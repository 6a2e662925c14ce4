"""The `sms-bot` command line, run as an operator would: settings, schema, grants, audit, resolve."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.store.engine import utcnow
from bot.store.models import ALL_SENDER_CODES, SendRequest
from tests.fakes import FakeSlack, FakeWhatCounts
from tests.harness import CODE, Database, SlackDriver, bot_env, run_cli


@pytest.fixture
def blank_db(database_url: str, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> dict[str, str]:
    """Environment for a database that has not been migrated yet."""
    return bot_env(database_url, fake_slack, fake_whatcounts)


def test_missing_and_malformed_settings_are_listed_with_where_they_come_from(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WHATCOUNTS_URL": "mail.example.com", "WHATCOUNTS_TIMEOUT": "soon",
           "SLACK_BOT_TOKEN": "xoxp-user-token", "POLICY_CACHE_SECONDS": "-1"}
    result = run_cli("serve", "--http", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for expected in ("SLACK_BOT_TOKEN must start with 'xoxb-'", "OAuth & Permissions",
                     "SLACK_SIGNING_SECRET is not set", "Signing Secret",
                     "WHATCOUNTS_URL must be an http(s) URL", "WHATCOUNTS_REALM is not set",
                     "WHATCOUNTS_PASSWORD is not set", "WhatCounts: Settings > API",
                     "WHATCOUNTS_TIMEOUT must be a positive number of seconds up to 300 (5 minutes), got 'soon'",
                     "POLICY_CACHE_SECONDS must be a number of seconds from 0 up to 3600 (an hour), got '-1'"):
        assert expected in result.stderr, expected
    assert "xoxp-user-token" not in result.stderr


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLACK_SIGNING_SECRET=from-dotenv\nWHATCOUNTS_REALM=from-dotenv\n")
    result = run_cli("serve", "--http", env={"PATH": "/usr/bin:/bin", "WHATCOUNTS_REALM": ""}, cwd=tmp_path)
    assert "SLACK_SIGNING_SECRET is not set" not in result.stderr
    assert "WHATCOUNTS_REALM is not set" in result.stderr


def test_serve_refuses_a_database_without_the_schema(blank_db: dict[str, str], tmp_path: Path) -> None:
    result = run_cli("serve", "--http", env=blank_db, cwd=tmp_path)
    assert result.returncode == 2 and "run `sms-bot db upgrade`" in result.stderr


def test_serve_needs_socket_mode_token_or_http(blank_db: dict[str, str], tmp_path: Path) -> None:
    assert run_cli("db", "upgrade", env=blank_db, cwd=tmp_path).returncode == 0
    result = run_cli("serve", env=blank_db, cwd=tmp_path)
    assert result.returncode == 2 and "SLACK_APP_TOKEN" in result.stderr and "--http" in result.stderr


def test_serve_names_a_token_slack_refuses(blank_db: dict[str, str], tmp_path: Path,
                                           fake_slack: FakeSlack) -> None:
    assert run_cli("db", "upgrade", env=blank_db, cwd=tmp_path).returncode == 0
    fake_slack.fail("auth.test", "invalid_auth")
    result = run_cli("serve", "--http", env=blank_db, cwd=tmp_path)
    assert result.returncode == 2 and "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in result.stderr


def test_grant_revoke_and_list(blank_db: dict[str, str], tmp_path: Path) -> None:
    env = blank_db
    assert "database is at revision" in run_cli("db", "upgrade", env=env, cwd=tmp_path).stdout
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0  # idempotent
    granted = run_cli("grant", "U01", "approver", "--sender-code", "+1 (555) 123-4567", env=env, cwd=tmp_path)
    assert granted.stdout.strip() == "U01: approver for sender code 15551234567 granted"
    again = run_cli("grant", "U01", "approver", "--sender-code", "15551234567", env=env, cwd=tmp_path)
    assert "already held" in again.stdout
    assert "every sender code granted" in run_cli("grant", "U02", "admin", "--sender-code", "*", env=env,
                                                  cwd=tmp_path).stdout
    listing = run_cli("grants", env=env, cwd=tmp_path).stdout.splitlines()
    assert [line.split("\t")[:3] for line in listing] == [["USER", "ROLE", "SENDER CODE"],
                                                        ["U01", "approver", "15551234567"],
                                                        ["U02", "admin", "every sender code"]]
    assert "revoked" in run_cli("revoke", "U01", "approver", "--sender-code", "15551234567", env=env,
                                cwd=tmp_path).stdout
    bad = run_cli("grant", "U01", "approver", "--sender-code", "12", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "is not a sender code" in bad.stderr
    assert run_cli("grant", "U01", "owner", "--sender-code", "*", env=env, cwd=tmp_path).returncode == 2


def test_audit_export_with_filters(db: Database, slack: SlackDriver, env: dict[str, str], tmp_path: Path) -> None:
    db.allow_sends("UREQ", "UAPP")
    request_id = slack.request("UREQ")
    slack.click("UAPP", "approve", request_id)
    slack.wait_outcome("4711")

    rows = list(csv.DictReader(io.StringIO(run_cli("audit", "--format", "csv", env=env, cwd=tmp_path).stdout)))
    assert [r["event"] for r in rows] == ["grant", "grant", "requested", "approved", "sending", "sent"]
    lines = run_cli("audit", "--format", "jsonl", "--user", "UAPP", env=env, cwd=tmp_path).stdout.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["approved", "sending"]
    by_code = run_cli("audit", "--format", "jsonl", "--sender-code", CODE, "--request", request_id,
                      env=env, cwd=tmp_path).stdout.splitlines()
    assert json.loads(by_code[-1])["details"]["whatcounts_id"] == "4711"
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert run_cli("audit", "--since", tomorrow, env=env, cwd=tmp_path).stdout == ""
    assert len(run_cli("audit", "--until", tomorrow, env=env, cwd=tmp_path).stdout.splitlines()) == 1 + 6  # header
    assert run_cli("audit", "--since", "yesterday", env=env, cwd=tmp_path).returncode == 2


def test_an_admin_records_what_support_said_about_an_unknown_outcome(
        db: Database, slack: SlackDriver, env: dict[str, str], tmp_path: Path) -> None:
    db.allow_sends("UREQ", "UAPP")
    db.grant("UADMIN", "admin", ALL_SENDER_CODES)
    request_id = slack.request("UREQ")
    not_unknown = run_cli("resolve", request_id, "sent", "--admin", "UADMIN", "--note", "x", env=env, cwd=tmp_path)
    assert not_unknown.returncode == 2 and "is pending, not unknown" in not_unknown.stderr
    with db.sessions.begin() as session:
        session.execute(update(SendRequest).values(state="unknown"))
    refused = run_cli("resolve", request_id, "sent", "--admin", "UAPP", "--note", "x", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "no admin grant" in refused.stderr
    done = run_cli("resolve", request_id, "not-sent", "--admin", "UADMIN", "--note", "Ticket 881: never queued",
                   env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = slack.wait_outcome("Ticket 881: never queued")
    assert "Recorded as not sent: Ticket 881: never queued (recorded by <@UADMIN>)" in outcome["text"]
    assert db.request(request_id).state == "failed"
    assert db.events(request_id)[-1] == "resolved"


def test_audit_for_every_code_shows_only_the_events_about_every_code(
        db: Database, env: dict[str, str], tmp_path: Path) -> None:
    db.grant("UADMIN", "admin", ALL_SENDER_CODES)
    db.grant("UREQ", "requester", CODE)
    db.grant("UAPP", "approver", ALL_SENDER_CODES)
    db.grant("UAPP", "approver", "5559876543")

    def exported(*scope: str) -> list[tuple[str, str]]:
        result = run_cli("audit", "--format", "jsonl", *scope, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return [(row["details"]["user_id"], row["sender_code"])
                for row in map(json.loads, result.stdout.splitlines())]

    assert exported("--sender-code", "*") == [("UADMIN", "*"), ("UAPP", "*")]
    assert exported("--sender-code", "555-987-6543") == [("UAPP", "5559876543")]
    assert len(exported()) == 4
