"""`QuietHours.next_allowed`: the first moment a send refused by quiet hours may go, across midnight and DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.quiet_hours import QuietHours

NEW_YORK = "America/New_York"


def test_a_window_across_midnight_ends_the_next_morning_local_time() -> None:
    quiet = QuietHours.parse("21:00-08:00", NEW_YORK)
    # 22:00 in New York on 24 November (EST, UTC-5): allowed again at 08:00 on the 25th.
    assert quiet.next_allowed(datetime(2026, 11, 25, 3, 0, 17)) == datetime(2026, 11, 25, 13, 0)
    # 07:59:30 on the 25th: thirty seconds later.
    assert quiet.next_allowed(datetime(2026, 11, 25, 12, 59, 30)) == datetime(2026, 11, 25, 13, 0)


def test_outside_the_window_it_is_the_moment_itself() -> None:
    quiet = QuietHours.parse("21:00-08:00", NEW_YORK)
    moment = datetime(2026, 11, 25, 15, 12, 42, 5)
    assert quiet.next_allowed(moment) == moment
    assert quiet.next_allowed(moment.replace(tzinfo=UTC)) == moment.replace(tzinfo=UTC)


def test_an_end_that_daylight_saving_skips_is_reached_when_the_clocks_jump() -> None:
    """8 March 2026: New York's clocks go from 02:00 to 03:00, so 02:30 never comes; the window
    00:00-02:30 ends at the jump (03:00 EDT, 07:00 UTC), not at 03:30."""
    quiet = QuietHours.parse("00:00-02:30", NEW_YORK)
    assert quiet.next_allowed(datetime(2026, 3, 8, 6, 0)) == datetime(2026, 3, 8, 7, 0)


def test_an_end_in_the_hour_that_repeats_is_its_first_pass() -> None:
    """1 November 2026: 01:00-02:00 happens twice in New York; 01:10 EDT waits for 01:30 EDT (05:30 UTC)."""
    quiet = QuietHours.parse("01:00-01:30", NEW_YORK)
    assert quiet.next_allowed(datetime(2026, 11, 1, 5, 10)) == datetime(2026, 11, 1, 5, 30)
    # The second pass through 01:00-01:30 (EST) is quiet again, and ends at 01:30 EST.
    assert quiet.next_allowed(datetime(2026, 11, 1, 6, 10)) == datetime(2026, 11, 1, 6, 30)


ZONES = st.sampled_from(["UTC", NEW_YORK, "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata",
                         "America/St_Johns", "Pacific/Chatham"])
MINUTES = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))


@settings(max_examples=300, deadline=None)
@given(start=MINUTES, end=MINUTES, timezone=ZONES,
       after=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)))
def test_the_first_allowed_moment_ends_the_window_or_a_clock_change(start: time, end: time, timezone: str,
                                                                    after: datetime) -> None:
    if start == end:
        return
    quiet = QuietHours(start, end, timezone)
    allowed = quiet.next_allowed(after)
    assert allowed >= after and not quiet.contains(allowed)
    assert allowed - after <= timedelta(hours=25)
    if allowed == after:
        return
    assert quiet.contains(after)
    just_before = allowed - timedelta(minutes=1)
    assert quiet.contains(max(just_before, after))  # nothing allowed in the last minute before it
    # It is where the window ends on the local clock, or where the clock jumped past that end.
    local, before = quiet.local_time(allowed), quiet.local_time(just_before)
    assert local.time() == end or local.utcoffset() != before.utcoffset()
