"""`sms-bot`: serve, db upgrade, grant/revoke/grants, audit, resolve."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from bot.ops.config import ConfigError, Settings, load_dotenv_file, load_settings
from bot.rules import admin, grants
from bot.store import audit, schema
from bot.store.engine import make_engine, make_session_factory
from bot.store.models import ALL_SENDER_CODES, Role
from bot.text import plain


class Stop(Exception):
    """A clear message for the operator and exit status 2; never a traceback."""


def _engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def _database() -> Engine:
    """The engine for a command that only needs the database, its schema checked to be current."""
    engine = _engine(load_settings(slack=False, whatcounts=False))
    _check_schema(engine)
    return engine


def _check_schema(engine: Engine) -> None:
    status = schema.schema_status(engine)
    if not status.reachable:
        raise Stop(f"Cannot reach the database ({status.failure}): check DATABASE_URL.")
    if not status.up_to_date:
        raise Stop(f"The database schema is at {status.current or 'nothing'}, the bot needs {status.head}: "
                   "run `sms-bot db upgrade` first.")


def _check_slack_token(settings: Settings) -> None:
    from bot.slack.client import TokenRefused, Unreachable, token_status

    match token_status(settings):
        case TokenRefused(error=error):
            raise Stop(f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth "
                       "Token from your Slack app's OAuth & Permissions page.")
        case Unreachable(cause=cause):
            raise Stop(f"Cannot reach Slack at {settings.slack_api_url} ({cause}).")


def cmd_serve(args: argparse.Namespace) -> None:
    from bot.ops import logs
    from bot.slack import server

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


def cmd_check(_args: argparse.Namespace) -> None:
    import os

    from bot.ops.checks import run_checks
    from bot.slack.client import check_slack

    results = run_checks(os.environ, check_slack)
    for result in results:
        print(result.line())
    if failed := [r.name for r in results if not r.ok]:
        raise Stop(f"{len(failed)} check(s) failed: {', '.join(failed)}")


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    settings = load_settings(slack=False, whatcounts=False)
    try:
        schema.upgrade(settings.database_url)
    except OperationalError as exc:
        raise Stop(f"Cannot reach the database ({exc.orig.__class__.__name__}): check DATABASE_URL.") from exc
    print(f"database is at revision {schema.head_revision()}")


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def _user_id(raw: str) -> str:
    """A Slack user ID, checked as Slack's admin command checks it, before anything is opened or changed."""
    if not admin.is_user_id(raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a Slack user ID: give their member ID (their Slack profile, ⋮, Copy member ID), "
            "e.g. U012ABCDEF. Nothing was changed.")
    return raw


def cmd_grant(args: argparse.Namespace, *, add: bool = True) -> None:
    if args.sender_code is None:
        raise Stop(f"say which sender code: --sender-code CODE, or --sender-code '*' to {args.command} it for every "
                   "sender code. Nothing was changed.")
    engine = _database()
    code = admin.parse_scope(args.sender_code)
    change = grants.grant if add else grants.revoke
    with make_session_factory(engine).begin() as session:
        changed = change(session, args.user_id, Role(args.role), code, _operator())
    print(plain(admin.grant_result(args.user_id, args.role, code, add, changed)))


def cmd_grants(_args: argparse.Namespace) -> None:
    engine = _database()
    with make_session_factory(engine)() as session:
        rows = grants.list_grants(session)
    _print_table(GRANTS_HEADER, [
        (row.user_id, row.role, "every sender code" if row.sender_code == ALL_SENDER_CODES else row.sender_code,
         row.granted_by, f"{row.granted_at:%Y-%m-%d %H:%M} UTC") for row in rows],
        empty="no grants yet: `sms-bot grant USER_ID requester|approver|admin --sender-code CODE|'*'`")


GRANTS_HEADER = ("USER", "ROLE", "SENDER CODE", "GRANTED BY", "GRANTED AT")


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> None:
    """Tab-separated rows under a header line, or `empty` (what to type to add one) when there are none."""
    if not rows:
        print(empty)
        return
    for row in (header, *rows):
        print("\t".join(row))


def _version() -> str:
    try:
        return version("sms-send-bot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _time(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date or time like 2026-11-24 or 2026-11-24T09:30") from exc


def _audit_scope(raw: str | None) -> str | None:
    """`--sender-code`: a code's events, `*` the events about every code (grants for all of them); None: all."""
    if raw is None:
        return None
    return ALL_SENDER_CODES if raw.strip() == ALL_SENDER_CODES else admin.parse_scope(raw)


def cmd_audit(args: argparse.Namespace) -> None:
    engine = _database()
    where = audit.AuditFilter(since=args.since, until=args.until, user_id=args.user,
                              sender_code=_audit_scope(args.sender_code), request_id=args.request)
    render = {"table": audit.to_table, "csv": audit.to_csv, "jsonl": audit.to_jsonl}[args.format]
    with make_session_factory(engine)() as session:
        for chunk in render(audit.query(session, where)):
            sys.stdout.write(chunk)


def cmd_resolve(args: argparse.Namespace) -> None:
    from bot.requests.lifecycle import Lifecycle, Refused

    engine = _database()
    lifecycle = Lifecycle(make_session_factory(engine), whatcounts=None)
    result = lifecycle.resolve(args.request_id, args.admin, args.outcome == "sent", args.note)
    if isinstance(result, Refused):
        raise Stop(result.reason)
    print(f"request {args.request_id} recorded as {args.outcome}; the bot posts it in the channel at its next sweep")


# --- sender codes and policy as code ----------------------------------------------------

def cmd_sender_code_set(args: argparse.Namespace) -> None:
    engine = _database()
    with make_session_factory(engine).begin() as session:
        lines = admin.apply_sender_code_options(session, args, _operator())
    print("\n".join(lines))


def cmd_sender_code_list(_args: argparse.Namespace) -> None:
    engine = _database()
    with make_session_factory(engine)() as session:
        lines = admin.sender_code_lines(session)
    print("\n".join(lines) if lines else
          "no sender codes registered yet: `sms-bot sender-code set CODE --label ... --approvals N`")


def cmd_policy_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bot.rules.policy_file import export_policy

    engine = _database()
    with make_session_factory(engine)() as session:
        text = export_policy(session)
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        return
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise Stop(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(f"policy written to {args.output}")


def cmd_policy_import(args: argparse.Namespace) -> None:
    from pathlib import Path

    from bot.rules.policy_file import PolicyError, import_policy

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Stop(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from exc
    engine = _database()
    sessions = make_session_factory(engine)
    try:
        if args.dry_run:
            with sessions() as session:
                summary = import_policy(session, text, _operator())
                session.rollback()
        else:
            with sessions.begin() as session:
                summary = import_policy(session, text, _operator())
    except PolicyError as exc:
        raise Stop(str(exc)) from exc
    for line in summary.lines():
        print(f"dry run, not applied: {line}" if args.dry_run and summary.changed else line)


def cmd_test_phone_set(args: argparse.Namespace) -> None:
    from bot.rules import test_phones

    try:
        phone = test_phones.parse_phone(args.phone)
    except test_phones.PhoneError as exc:
        raise Stop(f"{exc} Nothing was changed.") from exc
    engine = _database()
    with make_session_factory(engine).begin() as session:
        changed = test_phones.set_test_phone(session, args.user_id, phone, _operator())
    print(f"{args.user_id}: test phone {phone} {'registered' if changed else 'already registered'}")


def cmd_test_phone_remove(args: argparse.Namespace) -> None:
    from bot.rules import test_phones

    engine = _database()
    with make_session_factory(engine).begin() as session:
        changed = test_phones.remove_test_phone(session, args.user_id, _operator())
    print(f"{args.user_id}: {'test phone removed' if changed else 'had no test phone'}")


def cmd_test_phone_list(_args: argparse.Namespace) -> None:
    from bot.rules import test_phones

    engine = _database()
    with make_session_factory(engine)() as session:
        rows = test_phones.list_test_phones(session)
    _print_table(("USER", "PHONE", "SET BY", "SET AT"),
                 [(row.user_id, row.phone, row.set_by, f"{row.set_at:%Y-%m-%d %H:%M} UTC") for row in rows],
                 empty="no test phones yet: `sms-bot test-phone set USER_ID +15551234567`")


def _add_test_phone_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    phones = sub.add_parser("test-phone", help="each person's own phone for test sends (the operator's; audited)"
                            ).add_subparsers(dest="test_phone_command", required=True)
    put = phones.add_parser("set", help="register or replace someone's test phone")
    put.add_argument("user_id", type=_user_id, help="Slack user ID, e.g. U012ABCDEF")
    put.add_argument("phone", help="E.164, e.g. +15551234567")
    put.set_defaults(run=cmd_test_phone_set)
    gone = phones.add_parser("remove", help="forget someone's test phone")
    gone.add_argument("user_id", type=_user_id, help="Slack user ID, e.g. U012ABCDEF")
    gone.set_defaults(run=cmd_test_phone_remove)
    phones.add_parser("list", help="list the test phones, in full").set_defaults(run=cmd_test_phone_list)


def _add_policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    codes = sub.add_parser("sender-code", help="register sender codes and their sending policy"
                           ).add_subparsers(dest="sender_code_command", required=True)
    put = codes.add_parser("set", help="add a sender code or change the options given (`none` clears one)")
    admin.add_sender_code_options(put)
    put.set_defaults(run=cmd_sender_code_set)
    codes.add_parser("list", help="list registered sender codes").set_defaults(run=cmd_sender_code_list)

    pol = sub.add_parser("policy", help="sender codes and grants as one YAML file"
                         ).add_subparsers(dest="policy_command", required=True)
    exp = pol.add_parser("export", help="write the current policy as YAML")
    exp.add_argument("--output", help="file to write (default: standard output)")
    exp.set_defaults(run=cmd_policy_export)
    imp = pol.add_parser("import", help="make the policy exactly this file (what is not in it is removed)")
    imp.add_argument("file", help="the YAML file, or - for standard input")
    imp.add_argument("--dry-run", action="store_true", help="check the file and show the changes; change nothing")
    imp.set_defaults(run=cmd_policy_import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-bot", description="Send WhatCounts SMS campaigns from Slack.")
    parser.add_argument("--version", action="version", version=f"sms-bot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bot (Socket Mode, or HTTP with --http)")
    serve.add_argument("--http", action="store_true", help="take Slack's requests on POST /slack/events")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--workers", type=int, default=2, help="worker processes (HTTP mode)")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker (HTTP mode)")
    serve.set_defaults(run=cmd_serve)

    sub.add_parser("check", help="check configuration, database, Slack and WhatCounts; non-zero exit on failure"
                   ).set_defaults(run=cmd_check)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply every migration").set_defaults(run=cmd_db_upgrade)

    roles = [r.value for r in Role]
    for name, add in (("grant", True), ("revoke", False)):
        p = sub.add_parser(name, help=f"{name} a role")
        p.add_argument("user_id", type=_user_id, help="Slack user ID, e.g. U012ABCDEF")
        p.add_argument("role", choices=roles)
        p.add_argument("--sender-code", help="the sender code; '*' (quoted) for every sender code. Required")
        p.set_defaults(run=lambda a, add=add: cmd_grant(a, add=add))
    sub.add_parser("grants", help="list grants").set_defaults(run=cmd_grants)

    aud = sub.add_parser("audit", help="show or export the audit trail")
    aud.add_argument("--since", type=_time, help="from this UTC time (inclusive)")
    aud.add_argument("--until", type=_time, help="up to this UTC time (exclusive)")
    aud.add_argument("--user", type=_user_id, help="only events by this Slack user ID")
    aud.add_argument("--sender-code", help="only events about this sender code; * for those about every code "
                     "(grants for all codes)")
    aud.add_argument("--request", help="only events of this request id")
    aud.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    aud.set_defaults(run=cmd_audit)

    res = sub.add_parser("resolve", help="record what WhatCounts support said about an unknown outcome")
    res.add_argument("request_id")
    res.add_argument("outcome", choices=("sent", "not-sent"))
    res.add_argument("--admin", required=True, type=_user_id, help="your Slack user ID (must hold the admin role)")
    res.add_argument("--note", required=True, help="what WhatCounts support said")
    res.set_defaults(run=cmd_resolve)
    _add_policy_commands(sub)
    _add_test_phone_commands(sub)
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
    except (Stop, admin.AdminError) as exc:
        print(f"sms-bot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
