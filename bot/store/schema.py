"""Alembic, driven from code: `sms-bot db upgrade`, and whether the database's schema is current.

`schema_status` is the one answer to "can this code use that database?", asked by
`sms-bot serve` and every database command before they start, by `sms-bot check`, and
by `/readyz`; each says it in words for its own reader.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.store.engine import normalize_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = normalize_url(database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@functools.cache
def head_revision() -> str | None:
    """The newest migration: the revision this code needs (read once; the scripts ship with the code)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against the migrations this code ships."""

    reachable: bool
    current: str | None  # the database's revision; None: no schema yet, or not reachable
    head: str | None  # the revision this code needs
    failure: str = ""  # why it could not be reached: the driver's error class, e.g. OperationalError

    @property
    def up_to_date(self) -> bool:
        return self.reachable and self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    """Ask the database for its revision; any database error means "not reachable", never an exception."""
    head = head_revision()
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        return SchemaStatus(reachable=False, current=None, head=head, failure=type(cause).__name__)
    return SchemaStatus(reachable=True, current=current, head=head)
