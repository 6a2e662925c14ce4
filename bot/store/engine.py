"""Engine and session factory for SQLite (the default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


def utcnow() -> datetime:
    """Naive UTC on this process's clock: both databases store it the same way and compare it in SQL."""
    return datetime.now(UTC).replace(tzinfo=None)


class database_utcnow(FunctionElement[datetime]):
    """The database's time, naive UTC, in SQL: the one clock every bot process agrees on.

    Deadlines and expiry are judged with it, so a replica whose clock runs ahead or behind
    can never expire another's request early or call its send lost.
    """

    type = DateTime()
    inherit_cache = True


@compiles(database_utcnow, "sqlite")
def _sqlite_utcnow(_element: database_utcnow, _compiler: SQLCompiler, **_kw: Any) -> str:
    # Microseconds, as SQLAlchemy stores datetimes in SQLite, so text comparison is time order.
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


@compiles(database_utcnow, "postgresql")
def _postgresql_utcnow(_element: database_utcnow, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "(now() AT TIME ZONE 'UTC')"


def database_now(session: Session) -> datetime:
    """The database's time now (naive UTC), for stamping and for deadlines computed in Python."""
    now = session.scalar(select(database_utcnow()))
    assert now is not None
    return now


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        # A write takes the write lock up front (IMMEDIATE), so two processes never deadlock
        # upgrading a read transaction; the busy timeout makes the other one wait. A read
        # (see `Sessions`) begins deferred: in WAL mode it never blocks a writer, however long it stays open.
        read = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


READ_ONLY = "sms_bot_read_only"  # execution option: this connection only reads


class Sessions(sessionmaker[Session]):
    """`sessions()` for reading, `sessions.begin()` for a transaction that writes.

    On SQLite a read session begins a deferred transaction, so a long read (an audit export
    piped into a pager) never holds the write lock; writers begin IMMEDIATE. PostgreSQL
    behaves the same either way.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self.writer = engine

    @contextmanager
    def begin(self) -> Iterator[Session]:  # type: ignore[override]
        with self(bind=self.writer) as session, session.begin():
            yield session


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return Sessions(engine)
