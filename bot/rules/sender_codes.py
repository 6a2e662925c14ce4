"""The sender-code registry: each code's rules, as plain functions over the session.

A sender code's rules: a label, the SMS groups that may be chosen for it, how many
approvals a send needs (more, if set, for a send to All contacts) and whether the requester
may be one of them, a daily cap on sends, quiet hours in a time zone, the Slack channels it
may be requested from, and the Slack user group its cards ask to approve.
Every change is audited ("sender_code", with the rules before and after).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.problems import Problems
from bot.quiet_hours import QuietHours, parse_window, zone
from bot.store import audit
from bot.store.models import AuditEvent, SenderCode, SendRequest, State
from bot.text import describe_character, hidden_character

MAX_LABEL = 100
MAX_GROUP_NAME = 150  # a group is chosen from a Slack menu, whose option values hold 150 characters
SLACK_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,31}")
SLACK_USER_GROUP = re.compile(r"S[A-Z0-9]{2,31}")
ALL_CONTACTS = "*"  # the form's group choice meaning no group: every contact of the sender code
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SENDER_CODE_PUNCTUATION = re.compile(r"[\s().\-]")
_SENDER_CODE = re.compile(r"\d{5,6}|\d{10}|1\d{10}")

# Requests that count against the daily cap: sending, or sent as far as anyone knows.
CAP_STATES = (State.SENDING, State.SENT, State.UNKNOWN)
CLEARABLE = frozenset({"daily_cap", "quiet_hours", "timezone", "approvals_all_contacts", "approvers_group"})


def normalize_sender_code(text: str) -> str | None:
    """Digits of a short code (5-6) or a US long number (10, or 11 with a leading 1); None if neither."""
    digits = _SENDER_CODE_PUNCTUATION.sub("", text.strip()).removeprefix("+")
    return digits if _SENDER_CODE.fullmatch(digits) else None


class SenderCodeError(Problems):
    """Every problem with a requested sender-code change, one per line."""


@dataclass(frozen=True)
class SenderCodeRules:
    """One sender code's rules, checked. Field names are those of the policy file."""

    code: str
    label: str = ""
    groups: tuple[str, ...] = ()
    approvals: int = 1
    approvals_all_contacts: int | None = None  # a send to All contacts; None: `approvals`, as for a group
    self_approval: bool = False
    daily_cap: int | None = None
    quiet_hours: QuietHours | None = None  # always in `timezone`
    timezone: str | None = None  # IANA name; also where the daily cap's day begins (UTC if None)
    channels: tuple[str, ...] = ()  # empty: any channel
    approvers_group: str | None = None  # the Slack user group (S…) a card asks; None: the approvers by name

    def __post_init__(self) -> None:
        if self.quiet_hours is not None and self.quiet_hours.timezone != self.timezone:
            raise ValueError(f"quiet hours in {self.quiet_hours.timezone} for a sender code in {self.timezone}")

    @classmethod
    def from_row(cls, row: SenderCode) -> SenderCodeRules:
        quiet = None
        if row.quiet_start is not None and row.quiet_end is not None and row.timezone is not None:
            quiet = QuietHours(row.quiet_start, row.quiet_end, row.timezone)
        return cls(code=row.code, label=row.label, groups=tuple(row.groups or ()),
                   approvals=row.approvals_required, self_approval=row.allow_self_approval,
                   daily_cap=row.daily_cap, quiet_hours=quiet, timezone=row.timezone,
                   channels=tuple(row.channels or ()), approvals_all_contacts=row.approvals_all_contacts,
                   approvers_group=row.approvers_group)

    def approvals_for(self, group: str | None) -> int:
        """Approvals a send to `group` needs; None is All contacts (see `fields.parse_fields`)."""
        if group is None and self.approvals_all_contacts is not None:
            return self.approvals_all_contacts
        return self.approvals

    def fields(self) -> dict[str, Any]:
        """Everything but the code, as plain JSON/YAML values (lists, not tuples; quiet hours as their window)."""
        values = asdict(self)
        del values["code"]
        values["groups"], values["channels"] = list(self.groups), list(self.channels)
        values["quiet_hours"] = self.quiet_hours.window if self.quiet_hours else None
        return values

    def describe(self) -> list[str]:
        """Three lines for a person: the code and label, the rules, the groups, channels and who is asked."""
        approvals = f"approvals {self.approvals}" + (
            f" ({self.approvals_all_contacts} for All contacts)" if self.approvals_all_contacts else "")
        rules = [approvals, f"self-approval {'yes' if self.self_approval else 'no'}",
                 f"daily cap {self.daily_cap}" if self.daily_cap else "no daily cap",
                 f"quiet hours {self.quiet_hours}" if self.quiet_hours else "no quiet hours"]
        if self.timezone and not self.quiet_hours:
            rules.append(f"time zone {self.timezone}")
        asked = f"user group {self.approvers_group}" if self.approvers_group else "its approvers by name"
        return [f"{self.code}  {self.label or '(no label)'}", "    " + ", ".join(rules),
                f"    groups: {', '.join(self.groups) or 'none'}; channels: {', '.join(self.channels) or 'any'}; "
                f"cards ask {asked}"]


DEFAULTS: dict[str, Any] = SenderCodeRules(code="").fields()
FIELDS = tuple(DEFAULTS)


# --- checking ---------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(value: Any, what: str, check: Any) -> tuple[tuple[str, ...], str | None]:
    if not isinstance(value, (list, tuple)):
        return (), f"must be a list of {what}s"
    names: list[str] = []
    for item in value:
        if not isinstance(item, str):
            return (), f"{item!r} is not a {what}: write it as text"
        item = item.strip()
        if problem := check(item):
            return (), problem
        if item in names:
            return (), f"{what} {item!r} is listed twice"
        names.append(item)
    return tuple(names), None


def _group_problem(name: str) -> str | None:
    if not name:
        return "a group name cannot be empty"
    if name == ALL_CONTACTS:
        return f"{ALL_CONTACTS!r} is not a group name: it stands for all contacts in the form"
    if len(name) > MAX_GROUP_NAME:
        return f"group name {name[:40]!r}... is {len(name)} characters; the limit is {MAX_GROUP_NAME}"
    if _CONTROL.search(name):
        return f"group name {name!r} contains a line break or control character"
    if (hidden := hidden_character(name)) is not None:
        return (f"group name {name!r} contains an invisible or direction-changing character "
                f"({describe_character(hidden)})")
    return None


def _channel_problem(channel: str) -> str | None:
    if not SLACK_CHANNEL.fullmatch(channel):
        return (f"{channel!r} is not a Slack channel ID: it looks like C0123ABCD (public) or "
                "G0123ABCD (private); copy it from the channel's details")
    return None


def parse_rules(code: str, values: Mapping[str, Any]) -> tuple[SenderCodeRules | None, dict[str, str]]:
    """Check a code's rules (missing fields take their defaults); the rules, or a problem per field."""
    errors: dict[str, str] = {}
    v = {**DEFAULTS, **values}
    normalized = normalize_sender_code(code) if isinstance(code, str) else None
    if normalized is None:
        errors["code"] = (f"{code!r} is not a sender code: a short code (5-6 digits) or a US phone number "
                          "(10 digits, or 11 starting with 1), written as text")

    label = v["label"]
    if not isinstance(label, str):
        errors["label"] = "must be text"
    elif len(label.strip()) > MAX_LABEL:
        errors["label"] = f"is {len(label.strip())} characters; the limit is {MAX_LABEL}"
    elif _CONTROL.search(label):
        errors["label"] = "contains a line break or control character"
    elif (hidden := hidden_character(label)) is not None:
        errors["label"] = f"contains an invisible or direction-changing character ({describe_character(hidden)})"

    groups, problem = _names(v["groups"], "group", _group_problem)
    if problem:
        errors["groups"] = problem
    channels, problem = _names(v["channels"], "channel", _channel_problem)
    if problem:
        errors["channels"] = problem

    if not _is_int(v["approvals"]) or v["approvals"] < 1:
        errors["approvals"] = f"must be a whole number, at least 1 (got {v['approvals']!r})"
    if not isinstance(v["self_approval"], bool):
        errors["self_approval"] = f"must be true or false (got {v['self_approval']!r})"
    all_contacts = v["approvals_all_contacts"]
    if all_contacts is not None and (not _is_int(all_contacts) or all_contacts < 1):
        errors["approvals_all_contacts"] = f"must be a whole number, at least 1, or none (got {all_contacts!r})"
    elif all_contacts is not None and "approvals" not in errors and all_contacts < v["approvals"]:
        errors["approvals_all_contacts"] = (f"is {all_contacts}, fewer than the {v['approvals']} approvals a send "
                                            "to a group needs: a send to All contacts needs at least as many")
    group = v["approvers_group"].strip() if isinstance(v["approvers_group"], str) else v["approvers_group"]
    if group is not None and (not isinstance(group, str) or not SLACK_USER_GROUP.fullmatch(group)):
        errors["approvers_group"] = (f"{group!r} is not a Slack user group ID: it looks like S0123ABCD (the "
                                     "group's page, ⋮, Copy group ID), or none to name the approvers instead")
    if v["daily_cap"] is not None and (not _is_int(v["daily_cap"]) or v["daily_cap"] < 1):
        errors["daily_cap"] = f"must be a whole number of sends, at least 1, or none (got {v['daily_cap']!r})"

    timezone = v["timezone"]
    if timezone is not None:
        if not isinstance(timezone, str):
            errors["timezone"] = f"must be a time zone name such as America/New_York (got {timezone!r})"
        else:
            try:
                timezone = zone(timezone).key
            except ValueError as exc:
                errors["timezone"] = str(exc)
    quiet = None
    if (window := v["quiet_hours"]) is not None:
        if not isinstance(window, str):
            errors["quiet_hours"] = f"must be a window like \"21:00-08:00\", in quotes (got {window!r})"
        else:
            try:
                start, end = parse_window(window)
            except ValueError as exc:
                errors["quiet_hours"] = str(exc)
            else:
                if timezone is None:
                    errors["quiet_hours"] = "quiet hours need a time zone, e.g. America/New_York"
                elif "timezone" not in errors:
                    quiet = QuietHours(start, end, timezone)

    if errors:
        return None, errors
    assert normalized is not None
    return SenderCodeRules(code=normalized, label=label.strip(), groups=groups, approvals=v["approvals"],
                           approvals_all_contacts=all_contacts, self_approval=v["self_approval"],
                           daily_cap=v["daily_cap"], quiet_hours=quiet, timezone=timezone, channels=channels,
                           approvers_group=group), {}


# --- reading ----------------------------------------------------------------------------

def list_sender_codes(session: Session) -> list[SenderCode]:
    return list(session.scalars(select(SenderCode).order_by(SenderCode.code)))


def get_rules(session: Session, code: str) -> SenderCodeRules | None:
    """The registered rules of a (normalized) sender code; None if it is not registered."""
    row = session.get(SenderCode, code)
    return SenderCodeRules.from_row(row) if row else None


# --- changing ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    code: str
    before: dict[str, Any] | None  # None: the code was not registered
    after: dict[str, Any] | None  # None: the code was removed

    @property
    def changed(self) -> bool:
        return self.before != self.after


def replace_sender_code(session: Session, rules: SenderCodeRules, by: str) -> Change:
    """Make the code's stored rules exactly `rules` (checked by `parse_rules`). Audited if it changed."""
    row = session.get(SenderCode, rules.code)
    before = SenderCodeRules.from_row(row).fields() if row else None
    after = rules.fields()
    change = Change(rules.code, before, after)
    if not change.changed:
        return change
    if row is None:
        row = SenderCode(code=rules.code)
        session.add(row)
    quiet = rules.quiet_hours
    row.label = rules.label
    row.groups = list(rules.groups)
    row.approvals_required = rules.approvals
    row.allow_self_approval = rules.self_approval
    row.daily_cap = rules.daily_cap
    row.quiet_start, row.quiet_end = (quiet.start, quiet.end) if quiet else (None, None)
    row.timezone = rules.timezone
    row.channels = list(rules.channels)
    row.approvals_all_contacts = rules.approvals_all_contacts
    row.approvers_group = rules.approvers_group
    audit.record(session, "sender_code", by, sender_code=rules.code, before=before, after=after)
    return change


def remove_sender_code(session: Session, code: str, by: str) -> Change:
    """Unregister a code (it falls back to the defaults); audited if it was registered."""
    row = session.get(SenderCode, code)
    if row is None:
        return Change(code, None, None)
    change = Change(code, SenderCodeRules.from_row(row).fields(), None)
    session.delete(row)
    audit.record(session, "sender_code", by, sender_code=code, before=change.before, after=None)
    return change


def set_sender_code(session: Session, code: str, by: str, *, label: str | None = None,
                    groups: Collection[str] | None = None, approvals: int | None = None,
                    daily_cap: int | None = None, quiet_hours: str | None = None,
                    timezone: str | None = None, channels: Collection[str] | None = None,
                    self_approval: bool | None = None, approvals_all_contacts: int | None = None,
                    approvers_group: str | None = None, clear: Collection[str] = ()) -> Change:
    """Create or update a sender code: only the fields given (not None) change.

    `clear` names nullable fields to empty (`CLEARABLE`); empty `groups`/`channels` with an
    empty list. Raises SenderCodeError listing every problem; nothing is changed then.
    """
    normalized = normalize_sender_code(code)
    if normalized is None:
        raise SenderCodeError([f"{code!r} is not a sender code: a short code (5-6 digits) or a US phone "
                               "number (10 digits, or 11 starting with 1)"])
    given = {"label": label, "groups": None if groups is None else list(groups), "approvals": approvals,
             "self_approval": self_approval, "daily_cap": daily_cap, "quiet_hours": quiet_hours,
             "timezone": timezone, "channels": None if channels is None else list(channels),
             "approvals_all_contacts": approvals_all_contacts, "approvers_group": approvers_group}
    problems = [f"{name} cannot be cleared (only {', '.join(sorted(CLEARABLE))} can)"
                for name in sorted(set(clear) - CLEARABLE)]
    problems += [f"{name} is both given and cleared" for name in sorted(set(clear) & CLEARABLE)
                 if given[name] is not None]
    if problems:
        raise SenderCodeError(problems)
    current = get_rules(session, normalized)
    values = current.fields() if current else dict(DEFAULTS)
    values.update({name: value for name, value in given.items() if value is not None})
    values.update({name: None for name in clear})
    rules, errors = parse_rules(normalized, values)
    if rules is None:
        raise SenderCodeError([f"{name.replace('_', ' ')}: {problem}" for name, problem in errors.items()])
    return replace_sender_code(session, rules, by)


# --- the daily cap ----------------------------------------------------------------------

def day_bounds(now_utc: datetime, timezone: str | None) -> tuple[datetime, datetime]:
    """The local calendar day containing `now_utc`, as naive UTC [start, end) (23 or 25 h around DST)."""
    tz = zone(timezone) if timezone else UTC
    if now_utc.tzinfo is None:
        now_utc = now_utc.replace(tzinfo=UTC)
    today = now_utc.astimezone(tz).date()
    start = datetime.combine(today, time(0), tzinfo=tz)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz)
    return (start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None))


def sends_today(session: Session, code: str, now_utc: datetime, timezone: str | None, *,
                dry_run: bool = False) -> int:
    """How many sends of `code` went out during the local day (in `timezone`, UTC if None) of `now_utc`.

    A send is counted on the day it *started sending*: the time of its "sending" audit
    event, written in the same transaction that moves the request to SENDING. A request
    asked for yesterday and approved today counts today. Only requests still SENDING,
    SENT or UNKNOWN count: a FAILED one was refused by WhatCounts or never reached it.
    Dry runs are counted apart from real sends (`dry_run`), so a rehearsal never uses up the cap.
    To enforce the cap without a race, count in the transaction that claims the send
    and lock the sender code's row first (PostgreSQL `SELECT ... FOR UPDATE`).
    """
    start, end = day_bounds(now_utc, timezone)
    stmt = (select(func.count(func.distinct(SendRequest.id)))
            .join(AuditEvent, AuditEvent.request_id == SendRequest.id)
            .where(AuditEvent.event == "sending", AuditEvent.at >= start, AuditEvent.at < end,
                   SendRequest.sender_code == code, SendRequest.state.in_(CAP_STATES),
                   SendRequest.dry_run.is_(dry_run)))
    return int(session.scalar(stmt) or 0)
