"""Quiet hours: a daily window of local wall-clock time in which no SMS may be sent.

The window is `[start, end)` in the sender code's time zone and may cross midnight
("21:00-08:00"). It is compared with the local wall-clock time of the moment, so it
follows daylight saving time: 21:00 is 21:00 local in winter and in summer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time
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


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    timezone: str

    def __post_init__(self) -> None:
        zone(self.timezone)
        if self.start == self.end:
            raise ValueError(f"quiet hours {format_time(self.start)}-{format_time(self.end)} start and end "
                             "at the same time; give a window such as 21:00-08:00")

    @classmethod
    def parse(cls, window: str, timezone: str) -> QuietHours:
        """'21:00-08:00' in `timezone`; ValueError with a message fit to show a person."""
        start, sep, end = window.partition("-")
        if not sep or not start.strip() or not end.strip():
            raise ValueError(f"{window!r} is not a window like 21:00-08:00 (start-end, 24-hour clock)")
        return cls(parse_time(start), parse_time(end), timezone.strip() if timezone else timezone)

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
