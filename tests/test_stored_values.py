"""What the database holds keeps the shape the migrations gave it; the code reads it back as values.

States and roles are the lowercase words in VARCHAR(16) columns they have always been, and come
back as `State` and `Role`; quiet hours are the "HH:MM" columns of a sender code and the
"21:00-08:00 America/New_York" text of a request, and come back as one `QuietHours`. Rows written
before the mapping (plain SQL here) read the same way, so no migration was needed.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.quiet_hours import QuietHours
from bot.rules.sender_codes import get_rules, set_sender_code
from bot.store.models import Grant, Role, SendRequest, State
from tests.harness import CODE, Database


def add_request(db: Database, request_id: str, state: State, **values: Any) -> None:
    created = datetime(2026, 1, 15, 12)
    with db.sessions.begin() as session:
        session.add(SendRequest(id=request_id, state=state, requester_id="U1", channel_id="C1", card_ts="1.1",
                                message_name="M", sender_code=CODE, campaign_name="Spring", created_at=created,
                                expires_at=created + timedelta(hours=1), **values))


def test_states_and_roles_are_stored_as_the_words_they_always_were(db: Database) -> None:
    db.grant("U1", "approver", CODE)
    add_request(db, "r1", State.SENT)
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT role FROM grants")) == "approver"
        assert connection.scalar(text("SELECT state FROM send_requests")) == "sent"


def test_rows_written_before_come_back_as_states_and_roles(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO grants (user_id, role, sender_code, granted_by, granted_at) "
            "VALUES ('U1', 'admin', '*', 'cli:ops', '2026-01-15 12:00:00')"))
        connection.execute(text(
            "INSERT INTO send_requests (id, state, requester_id, team_id, channel_id, card_ts, message_name, "
            "sender_code, campaign_name, approvals_required, allow_self_approval, created_at, expires_at, "
            "message_verified, sender_label, dry_run, version, card_version, outcome_posted) "
            f"VALUES ('old', 'unknown', 'U1', '', 'C1', '1.1', 'M', '{CODE}', 'Spring', 1, false, "
            "'2026-01-15 12:00:00', '2026-01-15 13:00:00', false, '', false, 1, 1, false)"))
    with db.sessions() as session:
        assert session.scalars(select(Grant.role)).one() is Role.ADMIN
        request = session.get(SendRequest, "old")
        assert request is not None and request.state is State.UNKNOWN


def test_a_state_the_code_does_not_know_is_refused_not_passed_on(db: Database) -> None:
    add_request(db, "r1", State.PENDING)
    with db.sessions() as session:
        assert session.scalars(select(SendRequest.state)).one() is State.PENDING
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE send_requests SET state = 'paused'"))
    with db.sessions() as session, pytest.raises(LookupError, match="paused"):
        session.scalars(select(SendRequest.state)).one()


# --- quiet hours: one value, kept as the text and columns migrations 0002 and 0003 made -------------------

NEW_YORK = QuietHours(time(21), time(8), "America/New_York")


def test_a_codes_quiet_hours_are_stored_as_before_and_read_as_one_value(db: Database) -> None:
    with db.sessions.begin() as session:
        set_sender_code(session, CODE, "U1", quiet_hours="21:00-8:00", timezone="America/New_York")
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT quiet_start, quiet_end, timezone FROM sender_codes")).one() == (
            "21:00", "08:00", "America/New_York")
    with db.sessions() as session:
        rules = get_rules(session, CODE)
    assert rules is not None and rules.quiet_hours == NEW_YORK


def test_quiet_hours_stored_before_read_as_one_value(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO sender_codes (code, label, approvals_required, allow_self_approval, groups, channels, "
            f"quiet_start, quiet_end, timezone) VALUES ('{CODE}', '', 1, false, '[]', '[]', '21:00', '08:00', "
            "'America/New_York')"))
    add_request(db, "old", State.PENDING)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE send_requests SET quiet_hours = '21:00-08:00 America/New_York'"))
    with db.sessions() as session:
        rules = get_rules(session, CODE)
        request = session.get(SendRequest, "old")
    assert rules is not None and rules.quiet_hours == NEW_YORK
    assert request is not None and request.quiet_hours == NEW_YORK


def test_a_requests_quiet_hours_are_kept_as_the_text_they_always_were(db: Database) -> None:
    add_request(db, "r1", State.PENDING, quiet_hours=NEW_YORK)
    add_request(db, "r2", State.PENDING)
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, quiet_hours FROM send_requests"))
        stored = {row.id: row.quiet_hours for row in rows}
    assert stored == {"r1": "21:00-08:00 America/New_York", "r2": None}
