"""What the database holds keeps the shape the migrations gave it; the code reads it back as values.

States and roles are the lowercase words in VARCHAR(16) columns they have always been, and come
back as `State` and `Role`. Rows written before the mapping (plain SQL here) read the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from bot.store.models import Grant, Role, SendRequest, State
from tests.harness import CODE, Database


def add_request(db: Database, request_id: str, state: State) -> None:
    created = datetime(2026, 1, 15, 12)
    with db.sessions.begin() as session:
        session.add(SendRequest(id=request_id, state=state, requester_id="U1", channel_id="C1", card_ts="1.1",
                                message_name="M", sender_code=CODE, campaign_name="Spring", created_at=created,
                                expires_at=created + timedelta(hours=1)))


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
