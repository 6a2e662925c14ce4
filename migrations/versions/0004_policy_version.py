"""policy_version: a number that moves whenever grants or sender codes change

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 20:30:00

Each bot process keeps the grants and sender codes in memory for the request form
(bot/rules/cache.py) and reloads them when this number moves. Triggers move it, so every
writer counts: the bot, `sms-bot`, another replica, an operator's own SQL, a bulk COPY.

On SQLite, a later migration that rebuilds `grants` or `sender_codes` with
`batch_alter_table` drops these triggers and must create them again (tests/test_policy_cache.py
checks that they work at the head revision).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('grants', 'sender_codes')
BUMP = 'UPDATE policy_version SET version = version + 1 WHERE id = 1'


def upgrade() -> None:
    op.create_table('policy_version',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('version', sa.BigInteger(), server_default='0', nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.execute('INSERT INTO policy_version (id, version) VALUES (1, 0)')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'CREATE FUNCTION bump_policy_version() RETURNS trigger LANGUAGE plpgsql AS $$ '
                   f'BEGIN {BUMP}; RETURN NULL; END $$')
        for table in TABLES:
            op.execute(f'CREATE TRIGGER {table}_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
                       f'ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_version()')
        return
    for table in TABLES:
        for change in ('INSERT', 'UPDATE', 'DELETE'):
            op.execute(f'CREATE TRIGGER {table}_policy_version_{change.lower()} AFTER {change} ON {table} '
                       f'BEGIN {BUMP}; END')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f'DROP TRIGGER {table}_policy_version ON {table}')
        op.execute('DROP FUNCTION bump_policy_version()')
    else:
        for table in TABLES:
            for change in ('insert', 'update', 'delete'):
                op.execute(f'DROP TRIGGER {table}_policy_version_{change}')
    op.drop_table('policy_version')
