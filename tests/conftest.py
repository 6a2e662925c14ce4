"""Fixtures: a migrated database on SQLite and on PostgreSQL, the fakes, and the running bot."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from bot.store import schema
from bot.store.engine import normalize_url
from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts
from tests.harness import BotProcess, Database, SlackDriver, bot_env, make_database

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_or_skip() -> None:
    try:
        with create_engine(normalize_url(POSTGRES_URL)).connect() as connection:
            connection.execute(text("select 1"))
    except OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {exc.orig}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}"
        return
    _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    schema.upgrade(database_url)
    database = make_database(database_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture
def fake_whatcounts() -> Iterator[FakeWhatCounts]:
    server = FakeWhatCounts()
    server.messages = [SPRING_SALE]
    yield server
    server.close()


@pytest.fixture
def env(db: Database, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> dict[str, str]:
    return bot_env(db.url, fake_slack, fake_whatcounts)


@pytest.fixture
def bot(env: dict[str, str], tmp_path: Path) -> Iterator[BotProcess]:
    process = BotProcess(env, tmp_path).start()
    yield process
    process.stop()


@pytest.fixture
def slack(bot: BotProcess, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    driver = SlackDriver(bot.url, fake_slack)
    yield driver
    driver.close()
