"""Quiet hours: a daily window of local wall-clock time in which no SMS may be sent.

The window is `[start, end)` in the sender code's time zone and may cross midnight
("21:00-08:00"). It is compared with the local wall-clock time of the moment, so it
follows daylight saving time: 21:00 is 21:00 local in winter and in summer.

`QuietHours` is the one shape of quiet hours: the models map their columns to it (and this
module imports nothing of the bot, so the store may use it), the rules and cards use it,
and text is parsed only where a person or a file typed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def parse_time(text: str) -> time:
    """'8:00' or '08:00' (24-hour clock) into a time; ValueError saying what is wrong."""
    match = _HHMM.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time like 21:00 (24-hour HH:MM)")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day: hours go 00-23, minutes 00-59")
    return time(hour, minute)


def format_time(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. America/New_York); ValueError if there is none."""
    if not name or not name.strip():
        raise ValueError("a time zone is required, e.g. America/New_York")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"{name!r} is not a known time zone; use an IANA name such as "
                         "America/New_York or Europe/Berlin") from exc


def _check_window(start: time, end: time) -> None:
    if start == end:
        raise ValueError(f"quiet hours {format_time(start)}-{format_time(end)} start and end "
                         "at the same time; give a window such as 21:00-08:00")


def parse_window(window: str) -> tuple[time, time]:
    """'21:00-08:00' into its start and end; ValueError with a message fit to show a person."""
    start, sep, end = window.partition("-")
    if not sep or not start.strip() or not end.strip():
        raise ValueError(f"{window!r} is not a window like 21:00-08:00 (start-end, 24-hour clock)")
    times = parse_time(start), parse_time(end)
    _check_window(*times)
    return times


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    timezone: str  # an IANA name

    def __post_init__(self) -> None:
        zone(self.timezone)
        _check_window(self.start, self.end)

    @classmethod
    def parse(cls, window: str, timezone: str) -> QuietHours:
        """'21:00-08:00' in `timezone`; ValueError with a message fit to show a person."""
        return cls(*parse_window(window), timezone.strip() if timezone else timezone)

    @classmethod
    def from_text(cls, text: str) -> QuietHours:
        """The inverse of `str()`: '21:00-08:00 America/New_York'."""
        window, _, timezone = text.partition(" ")
        return cls.parse(window, timezone)

    @property
    def window(self) -> str:
        return f"{format_time(self.start)}-{format_time(self.end)}"

    def __str__(self) -> str:
        return f"{self.window} {self.timezone}"

    def local_time(self, moment_utc: datetime) -> datetime:
        """The moment in this time zone; a naive datetime is taken as UTC (as the database stores it)."""
        if moment_utc.tzinfo is None:
            moment_utc = moment_utc.replace(tzinfo=UTC)
        return moment_utc.astimezone(zone(self.timezone))

    def contains(self, moment_utc: datetime) -> bool:
        now = self.local_time(moment_utc).time()
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_allowed(self, after: datetime) -> datetime:
        """The first moment at or after `after` outside the window, naive UTC like `after` (aware: UTC too).

        The window opens and closes on whole local minutes and zones change their offset on whole
        minutes, so the first allowed moment is `after` itself or a whole minute: walking minute by
        minute (at most a day and the hour a DST change may add) is exact across DST gaps and
        repeated hours and windows that cross midnight.
        """
        aware = after if after.tzinfo else after.replace(tzinfo=UTC)
        moment = aware
        if self.contains(moment):
            moment = moment.replace(second=0, microsecond=0)  # the window is on whole minutes: so is its end
            while self.contains(moment):
                moment += timedelta(minutes=1)
        utc = moment.astimezone(UTC)
        return utc if after.tzinfo else utc.replace(tzinfo=None)
