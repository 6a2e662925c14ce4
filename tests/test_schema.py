"""Models and migrations agree on both databases; the Slack manifest follows Slack's schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.store import schema
from bot.store.engine import make_engine
from bot.store.models import Base
from tests.harness import Database

ROOT = Path(__file__).resolve().parent.parent
# Slack's manifest JSON schema, vendored with its MIT licence (tests/slack_manifest_schema/LICENSE).
SCHEMA = Path(__file__).resolve().parent / "slack_manifest_schema" / "manifest.schema.1.0.0.json"


def test_migrations_match_models(database_url: str) -> None:
    schema.upgrade(database_url)  # Alembic itself, not the `db` fixture's copy of its result
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_the_database_other_tests_get_is_the_migrations_result(db: Database) -> None:
    """`db` copies one migration run per session: that copy is at head and matches the models too
    (test_policy_cache shows its triggers work)."""
    assert schema.current_revision(db.engine) == schema.head_revision()
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_manifest_is_valid_and_asks_only_for_what_the_bot_uses() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    jsonschema.validate(manifest, json.loads(SCHEMA.read_text()))
    assert manifest["oauth_config"]["scopes"]["bot"] == ["commands", "chat:write"]
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/sms-send"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
