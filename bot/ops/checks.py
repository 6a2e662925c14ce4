"""`sms-bot check`: is this deployment ready? Configuration, database, Slack and WhatCounts, one line each.

Every check runs even when an earlier one failed, so one run names every problem. Nothing
is written anywhere: Slack gets `auth.test`, WhatCounts a read-only list of SMS messages.
The Slack check lives with the rest of Slack (`bot.slack.client`); the command line passes it in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from bot.ops.config import ConfigError, Settings, load_settings
from bot.store import schema
from bot.store.engine import make_engine
from bot.whatcounts.client import ACCEPT, basic_auth

CHECK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def check_config(env: Mapping[str, str]) -> Check:
    try:
        load_settings(env)
    except ConfigError as exc:
        return Check("configuration", False, " ".join(exc.problems))
    return Check("configuration", True, "every setting is present and well-formed")


def check_database(settings: Settings) -> Check:
    engine = make_engine(settings.database_url)
    try:
        status = schema.schema_status(engine)
    finally:
        engine.dispose()
    if not status.reachable:
        return Check("database", False, f"cannot reach it ({status.failure}): check DATABASE_URL")
    if not status.up_to_date:
        return Check("database", False, f"schema at {status.current or 'nothing'}, the bot needs {status.head}: "
                                        "run `sms-bot db upgrade`")
    return Check("database", True, f"reachable, schema at {status.head} (current)")


def check_whatcounts(settings: Settings, transport: httpx.BaseTransport | None = None) -> Check:
    url = f"{settings.whatcounts_url}/rest/sms"
    headers = {"Authorization": basic_auth(settings.whatcounts_realm, settings.whatcounts_password),
               "Accept": ACCEPT, "Content-Type": "application/json"}
    try:
        with httpx.Client(timeout=CHECK_TIMEOUT, transport=transport, follow_redirects=False) as client:
            response = client.get(url, params={"skip": 0}, headers=headers)
    except httpx.HTTPError as exc:
        return Check("whatcounts", False, f"cannot reach {settings.whatcounts_url} ({type(exc).__name__})")
    if response.status_code == 200:
        return Check("whatcounts", True, "credentials accepted (GET /rest/sms answered 200)")
    if response.status_code == 401:
        return Check("whatcounts", False, "credentials refused (401): check WHATCOUNTS_REALM and WHATCOUNTS_PASSWORD")
    return Check("whatcounts", False, f"GET /rest/sms answered HTTP {response.status_code}")


def _part(name: str, env: Mapping[str, str], slack: bool, whatcounts: bool,
          run: Callable[[Settings], Check]) -> Check:
    """Run one check with only the settings it needs, so a missing Slack token still lets the database be checked."""
    try:
        settings = load_settings(env, slack=slack, whatcounts=whatcounts)
    except ConfigError:
        return Check(name, False, "skipped: its settings are missing or invalid (see configuration)")
    return run(settings)


def run_checks(env: Mapping[str, str], check_slack: Callable[[Settings], Check]) -> list[Check]:
    return [
        check_config(env),
        _part("database", env, False, False, check_database),
        _part("slack", env, True, False, check_slack),
        _part("whatcounts", env, False, True, check_whatcounts),
    ]
