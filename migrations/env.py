"""Alembic environment: our engine (SQLite pragmas, psycopg for PostgreSQL) and our models."""

from __future__ import annotations

import os

from alembic import context

from bot.ops.config import DEFAULT_DATABASE_URL
from bot.store.engine import make_engine
from bot.store.models import Base

config = context.config
url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def run_migrations_online() -> None:
    engine = make_engine(url, bounded=False)  # a migration may take longer than a request may
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
