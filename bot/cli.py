"""`sms-bot`: serve, db upgrade, grant/revoke/grants, audit, resolve."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from bot import audit, migrate, permissions
from bot.config import ConfigError, Settings, load_dotenv_file, load_settings
from bot.db import make_engine, make_session_factory
from bot.fields import normalize_sender_code
from bot.models import ALL_SENDER_CODES, Role


class Stop(Exception):
    """A clear message for the operator and exit status 2; never a traceback."""


def _engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def _check_schema(engine: Engine) -> None:
    try:
        current = migrate.current_revision(engine)
    except OperationalError as exc:
        raise Stop(f"Cannot reach the database ({exc.orig.__class__.__name__}): check DATABASE_URL.") from exc
    head = migrate.head_revision()
    if current != head:
        raise Stop(f"The database schema is at {current or 'nothing'}, the bot needs {head}: "
                   "run `sms-bot db upgrade` first.")


def _check_slack_token(settings: Settings) -> None:
    from bot.slack.app import slack_client

    try:
        slack_client(settings).auth_test()
    except SlackApiError as exc:
        raise Stop(f"Slack refused SLACK_BOT_TOKEN ({exc.response.get('error')}): copy the Bot User OAuth "
                   "Token from your Slack app's OAuth & Permissions page.") from exc
    except (SlackClientError, OSError) as exc:
        raise Stop(f"Cannot reach Slack at {settings.slack_api_url} ({type(exc).__name__}).") from exc


def cmd_serve(args: argparse.Namespace) -> None:
    from bot import logs, server

    settings = load_settings()
    logs.configure(settings)
    _check_schema(_engine(settings))
    if not args.http and not settings.slack_app_token:
        raise Stop("Set SLACK_APP_TOKEN to run in Socket Mode, or pass --http to take Slack's requests over HTTP.")
    _check_slack_token(settings)
    if args.http:
        server.serve_http(settings, args.host, args.port, args.workers, args.threads)
    else:
        server.serve_socket_mode(settings)


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    settings = load_settings(slack=False, whatcounts=False)
    try:
        migrate.upgrade(settings.database_url)
    except OperationalError as exc:
        raise Stop(f"Cannot reach the database ({exc.orig.__class__.__name__}): check DATABASE_URL.") from exc
    print(f"database is at revision {migrate.head_revision()}")


def _sender_code(raw: str | None) -> str | None:
    if raw is None or raw == ALL_SENDER_CODES:
        return None
    code = normalize_sender_code(raw)
    if code is None:
        raise Stop(f"{raw!r} is not a sender code: a short code (5-6 digits) or a US phone number.")
    return code


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def cmd_grant(args: argparse.Namespace, *, add: bool = True) -> None:
    settings = load_settings(slack=False, whatcounts=False)
    engine = _engine(settings)
    _check_schema(engine)
    code = _sender_code(args.sender_code)
    change = permissions.grant if add else permissions.revoke
    with make_session_factory(engine).begin() as session:
        changed = change(session, args.user_id, Role(args.role), code, _operator())
    scope = f"sender code {code}" if code else "every sender code"
    verb = ("granted" if changed else "already held") if add else ("revoked" if changed else "was not held")
    print(f"{args.user_id}: {args.role} for {scope} {verb}")


def cmd_grants(_args: argparse.Namespace) -> None:
    settings = load_settings(slack=False, whatcounts=False)
    engine = _engine(settings)
    _check_schema(engine)
    with make_session_factory(engine)() as session:
        rows = permissions.list_grants(session)
    for row in rows:
        scope = "every sender code" if row.sender_code == ALL_SENDER_CODES else row.sender_code
        print(f"{row.user_id}\t{row.role}\t{scope}\t{row.granted_by}\t{row.granted_at:%Y-%m-%d %H:%M} UTC")
    if not rows:
        print("no grants yet: `sms-bot grant USER_ID requester|approver|admin [--sender-code CODE]`")


def _time(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date or time like 2026-11-24 or 2026-11-24T09:30") from exc


def cmd_audit(args: argparse.Namespace) -> None:
    settings = load_settings(slack=False, whatcounts=False)
    engine = _engine(settings)
    _check_schema(engine)
    where = audit.AuditFilter(since=args.since, until=args.until, user_id=args.user,
                              sender_code=_sender_code(args.sender_code), request_id=args.request)
    render = {"table": audit.to_table, "csv": audit.to_csv, "jsonl": audit.to_jsonl}[args.format]
    with make_session_factory(engine)() as session:
        for chunk in render(audit.query(session, where)):
            sys.stdout.write(chunk)


def cmd_resolve(args: argparse.Namespace) -> None:
    from bot.sends import Refused, SendService

    settings = load_settings(slack=False, whatcounts=False)
    engine = _engine(settings)
    _check_schema(engine)
    service = SendService(make_session_factory(engine), whatcounts=None)
    result = service.resolve(args.request_id, args.admin, args.outcome == "sent", args.note)
    if isinstance(result, Refused):
        raise Stop(result.reason)
    print(f"request {args.request_id} recorded as {args.outcome}; the bot posts it in the channel at its next sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-bot", description="Send WhatCounts SMS campaigns from Slack.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bot (Socket Mode, or HTTP with --http)")
    serve.add_argument("--http", action="store_true", help="take Slack's requests on POST /slack/events")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--workers", type=int, default=2, help="worker processes (HTTP mode)")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker (HTTP mode)")
    serve.set_defaults(run=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply every migration").set_defaults(run=cmd_db_upgrade)

    roles = [r.value for r in Role]
    for name, add in (("grant", True), ("revoke", False)):
        p = sub.add_parser(name, help=f"{name} a role")
        p.add_argument("user_id", help="Slack user ID, e.g. U012ABCDEF")
        p.add_argument("role", choices=roles)
        p.add_argument("--sender-code", help="only this sender code (default: every sender code)")
        p.set_defaults(run=lambda a, add=add: cmd_grant(a, add=add))
    sub.add_parser("grants", help="list grants").set_defaults(run=cmd_grants)

    aud = sub.add_parser("audit", help="show or export the audit trail")
    aud.add_argument("--since", type=_time, help="from this UTC time (inclusive)")
    aud.add_argument("--until", type=_time, help="up to this UTC time (exclusive)")
    aud.add_argument("--user", help="only events by this Slack user ID")
    aud.add_argument("--sender-code")
    aud.add_argument("--request", help="only events of this request id")
    aud.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    aud.set_defaults(run=cmd_audit)

    res = sub.add_parser("resolve", help="record what WhatCounts support said about an unknown outcome")
    res.add_argument("request_id")
    res.add_argument("outcome", choices=("sent", "not-sent"))
    res.add_argument("--admin", required=True, help="your Slack user ID (must hold the admin role)")
    res.add_argument("--note", required=True, help="what WhatCounts support said")
    res.set_defaults(run=cmd_resolve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv_file()
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except ConfigError as exc:
        print("sms-bot cannot start; fix these settings (environment or .env):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except Stop as exc:
        print(f"sms-bot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
