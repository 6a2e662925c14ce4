"""Settings that parse as numbers or strings but could never work are refused at start, all in one message."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.ops.config import ConfigError, load_settings
from tests.harness import BOT_TOKEN, SIGNING_SECRET, run_cli

GOOD = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "WHATCOUNTS_URL": "http://127.0.0.1:9", "WHATCOUNTS_REALM": "acme", "WHATCOUNTS_PASSWORD": "pw"}


def problems_with(**settings: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings({**GOOD, **settings})
    return raised.value.problems


@pytest.mark.parametrize(("name", "raw"), [
    ("WHATCOUNTS_TIMEOUT", "nan"), ("WHATCOUNTS_TIMEOUT", "inf"), ("WHATCOUNTS_TIMEOUT", "1e9"),
    ("REQUEST_TTL_MINUTES", "inf"), ("REQUEST_TTL_MINUTES", "1e12"), ("REQUEST_TTL_MINUTES", "-inf"),
    ("SWEEP_INTERVAL_SECONDS", "nan"), ("SWEEP_INTERVAL_SECONDS", "1e300"), ("POLICY_CACHE_SECONDS", "inf"),
])
def test_a_number_that_is_not_finite_or_is_absurdly_large_is_named(name: str, raw: str) -> None:
    [problem] = problems_with(**{name: raw})
    assert problem.startswith(f"{name} must be") and f"got {raw!r}" in problem and "up to" in problem


def test_the_largest_sensible_values_still_start() -> None:
    settings = load_settings({**GOOD, "WHATCOUNTS_TIMEOUT": "300", "REQUEST_TTL_MINUTES": "43200",
                              "POLICY_CACHE_SECONDS": "0"})
    assert (settings.whatcounts_timeout, settings.request_ttl_minutes) == (300.0, 43200.0)


@pytest.mark.parametrize("url", ["foo", "mysql://bot:hunter2@db/sms", "sqlite://", "oracle://bot:hunter2@db"])
def test_a_database_url_the_bot_cannot_use_is_named_without_its_password(url: str) -> None:
    [problem] = problems_with(DATABASE_URL=url)
    assert problem.startswith("DATABASE_URL") and "hunter2" not in problem


@pytest.mark.parametrize("url", ["sqlite:///sms-bot.db", "postgres://bot:pw@db:5432/sms",
                                 "postgresql+psycopg://bot@db/sms?sslmode=require",
                                 "postgresql:///sms"])
def test_the_database_urls_the_bot_supports_pass(url: str) -> None:
    assert load_settings({**GOOD, "DATABASE_URL": url}).database_url == url


BROKEN = {"WHATCOUNTS_TIMEOUT": "nan", "REQUEST_TTL_MINUTES": "1e12", "SWEEP_INTERVAL_SECONDS": "inf",
          "DATABASE_URL": "foo"}


def test_serve_names_every_setting_that_would_break_at_run_time_in_one_message(tmp_path: Path) -> None:
    result = run_cli("serve", "--http", env={**GOOD, **BROKEN}, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("sms-bot cannot start") == 1
    for name, raw in BROKEN.items():
        assert name in result.stderr and (name == "DATABASE_URL" or f"got {raw!r}" in result.stderr), name


def test_check_names_them_too_and_skips_the_database_it_cannot_name(tmp_path: Path) -> None:
    result = run_cli("check", env={**GOOD, **BROKEN}, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  configuration:") and all(name in lines[0] for name in BROKEN)
    assert lines[1].startswith("FAIL  database: skipped")


@pytest.mark.parametrize("raw", ["1", "1.5", "-0.1", "nan", "half", "inf"])
def test_a_reminder_fraction_outside_the_time_to_live_is_named(raw: str) -> None:
    [problem] = problems_with(REMINDER_AT_FRACTION=raw)
    assert problem.startswith("REMINDER_AT_FRACTION must be a fraction") and f"got {raw!r}" in problem


@pytest.mark.parametrize(("raw", "fraction"), [("", 0.5), ("0.8", 0.8), ("0", 0.0), ("off", 0.0), ("OFF", 0.0)])
def test_the_reminder_comes_halfway_unless_set_and_0_or_off_turns_it_off(raw: str, fraction: float) -> None:
    assert load_settings({**GOOD, "REMINDER_AT_FRACTION": raw}).reminder_at_fraction == fraction
