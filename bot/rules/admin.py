"""Administering grants and sender codes with words, as `/sms-send admin ...` does: no Slack here.

`run_admin_command` checks who may do what, runs one command in one transaction and
returns the reply as data (`bot.text`: users, commands to type, listings), which Slack
renders in mrkdwn and a terminal as plain text. The `sender-code set`
options and their translation into `sender_codes.set_sender_code` live here and serve the
command line (`sms-bot sender-code set`) too.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.rules import grants, sender_codes, test_phones
from bot.rules.sender_codes import normalize_sender_code
from bot.store import audit
from bot.store.models import ALL_SENDER_CODES, Grant, Role
from bot.text import (
    Line,
    Listing,
    Literal,
    Reply,
    Title,
    User,
    joined,
    line,
    listing,
    reply,
)

USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")
CLEAR = "none"  # the option value that clears a clearable field
CLEARABLE_OPTIONS = tuple(sorted(sender_codes.CLEARABLE))  # the options `none` clears
HELP_WORDS = frozenset({"help", "-h", "--help", "?"})


class AdminError(Exception):
    """A clear message for the person; raised inside the transaction, so nothing is changed."""

    def __init__(self, message: Reply | str) -> None:
        self.reply = message if isinstance(message, Reply) else reply(message)
        super().__init__(str(self.reply))


class AdminRefused(AdminError):
    """Not a typing mistake but an attempt the person may not make: kept in the audit trail as "refused"."""

    def __init__(self, message: Reply | str, reason: str, sender_code: str | None) -> None:
        super().__init__(message)
        self.reason = reason  # a short plain sentence for the audit trail
        self.sender_code = sender_code  # the code it concerned; `*` every code, None not known


class Parser(argparse.ArgumentParser):
    """argparse that raises AdminError with the usage instead of printing and exiting; no -h."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("formatter_class", partial(argparse.HelpFormatter, width=10_000))  # usage on one line
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise AdminError(reply(f"{message}. Nothing was changed.", listing([self.format_usage().strip()])))


# --- shared with the command line ------------------------------------------------------

def _whole_number(raw: str, meaning: str = "a whole number") -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not {meaning}") from None


def _cap(raw: str) -> int | str:
    return CLEAR if raw.strip().lower() == CLEAR else _whole_number(raw, "a whole number of sends per day, or none")


def _approvals_or_none(raw: str) -> int | str:
    return CLEAR if raw.strip().lower() == CLEAR else _whole_number(raw, "a whole number of approvals, or none")


def _clearable(raw: str) -> str:
    return CLEAR if raw.strip().lower() == CLEAR else raw


def add_sender_code_options(parser: argparse.ArgumentParser) -> None:
    """The arguments of `sender-code set`: the code and the options to change (`none` clears one)."""
    parser.add_argument("code", metavar="CODE", help="short code or US phone number, e.g. 5551234567")
    parser.add_argument("--label", metavar="L", help="a name people recognise, e.g. 'Marketing US'")
    parser.add_argument("--groups", metavar="G1,G2",
                        help="comma-separated SMS group names that may be chosen ('' for none)")
    parser.add_argument("--approvals", metavar="N", type=_whole_number, help="approvals a send needs (at least 1)")
    parser.add_argument("--approvals-all-contacts", metavar="N|none", type=_approvals_or_none,
                        help="approvals a send to All contacts needs (at least --approvals), or none for the same")
    parser.add_argument("--approvers-group", metavar="S…|none", type=_clearable,
                        help="Slack user group ID the card asks to approve, or none to name the approvers")
    parser.add_argument("--daily-cap", metavar="N|none", type=_cap, help="most sends per local day, or none")
    parser.add_argument("--quiet-hours", metavar="HH:MM-HH:MM|none", type=_clearable,
                        help="local time when nothing is sent, or none")
    parser.add_argument("--timezone", metavar="TZ|none", type=_clearable,
                        help="IANA time zone of the quiet hours and the day, e.g. America/New_York, or none")
    parser.add_argument("--channels", metavar="C1,C2",
                        help="comma-separated Slack channel IDs it may be requested in ('' for any)")
    parser.add_argument("--self-approval", choices=("yes", "no"), type=str.lower,
                        help="may the requester approve their own send")


def _comma_list(raw: str | None) -> list[str] | None:
    return None if raw is None else [part.strip() for part in raw.split(",") if part.strip()]


def apply_sender_code_options(session: Session, args: argparse.Namespace, by: str) -> list[str]:
    """Apply parsed `sender-code set` arguments: what changed, then the code's rules now.

    Raises AdminError listing every problem; the caller's transaction then changes nothing.
    """
    clear = [name for name in CLEARABLE_OPTIONS if getattr(args, name) == CLEAR]
    given = {name: None if getattr(args, name) == CLEAR else getattr(args, name) for name in CLEARABLE_OPTIONS}
    try:
        change = sender_codes.set_sender_code(
            session, args.code, by, label=args.label, groups=_comma_list(args.groups), approvals=args.approvals,
            channels=_comma_list(args.channels), clear=clear,
            self_approval=None if args.self_approval is None else args.self_approval == "yes", **given)
    except sender_codes.SenderCodeError as exc:
        raise AdminError(reply(f"sender code {args.code} was not changed:",
                               *(f"  - {problem}" for problem in exc.problems))) from exc
    current = sender_codes.get_rules(session, change.code)
    assert current is not None
    return [_change_line(change), *current.describe()]


def _change_line(change: sender_codes.Change) -> str:
    if change.before is None:
        return f"sender code {change.code} added"
    if not change.changed:
        return f"sender code {change.code} unchanged"
    assert change.after is not None
    diffs = [f"{key} {change.before[key]!r} -> {change.after[key]!r}"
             for key in change.after if change.before[key] != change.after[key]]
    return f"sender code {change.code} updated: {'; '.join(diffs)}"


def sender_code_lines(session: Session) -> list[str]:
    """Every registered sender code, described in three lines each."""
    return [line for row in sender_codes.list_sender_codes(session)
            for line in sender_codes.SenderCodeRules.from_row(row).describe()]


def parse_scope(raw: str | None) -> str:
    """A typed grant scope: a sender code, normalized, or ALL_SENDER_CODES (omitted or `*`). AdminError if neither."""
    if raw is None or raw == ALL_SENDER_CODES:
        return ALL_SENDER_CODES
    code = normalize_sender_code(raw)
    if code is None:
        raise AdminError(f"{raw!r} is not a sender code: a short code (5-6 digits) or a US phone number. "
                         "Nothing was changed.")
    return code


def grant_result(user_id: str, role: str, scope: str, add: bool, changed: bool) -> Line:
    """One line saying what a grant or revoke did."""
    verb = ("granted" if changed else "already held") if add else ("revoked" if changed else "was not held")
    return line(User(user_id), f": {role} for {grants.scope_name(scope)} {verb}")


# --- the chat surface -------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """One admin command's transaction and who runs it."""

    session: Session
    actor: str
    codes: frozenset[str]  # the scopes of the actor's admin grants

    def require(self, scope: str, what: str) -> None:
        """Refuse unless the actor administers `scope` (a sender code, or ALL_SENDER_CODES)."""
        if grants.covers(self.codes, scope):
            return
        mine = ", ".join(sorted(self.codes))
        admins = joined(User(a) for a in _global_admins(self.session)) or ("the operator",)
        raise AdminRefused(reply(line(f"You administer sender code(s) {mine} only; {what} for "
                                      f"{grants.scope_name(scope)} needs an admin grant for it. Ask ", *admins,
                                      ". Nothing was changed.")),
                           f"{what} needs an admin of {grants.scope_name(scope)}", scope)

    def others_who_administer(self, scope: str) -> list[str]:
        """Admins of `scope` (a sender code, or ALL_SENDER_CODES), the actor left out: whom to ask instead."""
        scopes = (ALL_SENDER_CODES,) if scope == ALL_SENDER_CODES else (scope, ALL_SENDER_CODES)
        stmt = (select(Grant.user_id).where(Grant.role == Role.ADMIN, Grant.sender_code.in_(scopes),
                                            Grant.user_id != self.actor).distinct().order_by(Grant.user_id))
        return list(self.session.scalars(stmt))


def _global_admins(session: Session, *, lock: bool = False) -> list[str]:
    """Holders of the admin grant for every sender code; `lock` holds their rows until commit."""
    stmt = (select(Grant.user_id).where(Grant.role == Role.ADMIN, Grant.sender_code == ALL_SENDER_CODES)
            .order_by(Grant.user_id))
    return list(session.scalars(stmt.with_for_update() if lock else stmt))


def is_user_id(raw: str) -> bool:
    """Whether `raw` is a Slack user ID: the one check for Slack's admin command and the command line."""
    return USER_ID.fullmatch(raw) is not None


def _user(raw: str) -> str:
    if not is_user_id(raw):
        raise AdminError(f"{raw!r} is not a Slack user ID: give their member ID (their profile, ⋮, Copy member "
                         "ID), e.g. U012ABCDEF, or mention them. Nothing was changed.")
    return raw


def cli_scope(code: str) -> str:
    """The command line's `--sender-code` for a scope: every sender code must be asked for by name."""
    return f"--sender-code {code}" if code != ALL_SENDER_CODES else "--sender-code '*'"


def _grant_parser(prog: str, name: str) -> Parser:
    parser = Parser(prog=f"{prog} {name}")
    parser.add_argument("user", metavar="USER")
    parser.add_argument("role", choices=[r.value for r in Role], type=str.lower)
    parser.add_argument("code", metavar="CODE", nargs="?", help="omitted or * for every sender code")
    return parser


def _grant(ctx: _Context, args: argparse.Namespace, *, add: bool) -> Reply:
    user, role, code = _user(args.user), Role(args.role), parse_scope(args.code)
    if user == ctx.actor:
        others = ctx.others_who_administer(code)
        ask = (("ask ", *joined(User(a) for a in others)) if others else
               ("the operator can, on the command line (",
                Literal(f"sms-bot {'grant' if add else 'revoke'} {user} {role} {cli_scope(code)}"), ")"))
        raise AdminRefused(reply(line("Nobody changes their own grants, admins included, so that no one can make a "
                                      "send possible alone: ", *ask, ". Nothing was changed.")),
                           f"own grant: {'grant' if add else 'revoke'} {role}", code)
    ctx.require(code, "granting" if add else "revoking")
    if (not add and role is Role.ADMIN and code == ALL_SENDER_CODES
            and _global_admins(ctx.session, lock=True) == [user]):
        raise AdminRefused(reply(line(
            User(user), " holds the last admin grant for every sender code, so it stays: grant another admin for "
            "every code first, or use the command line (", Literal(f"sms-bot revoke {user} admin {cli_scope(code)}"),
            "). Nothing was changed.")), "the last admin for every sender code", ALL_SENDER_CODES)
    change = grants.grant if add else grants.revoke
    changed = change(ctx.session, user, role, code, ctx.actor)
    return reply(grant_result(user, role.value, code, add, changed))


def _grant_lines(session: Session) -> list[Line]:
    return [line("• ", User(g.user_id), f": {g.role} for {grants.scope_name(g.sender_code)} (by ",
                 User(g.granted_by), f", {g.granted_at:%Y-%m-%d})") for g in grants.list_grants(session)]


def _grants(ctx: _Context, _args: object = None) -> Reply:
    return reply(line(Title("Grants")), *_grant_lines(ctx.session))


def _sender_code_list(ctx: _Context, _args: object = None) -> Reply:
    lines = sender_code_lines(ctx.session)
    return reply(line(Title("Sender codes")), listing(lines) if lines else "none registered yet")


def _sender_code_set(ctx: _Context, args: argparse.Namespace) -> Reply:
    code = parse_scope(args.code)
    if code == ALL_SENDER_CODES:
        raise AdminError(reply(line(Literal("sender-code set"), " needs one sender code, not ", Literal("*"),
                                    ". Nothing was changed.")))
    ctx.require(code, "changing the policy")
    if args.self_approval == "yes" and ALL_SENDER_CODES not in ctx.codes:
        current = sender_codes.get_rules(ctx.session, code)
        if current is None or not current.self_approval:
            who = joined(User(a) for a in ctx.others_who_administer(ALL_SENDER_CODES)) or ("the operator",)
            raise AdminRefused(reply(line(
                "Self-approval lets one person request and approve a send alone, so only an admin of every "
                f"sender code can enable it for sender code {code}: ask ", *who, ". Nothing was changed.")),
                "enabling self-approval needs an admin of every sender code", code)
    first, *rules = apply_sender_code_options(ctx.session, args, ctx.actor)
    return reply(first, listing(rules))


def _test_phone_change(ctx: _Context, args: argparse.Namespace, *, add: bool) -> Reply:
    """Register or forget someone's test phone: an admin of every sender code, never for themselves.

    A test send can go through any sender code the person requests or approves for, so a
    phone is not one code's business; and whoever registers a phone decides who can be texted
    without an approval, so nobody registers their own (the operator can, on the command line).
    """
    user = _user(args.user)
    phone = None
    if add:
        try:
            phone = test_phones.parse_phone(" ".join(args.phone))
        except test_phones.PhoneError as exc:
            raise AdminError(f"{exc} Nothing was changed.") from exc
    verb = "set" if add else "remove"
    if user == ctx.actor:
        others = ctx.others_who_administer(ALL_SENDER_CODES)
        ask = (("ask ", *joined(User(a) for a in others)) if others else
               ("the operator can, on the command line (", Literal(f"sms-bot test-phone {verb} {user} …"), ")"))
        raise AdminRefused(reply(line("Nobody registers or removes their own test phone, admins included, so that "
                                      "no one can have texts sent to a number only they vouch for: ", *ask,
                                      ". Nothing was changed.")), f"own test phone: {verb}", ALL_SENDER_CODES)
    ctx.require(ALL_SENDER_CODES, "registering a test phone")
    if phone is not None:
        changed = test_phones.set_test_phone(ctx.session, user, phone, ctx.actor)
        return reply(line(User(user), f": test phone {test_phones.mask(phone)} "
                                      f"{'registered' if changed else 'already registered'}"))
    changed = test_phones.remove_test_phone(ctx.session, user, ctx.actor)
    return reply(line(User(user), ": test phone removed" if changed else ": had no test phone"))


def _test_phone_list(ctx: _Context, _args: object = None) -> Reply:
    """Phones masked: the reply is seen in Slack, and the last digits are enough to recognise one."""
    rows = test_phones.list_test_phones(ctx.session)
    return reply(line(Title("Test phones")), *(
        line("• ", User(r.user_id), f": {test_phones.mask(r.phone)} (by ", User(r.set_by), f", {r.set_at:%Y-%m-%d})")
        for r in rows) if rows else ("none registered yet",))


def _test_phone_parser(prog: str, name: str, phone: bool) -> Parser:
    parser = Parser(prog=f"{prog} test-phone {name}")
    parser.add_argument("user", metavar="USER")
    if phone:
        parser.add_argument("phone", metavar="PHONE", nargs="+", help="E.164, e.g. +15551234567 (spaces allowed)")
    return parser


Handler = Callable[[_Context, argparse.Namespace], Reply]


@dataclass(frozen=True)
class _Command:
    parser: Parser
    run: Handler
    summary: str


def _commands(prog: str) -> dict[str, _Command]:
    set_parser = Parser(prog=f"{prog} sender-code set")
    add_sender_code_options(set_parser)
    return {
        "grant": _Command(_grant_parser(prog, "grant"), partial(_grant, add=True),
                          "give a role for one sender code (CODE) or every code (no CODE, or *)"),
        "revoke": _Command(_grant_parser(prog, "revoke"), partial(_grant, add=False),
                           "take a role away, for one sender code or every code"),
        "grants": _Command(Parser(prog=f"{prog} grants"), _grants, "list every grant"),
        "sender-code set": _Command(set_parser, _sender_code_set,
                                    "add a sender code or change the options given (`none` clears one)"),
        "sender-code list": _Command(Parser(prog=f"{prog} sender-code list"), _sender_code_list,
                                     "list the registered sender codes and their policy"),
        "test-phone set": _Command(_test_phone_parser(prog, "set", True), partial(_test_phone_change, add=True),
                                   "register someone's phone for test sends (E.164; admins of every code)"),
        "test-phone remove": _Command(_test_phone_parser(prog, "remove", False),
                                      partial(_test_phone_change, add=False), "forget someone's test phone"),
        "test-phone list": _Command(Parser(prog=f"{prog} test-phone list"), _test_phone_list,
                                    "list the registered test phones (masked)"),
    }


def _usage(commands: dict[str, _Command]) -> Listing:
    return listing(text for c in commands.values()
                   for text in (c.parser.format_usage().removeprefix("usage: ").strip(), f"    {c.summary}"))


def _help(ctx: _Context, commands: dict[str, _Command]) -> Reply:
    title = line(Title("Administer grants, sender codes and test phones"),
                 " (only admins; every change is audited in your name)")
    return reply(title, _usage(commands), *_sender_code_list(ctx).blocks, *_grants(ctx).blocks)


def _pick(commands: dict[str, _Command], words: list[str]) -> tuple[_Command, list[str]]:
    """The command the words name, and the words left for its parser."""
    for size in (2, 1):
        name = " ".join(words[:size]).lower()
        if len(words) >= size and name in commands:
            return commands[name], words[size:]
    typed = " ".join(words[:2] if words[0].lower() in ("sender-code", "test-phone") else words[:1])
    raise AdminError(reply(f"{typed!r} is not an admin command. These are:", _usage(commands)))


def _refusal(session: Session, prog: str) -> AdminRefused:
    admins = grants.holders(session, Role.ADMIN)
    who = (("ask ", *joined(User(a) for a in admins)) if admins else
           ("ask the people who run this bot to grant you one",))
    return AdminRefused(reply(line(Literal(prog), " is only for admins, and you hold no admin grant: ", *who, ".")),
                        "holds no admin grant", None)


def run_admin_command(sessions: sessionmaker[Session], actor_id: str, words: Sequence[str], *,
                      prog: str = "admin") -> Reply:
    """Run one admin command as `actor_id` in one transaction; the reply. Any refusal or error changes nothing.

    A refusal is then kept in the audit trail, in a transaction of its own.
    """
    try:
        with sessions.begin() as session:
            codes = frozenset(grants.codes_by_role(session, actor_id).get(Role.ADMIN, ()))
            if not codes:
                raise _refusal(session, prog)
            ctx, commands = _Context(session, actor_id, codes), _commands(prog)
            if not words or words[0].lower() in HELP_WORDS:
                return _help(ctx, commands)
            command, rest = _pick(commands, list(words))
            return command.run(ctx, command.parser.parse_args(rest))
    except AdminRefused as exc:
        audit.record_refusal(sessions, actor_id, "admin", exc.reason, sender_code=exc.sender_code,
                             command=" ".join(words))
        return exc.reply
    except AdminError as exc:
        return exc.reply
