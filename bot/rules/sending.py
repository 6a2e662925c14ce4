"""A sender code's rules applied to one send: when it is requested and when it is claimed.

Each check returns None when the send may go ahead, or a sentence for the person who
asked. They are plain functions over the registry's `SenderCodeRules`, so the form,
the card and the claim transaction all say the same thing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.quiet_hours import QuietHours, format_time, zone
from bot.rules.sender_codes import SenderCodeRules, sends_today
from bot.store.models import SenderCode


def channel_problem(rules: SenderCodeRules, channel_id: str) -> str | None:
    if not rules.channels or channel_id in rules.channels:
        return None
    where = ", ".join(f"#{c}" for c in rules.channels)
    return f"Sender code {rules.code} can only be requested in these channels: {where} (channel IDs)."


def group_problem(rules: SenderCodeRules, group: str | None) -> str | None:
    """WhatCounts ignores an unknown group and sends to everyone, so only registered groups go."""
    if group is None or group in rules.groups:
        return None
    known = ", ".join(rules.groups) or "none"
    return (f"“{group}” is not a registered group of sender code {rules.code} (registered: {known}). "
            "Choose one of them or All contacts.")


def quiet_problem(rules: SenderCodeRules, now: datetime) -> str | None:
    """Set when `now` (naive UTC) falls inside the code's quiet hours."""
    quiet = rules.quiet_hours
    if quiet is None or not quiet.contains(now):
        return None
    local = quiet.local_time(now)
    return (f"It is {local:%H:%M} in {quiet.timezone}, inside sender code {rules.code}'s quiet hours "
            f"({quiet.window}); nothing may be sent until {format_time(quiet.end)}. An admin can override "
            "with a written reason.")


def in_zone(moment: datetime, name: str | None) -> str:
    """A moment (naive UTC) on the clock of zone `name` (UTC if None): "Wed 26 Nov 2026 08:00 America/New_York"."""
    name = name or "UTC"
    return f"{moment.replace(tzinfo=UTC).astimezone(zone(name)):%a %d %b %Y %H:%M} {name}"


def in_code_zone(rules: SenderCodeRules, moment: datetime) -> str:
    """A moment as the sender code's people read it, in the code's zone."""
    return in_zone(moment, rules.timezone)


def next_allowed_offer(rules: SenderCodeRules, now: datetime) -> str:
    """For a send refused now by quiet hours: the first time it may go, to choose under Send at."""
    assert rules.quiet_hours is not None
    allowed = rules.quiet_hours.next_allowed(now)
    return f"The next allowed time is {in_code_zone(rules, allowed)}: choose it under Send at."


def send_at_problem(rules: SenderCodeRules, send_at: datetime, now: datetime, furthest: timedelta,
                    quiet_overridden: bool) -> str | None:
    """Set when a requested send time (naive UTC) is past, too far ahead, or inside the code's quiet hours."""
    if send_at <= now:
        return (f"{in_code_zone(rules, send_at)} has passed; choose a time in the future, or leave Send at "
                "empty to send as soon as it is approved.")
    if send_at > now + furthest:
        return (f"Send at can be at most {_days(furthest)} ahead: choose a time before "
                f"{in_code_zone(rules, now + furthest)}.")
    quiet = rules.quiet_hours
    if quiet is None or quiet_overridden or not quiet.contains(send_at):
        return None
    return (f"{in_code_zone(rules, send_at)} is inside sender code {rules.code}'s quiet hours ({quiet}). "
            f"The next allowed time is {in_code_zone(rules, quiet.next_allowed(send_at))}.")


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} day{'s' if days != 1 else ''}"


def quiet_status(quiet: QuietHours | None, requested_at: datetime, expires_at: datetime,
                 send_at: datetime | None = None) -> str:
    """For the card: the window, and whether it touches the time the request is open (or its send time)."""
    if quiet is None:
        return "none set for this sender code"
    if send_at is not None:
        return f"{quiet}: {'in effect' if quiet.contains(send_at) else 'not in effect'} at the time it is to be sent"
    if quiet.contains(requested_at):
        return f"{quiet}: in effect when this was requested"
    moment = requested_at
    while moment < expires_at:  # minute by minute over the request's lifetime: exact across DST changes
        moment += timedelta(minutes=1)
        if quiet.contains(moment):
            return f"{quiet}: they begin before this request expires, so approve before {format_time(quiet.start)}"
    return f"{quiet}: not in effect while this request is open"


def cap_problem(session: Session, rules: SenderCodeRules, now: datetime, dry_run: bool) -> str | None:
    """Set when the code's sends today already reach its daily cap (dry runs count only against dry runs)."""
    if rules.daily_cap is None:
        return None
    used = sends_today(session, rules.code, now, rules.timezone, dry_run=dry_run)
    if used < rules.daily_cap:
        return None
    day = f"the day in {rules.timezone}" if rules.timezone else "the UTC day"
    return (f"Sender code {rules.code} has reached its daily cap: {used} of {rules.daily_cap} sends "
            f"today ({day}). Sends are possible again after midnight.")


def lock_sender_code(session: Session, code: str) -> SenderCodeRules | None:
    """The code's rules, its row locked until the transaction ends, so claims of one code queue.

    PostgreSQL takes a row lock (`FOR UPDATE`); SQLite transactions here begin IMMEDIATE,
    which already lets one writer in at a time.
    """
    row = session.scalars(select(SenderCode).where(SenderCode.code == code).with_for_update()).first()
    return SenderCodeRules.from_row(row) if row else None
