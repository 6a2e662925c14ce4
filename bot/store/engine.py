"""Engine and session factory for SQLite (the default) and PostgreSQL."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from sqlalchemy import CursorResult, DateTime, Engine, Update, create_engine, event, select
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import OperationalError
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
    now: datetime | None = session.scalar(select(database_utcnow()))
    assert now is not None
    return now


def rows_matched(session: Session, statement: Update) -> int:
    """How many rows an UPDATE matched (its guard held for), for the conditional UPDATEs that claim a request.

    Session.execute is typed to return a Result, but a DML statement without RETURNING returns a CursorResult.
    """
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


# How long the bot waits for its database, so that a dead or black-holed one turns into a clear
# answer inside Slack's 3 s instead of a hung listener (and a bot that recovers once it is back).
CONNECT_SECONDS = 2  # PostgreSQL's least connect_timeout
PING_SECONDS = 0.5  # a pooled connection's liveness check before use
STATEMENT_SECONDS = 2.0  # on the server (statement_timeout); the client gives up a little later
LOCK_SECONDS = 1.0  # waiting for a row lock (PostgreSQL)
SQLITE_BUSY_SECONDS = 2.0  # waiting for SQLite's write lock, which writers take in turn
POOL_SECONDS = 1.0  # waiting for a free connection in the pool
RETRY_SECONDS = 1.0  # after the database failed to answer, callers fail at once for this long


class DatabaseUnreachable(OperationalError):
    """The database did not answer a moment ago; not tried again yet."""

    def __init__(self) -> None:
        super().__init__("(not tried)", None, ConnectionError("the database did not answer a moment ago"))


class Reachability:
    """Whether the database answered lately: when a connection could not be made or went dead,
    callers fail at once for RETRY_SECONDS instead of each waiting out the timeouts (and a burst
    of Slack requests queueing behind them); after that the next caller tries again, so the bot
    recovers by itself once the database is back."""

    def __init__(self) -> None:
        self._down_until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        if time.monotonic() < self._down_until:
            raise DatabaseUnreachable

    def failed(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_SECONDS

    def answered(self) -> None:
        with self._lock:
            self._down_until = 0.0


_REACHABILITY: weakref.WeakKeyDictionary[Engine, Reachability] = weakref.WeakKeyDictionary()


def reachability(engine: Engine) -> Reachability:
    return _REACHABILITY.setdefault(engine, Reachability())


class _BoundedConnection(psycopg.Connection[Any]):
    """psycopg waits for the server without limit; this gives up after `answer_within` seconds.

    The server's statement_timeout covers a slow query; this covers a server that does not
    answer at all (a network black hole, a frozen host). The connection is closed, so
    SQLAlchemy treats it as a disconnect and replaces the whole pool.
    """

    answer_within: float = STATEMENT_SECONDS + 0.5

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:  # psycopg's own bounded waits (cancelling, notifications) keep their meaning
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.answer_within)
        except psycopg.errors._WaitTimeout as exc:
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {self.answer_within:g} s") from exc


def _postgresql_engine(url: str, bounded: bool) -> Engine:
    parsed = make_url(url)
    # statement_timeout and lock_timeout in milliseconds; kept with any options the URL already sets.
    limits = (f"-c statement_timeout={int(STATEMENT_SECONDS * 1000)}", f"-c lock_timeout={int(LOCK_SECONDS * 1000)}")
    options = " ".join(filter(None, (str(parsed.query.get("options") or ""), *(limits if bounded else ()))))
    engine = create_engine(parsed.difference_update_query(["options"]), pool_pre_ping=True,
                           pool_timeout=POOL_SECONDS,
                           connect_args={"connect_timeout": CONNECT_SECONDS, "options": options})

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return (_BoundedConnection if bounded else psycopg.Connection).connect(*cargs, **cparams)

    ping = engine.dialect.do_ping

    def _ping(dbapi_connection: Any) -> bool:
        # A short wait: a pooled connection that does not answer at once is replaced.
        dbapi_connection.answer_within = PING_SECONDS
        try:
            return ping(dbapi_connection)
        finally:
            dbapi_connection.answer_within = _BoundedConnection.answer_within

    engine.dialect.do_ping = _ping  # type: ignore[method-assign]  # no ping-timeout hook in SQLAlchemy

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, _record: Any) -> None:
        reachability(engine).answered()  # e.g. /readyz's probe found it back: nobody need wait out the retry

    @event.listens_for(engine, "handle_error")
    def _unreachable(context: ExceptionContext) -> None:
        # Not a slow or cancelled statement on a live connection: a connection that could not be made or died.
        # Not a pooled connection's liveness check either: the pool replaces that connection at once, and the
        # replacement says whether the database answers (a failed connect is marked here); marking it would
        # fail every other caller meanwhile, a send's outcome being recorded included, on a busy machine.
        if isinstance(context.original_exception, psycopg.OperationalError) and not context.is_pre_ping and (
                context.is_disconnect or context.connection is None):
            reachability(engine).failed()

    return engine


def make_engine(url: str, *, bounded: bool = True) -> Engine:
    """`bounded=False` lets statements run as long as they need (schema migrations); connecting is bounded always."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        return _postgresql_engine(url, bounded)
    engine = create_engine(url, pool_timeout=POOL_SECONDS,
                           connect_args={"timeout": SQLITE_BUSY_SECONDS if bounded else 30})

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
        self.reachability = reachability(engine)

    def __call__(self, **local_kw: Any) -> Session:
        """A session; raises DatabaseUnreachable at once while the database is known not to answer."""
        self.reachability.check()
        return super().__call__(**local_kw)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self(bind=self.writer) as session, session.begin():
            yield session


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return Sessions(engine)
