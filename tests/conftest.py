"""Fixtures: a migrated database on SQLite and on PostgreSQL, the fakes, and the bot.

`slack` drives the bot in this process (`bot_app`), unless the test asks for a real
`sms-bot serve --http` process (`bot_process`, or its older name `bot`): then it drives that.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from bot.store import schema
from bot.store.engine import normalize_url
from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts
from tests.harness import (
    BotProcess,
    Database,
    InProcessBot,
    SlackDriver,
    bot_env,
    make_database,
)

# Threads an in-process bot starts; none may outlive its test (WhatCounts listings end by their timeout).
BOT_THREADS = ("bolt-listener", "sms-bot-work", "sms-bot-reads", "sms-bot-sweeper")

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_or_skip() -> None:
    try:
        with create_engine(normalize_url(POSTGRES_URL)).connect() as connection:
            connection.execute(text("select 1"))
    except OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {exc.orig}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable")


@pytest.fixture(scope="session", autouse=True)
def imports_out_of_the_collectors_sight() -> None:
    """What is alive before the first test (modules, mostly) lives for the whole session: frozen,
    the `gc.collect()` after each in-process command (harness.run_cli) looks only at what tests made,
    a tenth of the objects."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def no_bot_threads_left() -> Iterator[None]:
    """Set up first, so checked last: every in-process bot of the test was shut down."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith(BOT_THREADS)]
    assert not left, f"threads of an in-process bot outlived the test: {left}"


def _postgres_schema_url(name: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}"
        return
    _postgres_or_skip()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield _postgres_schema_url(name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


class MigratedOnce:
    """Running every migration for every test costs a quarter of a second each; this runs them
    once per kind of database and session, and gives each test's empty database that result:
    a copy of the migrated SQLite file, or, on PostgreSQL, the very statements the migrations
    ran, played again. Tests of the migrations themselves use `database_url` and Alembic."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sqlite_file: Path | None = None
        self.postgres_statements: list[tuple[str, Any]] | None = None

    def apply(self, database_url: str) -> None:
        if database_url.startswith("sqlite:///"):
            self._copy_sqlite(Path(database_url.removeprefix("sqlite:///")))
        else:
            self._replay_postgres(database_url)

    def _copy_sqlite(self, target: Path) -> None:
        if self.sqlite_file is None:
            self.sqlite_file = self.workdir / "migrated.db"
            schema.upgrade(f"sqlite:///{self.sqlite_file}")
        source, copy = sqlite3.connect(self.sqlite_file), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            source.close()
            copy.close()

    def _replay_postgres(self, database_url: str) -> None:
        if self.postgres_statements is None:
            self.postgres_statements = self._record_postgres()
        engine = create_engine(normalize_url(database_url))
        try:
            with engine.begin() as connection:
                for statement, parameters in self.postgres_statements:
                    connection.exec_driver_sql(statement, parameters)
        finally:
            engine.dispose()

    def _record_postgres(self) -> list[tuple[str, Any]]:
        name = f"t_migrated_{uuid.uuid4().hex[:8]}"
        admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        recorded: list[tuple[str, Any]] = []

        # Alembic runs on this thread; its engine's URL does not name the schema (the search path
        # goes to the driver with the statement timeouts), so the thread tells its statements apart.
        upgrading = threading.get_ident()

        def record(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                   _many: bool) -> None:
            if threading.get_ident() == upgrading:
                recorded.append((statement, parameters or None))

        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        event.listen(Engine, "before_cursor_execute", record)
        try:
            schema.upgrade(_postgres_schema_url(name))
        finally:
            event.remove(Engine, "before_cursor_execute", record)
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            admin.dispose()
        return recorded


@pytest.fixture(scope="session")
def migrated_once(tmp_path_factory: pytest.TempPathFactory) -> MigratedOnce:
    return MigratedOnce(tmp_path_factory.mktemp("migrated"))


@pytest.fixture
def db(database_url: str, migrated_once: MigratedOnce) -> Iterator[Database]:
    """A database at the migrations' head revision, with the data the migrations put in it."""
    migrated_once.apply(database_url)
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
def bot_app(env: dict[str, str]) -> Iterator[InProcessBot]:
    """The bot's real runtime and WSGI app in this process, its sweeper running as in `serve`."""
    bot = InProcessBot(env).start()
    yield bot
    bot.stop()


@pytest.fixture
def bot_process(env: dict[str, str], tmp_path: Path) -> Iterator[BotProcess]:
    """`sms-bot serve --http` in a child process: for tests about processes only."""
    process = BotProcess(env, tmp_path).start()
    yield process
    process.stop()


@pytest.fixture
def bot(bot_process: BotProcess) -> BotProcess:
    """The older name of `bot_process`."""
    return bot_process


@pytest.fixture
def slack(request: pytest.FixtureRequest, env: dict[str, str], fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    """Slack towards the bot: the in-process one, or the process if the test asks for one."""
    target = "bot_process" if "bot_process" in request.fixturenames else "bot_app"
    driver = SlackDriver(request.getfixturevalue(target).url, fake_slack)
    yield driver
    driver.close()
