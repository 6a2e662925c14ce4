"""One answer to "can this code use that database?": the schema status behind serve, check and /readyz."""

from __future__ import annotations

from sqlalchemy import text

from bot.store.engine import make_engine
from bot.store.schema import SchemaStatus, head_revision, schema_status, upgrade
from tests.harness import Database, free_port


def test_a_migrated_database_is_up_to_date(db: Database) -> None:
    status = schema_status(db.engine)
    assert status == SchemaStatus(reachable=True, current=head_revision(), head=head_revision())
    assert status.up_to_date


def test_a_database_behind_the_code_says_where_it_stands(database_url: str) -> None:
    upgrade(database_url, "0003")
    engine = make_engine(database_url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    assert (status.reachable, status.current, status.head, status.up_to_date) == (
        True, "0003", head_revision(), False)


def test_an_empty_database_has_no_schema_yet(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    assert (status.reachable, status.current, status.up_to_date) == (True, None, False)


def test_a_database_that_cannot_be_reached_is_reported_not_raised() -> None:
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/test")  # nothing listens there
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    assert (status.reachable, status.current, status.failure, status.up_to_date) == (
        False, None, "OperationalError", False)


def test_an_unknown_revision_is_not_up_to_date(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    assert schema_status(db.engine).current == "0000_older"
    assert not schema_status(db.engine).up_to_date
