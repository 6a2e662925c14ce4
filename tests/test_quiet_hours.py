"""Quiet hours: parsing, windows across midnight, and daylight saving time."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.quiet_hours import QuietHours

NY = "America/New_York"  # 2026: EDT from 8 March 07:00 UTC to 1 November 06:00 UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_parse() -> None:
    quiet = QuietHours.parse("21:00-08:00", NY)
    assert (quiet.start, quiet.end, quiet.timezone) == (time(21), time(8), NY)
    assert str(quiet) == "21:00-08:00 America/New_York"
    assert QuietHours.parse(" 8:00 - 9:30 ", " Europe/Berlin ").window == "08:00-09:30"


@pytest.mark.parametrize(("window", "timezone", "message"), [
    ("21:00", NY, "not a window like 21:00-08:00"),
    ("21:00-", NY, "not a window like 21:00-08:00"),
    ("", NY, "not a window like 21:00-08:00"),
    ("9pm-8am", NY, "'9pm' is not a time like 21:00"),
    ("25:00-08:00", NY, "hours go 00-23"),
    ("21:00-08:60", NY, "minutes 00-59"),
    ("24:00-08:00", NY, "hours go 00-23"),
    ("21:00-21:00", NY, "start and end at the same time"),
    ("21:00-08:00", "Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not a known time zone"),
    ("21:00-08:00", "EST5EDT/../../etc/passwd", "is not a known time zone"),
    ("21:00-08:00", "America", "is not a known time zone"),
    ("21:00-08:00", "", "a time zone is required"),
])
def test_parse_errors_say_what_is_wrong(window: str, timezone: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        QuietHours.parse(window, timezone)


def test_window_across_midnight_in_winter() -> None:
    quiet = QuietHours.parse("21:00-08:00", NY)  # EST = UTC-5
    assert not quiet.contains(utc(2026, 1, 15, 1, 59))  # 20:59
    assert quiet.contains(utc(2026, 1, 15, 2, 0))  # 21:00
    assert quiet.contains(utc(2026, 1, 15, 5, 0))  # midnight
    assert quiet.contains(utc(2026, 1, 15, 12, 59))  # 07:59
    assert not quiet.contains(utc(2026, 1, 15, 13, 0))  # 08:00
    assert not quiet.contains(utc(2026, 1, 15, 17, 0))  # noon


def test_same_local_times_in_summer_are_other_utc_times() -> None:
    quiet = QuietHours.parse("21:00-08:00", NY)  # EDT = UTC-4
    assert quiet.contains(utc(2026, 7, 15, 1, 0))  # 21:00 EDT (20:00 in winter)
    assert not quiet.contains(utc(2026, 1, 15, 1, 0))  # 20:00 EST
    assert not quiet.contains(utc(2026, 7, 15, 12, 0))  # 08:00 EDT
    assert quiet.contains(utc(2026, 1, 15, 12, 0))  # 07:00 EST


def test_window_within_one_day() -> None:
    quiet = QuietHours.parse("12:00-13:30", "Europe/Berlin")  # CET = UTC+1 in January
    assert not quiet.contains(utc(2026, 1, 15, 10, 59))
    assert quiet.contains(utc(2026, 1, 15, 11, 0))
    assert quiet.contains(utc(2026, 1, 15, 12, 29))
    assert not quiet.contains(utc(2026, 1, 15, 12, 30))
    assert not quiet.contains(utc(2026, 1, 15, 23, 0))


def test_spring_forward_day() -> None:
    # 8 March 2026 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:00-03:00 local never happens.
    quiet = QuietHours.parse("01:30-03:30", NY)
    assert not quiet.contains(utc(2026, 3, 8, 6, 29))  # 01:29 EST
    assert quiet.contains(utc(2026, 3, 8, 6, 45))  # 01:45 EST
    assert quiet.contains(utc(2026, 3, 8, 7, 0))  # 03:00 EDT
    assert not quiet.contains(utc(2026, 3, 8, 7, 30))  # 03:30 EDT: the window was one hour long


def test_fall_back_day() -> None:
    # 1 November 2026 02:00 EDT falls back to 01:00 EST (06:00 UTC): 01:00-02:00 happens twice.
    quiet = QuietHours.parse("01:00-01:30", NY)
    assert quiet.contains(utc(2026, 11, 1, 5, 15))  # 01:15 EDT
    assert not quiet.contains(utc(2026, 11, 1, 5, 45))  # 01:45 EDT
    assert quiet.contains(utc(2026, 11, 1, 6, 15))  # 01:15 EST, the second time round
    assert not quiet.contains(utc(2026, 11, 1, 6, 45))


def test_naive_moments_are_utc_and_aware_ones_are_converted() -> None:
    quiet = QuietHours.parse("21:00-08:00", NY)
    assert quiet.contains(datetime(2026, 1, 15, 2, 0))  # naive UTC, as stored in the database
    assert not quiet.contains(datetime(2026, 1, 15, 1, 59))
    berlin = datetime(2026, 1, 15, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:00 UTC, 21:00 EST
    assert quiet.contains(berlin)


def test_time_zones_work_without_the_system_database() -> None:
    """The `tzdata` dependency supplies the zones where the OS has none (slim containers, Windows)."""
    code = ("import zoneinfo; assert zoneinfo.TZPATH == (), zoneinfo.TZPATH; "
            "from bot.quiet_hours import QuietHours; print(QuietHours.parse('21:00-08:00', 'America/New_York'))")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONTZPATH": ""},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "21:00-08:00 America/New_York"
