"""Settings from the environment (and a `.env` file), checked once at start.

Every problem is collected, so one start names all of them, each with where its value
comes from. Secrets are kept out of `repr()` so a settings object can never leak into a log.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dotenv import find_dotenv, load_dotenv
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.problems import Problems
from bot.store.engine import normalize_url

DEFAULT_DATABASE_URL = "sqlite:///sms-bot.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"

SLACK_APP = "your Slack app's settings page"
WHATCOUNTS_API = "WhatCounts: Settings > API"
LOG_FORMATS = ("text", "json")
FLAG_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class ConfigError(Problems):
    """Raised with every configuration problem found, one per line."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_app_token: str = field(default="", repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    whatcounts_url: str = ""
    whatcounts_realm: str = ""
    whatcounts_password: str = field(default="", repr=False)
    whatcounts_timeout: float = 30.0
    whatcounts_dry_run: bool = False  # WHATCOUNTS_DRY_RUN: everything but the POST
    request_ttl_minutes: float = 60.0
    sweep_interval_seconds: float = 30.0
    send_at_max_days: float = 7.0  # how far ahead "Send at" may be
    send_at_grace_minutes: float = 15.0  # how late a scheduled send may still go out (the bot was down)
    reminder_at_fraction: float = 0.5  # of the time to live, when the one reminder goes out; 0: none
    policy_cache_seconds: float = 1.0  # how old the request form's grants and sender codes may be
    test_sends_per_request: int = 3  # a person's test sends to their own phone per request; 0: none
    test_sends_per_day: int = 10  # a person's test sends in any 24 hours
    log_format: str = "text"  # text | json (LOG_FORMAT)


def load_dotenv_file() -> None:
    """Load `.env` from the working directory (or a parent); real environment wins."""
    load_dotenv(find_dotenv(usecwd=True), override=False)


def _number(env: Mapping[str, str], name: str, default: float, problems: list[str],
            zero: bool = False) -> float:
    """A finite number of `_UNITS[name]` above 0 (or 0 too, with `zero`) up to `_MOST[name]`; `default` if unset.

    `nan`, `inf` and huge values parse as floats but break timers and date arithmetic at run time.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    most, unit = _MOST[name], _UNITS[name]
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero) or value > most:
        kind = f"a number of {unit} from 0" if zero else f"a positive number of {unit}"
        problems.append(f"{name} must be {kind} up to {most:g} ({_MOST_IN_WORDS[name]}), got {raw!r}.")
        return default
    return value


_UNITS = {
    "SEND_AT_MAX_DAYS": "days",
    "SEND_AT_GRACE_MINUTES": "minutes",
    "WHATCOUNTS_TIMEOUT": "seconds",
    "REQUEST_TTL_MINUTES": "minutes",
    "SWEEP_INTERVAL_SECONDS": "seconds",
    "POLICY_CACHE_SECONDS": "seconds",
}
_MOST = {
    "SEND_AT_MAX_DAYS": 90.0,
    "SEND_AT_GRACE_MINUTES": 1440.0,
    "WHATCOUNTS_TIMEOUT": 300.0,
    "REQUEST_TTL_MINUTES": 43200.0,
    "SWEEP_INTERVAL_SECONDS": 3600.0,
    "POLICY_CACHE_SECONDS": 3600.0,
}
_MOST_IN_WORDS = {
    "SEND_AT_MAX_DAYS": "90 days",
    "SEND_AT_GRACE_MINUTES": "a day",
    "WHATCOUNTS_TIMEOUT": "5 minutes",
    "REQUEST_TTL_MINUTES": "30 days",
    "SWEEP_INTERVAL_SECONDS": "an hour",
    "POLICY_CACHE_SECONDS": "an hour",
}
def _reminder_at_fraction(raw: str, problems: list[str]) -> float:
    """REMINDER_AT_FRACTION: a fraction of the time to live from 0 (or `off`: no reminder) to below 1."""
    raw = raw.strip().lower()
    if not raw:
        return 0.5
    if raw == "off":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 <= value < 1):  # nan fails too
        problems.append("REMINDER_AT_FRACTION must be a fraction of the request's time to live from 0 to below 1 "
                        f"(0.5: halfway; 0 or off: no reminder), got {raw!r}.")
        return 0.5
    return value


def _count(env: Mapping[str, str], name: str, default: int, most: int, meaning: str, problems: list[str]) -> int:
    """A whole number from 0 to `most`; `default` if unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > most:
        problems.append(f"{name} must be a whole number from 0 to {most} ({meaning}), got {raw!r}.")
        return default
    return int(raw)


DATABASE_URL_EXAMPLES = "sqlite:///sms-bot.db or postgresql://user:password@host:5432/dbname"


def _database_url(raw: str, problems: list[str]) -> str:
    """SQLite or PostgreSQL (psycopg), the two databases the bot is built and tested for.

    Only the kind of database is named in a problem: a URL may hold a password.
    """
    try:
        url = make_url(normalize_url(raw))
    except ArgumentError:
        problems.append(f"DATABASE_URL is not a database URL; use one like {DATABASE_URL_EXAMPLES}.")
        return DEFAULT_DATABASE_URL
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        problems.append(f"DATABASE_URL names a database the bot does not support ({url.drivername}); "
                        f"use one like {DATABASE_URL_EXAMPLES}.")
        return DEFAULT_DATABASE_URL
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        problems.append("DATABASE_URL names an in-memory SQLite database, which every connection sees empty; "
                        "name a file, e.g. sqlite:///sms-bot.db.")
    return raw


def _http_url(raw: str) -> bool:
    parts = urlsplit(raw)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def load_settings(env: Mapping[str, str] | None = None, *, slack: bool = True, whatcounts: bool = True) -> Settings:
    """Read settings; `slack`/`whatcounts` say whether this command needs those parts."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def required(name: str, origin: str, prefix: str = "") -> str:
        value = env.get(name, "").strip()
        if not value:
            problems.append(f"{name} is not set (from {origin}).")
        elif prefix and not value.startswith(prefix):
            problems.append(f"{name} must start with {prefix!r} (from {origin}).")
        return value

    values: dict[str, Any] = {
        "database_url": _database_url(env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL, problems),
        "request_ttl_minutes": _number(env, "REQUEST_TTL_MINUTES", 60.0, problems),
        "sweep_interval_seconds": _number(env, "SWEEP_INTERVAL_SECONDS", 30.0, problems),
        "policy_cache_seconds": _number(env, "POLICY_CACHE_SECONDS", 1.0, problems, zero=True),
        "send_at_max_days": _number(env, "SEND_AT_MAX_DAYS", 7.0, problems),
        "send_at_grace_minutes": _number(env, "SEND_AT_GRACE_MINUTES", 15.0, problems),
    }
    values["reminder_at_fraction"] = _reminder_at_fraction(env.get("REMINDER_AT_FRACTION", ""), problems)
    values["test_sends_per_request"] = _count(env, "TEST_SENDS_PER_REQUEST", 3, 20,
                                              "test sends per person and request; 0 turns them off", problems)
    values["test_sends_per_day"] = _count(env, "TEST_SENDS_PER_DAY", 10, 100,
                                          "test sends per person in any 24 hours", problems)
    log_format = env.get("LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        problems.append(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {env.get('LOG_FORMAT')!r}.")
        log_format = "text"
    values["log_format"] = log_format
    if slack:
        values["slack_bot_token"] = required("SLACK_BOT_TOKEN",
                                             f"{SLACK_APP}, OAuth & Permissions: Bot User OAuth Token", "xoxb-")
        values["slack_signing_secret"] = required("SLACK_SIGNING_SECRET",
                                                  f"{SLACK_APP}, Basic Information: Signing Secret")
        app_token = env.get("SLACK_APP_TOKEN", "").strip()
        if app_token and not app_token.startswith("xapp-"):
            problems.append(f"SLACK_APP_TOKEN must start with 'xapp-' "
                            f"(from {SLACK_APP}, Basic Information: App-Level Tokens).")
        values["slack_app_token"] = app_token
        api_url = env.get("SLACK_API_URL", "").strip() or DEFAULT_SLACK_API_URL
        if not _http_url(api_url):
            problems.append(f"SLACK_API_URL must be an http(s) URL such as {DEFAULT_SLACK_API_URL}, got {api_url!r}.")
        values["slack_api_url"] = api_url if api_url.endswith("/") else api_url + "/"
    if whatcounts:
        url = required("WHATCOUNTS_URL", f"{WHATCOUNTS_API}: your site, e.g. https://api.whatcounts.net")
        if url and not _http_url(url):
            problems.append(f"WHATCOUNTS_URL must be an http(s) URL such as https://api.whatcounts.net, got {url!r}.")
        values["whatcounts_url"] = url.rstrip("/")
        values["whatcounts_realm"] = required("WHATCOUNTS_REALM", f"{WHATCOUNTS_API}: realm name")
        values["whatcounts_password"] = required("WHATCOUNTS_PASSWORD", f"{WHATCOUNTS_API}: API password")
        values["whatcounts_timeout"] = _number(env, "WHATCOUNTS_TIMEOUT", 30.0, problems)
        dry_run = env.get("WHATCOUNTS_DRY_RUN", "").strip().lower()
        if dry_run not in ("", *FLAG_VALUES):
            problems.append(f"WHATCOUNTS_DRY_RUN must be 1 (dry run: nothing is sent) or 0, got {dry_run!r}.")
        values["whatcounts_dry_run"] = FLAG_VALUES.get(dry_run, False)
    if problems:
        raise ConfigError(problems)
    return Settings(**values)
