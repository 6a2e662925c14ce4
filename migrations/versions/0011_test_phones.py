"""test sends to a person's own phone: the registered phones, and the sends the limits count

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 07:30:00

- `test_phones`: one phone (E.164) per Slack user, set by an admin of every sender code.
- `test_sends`: every test send that passed its checks, with its click (unique per request and
  person, so a repeated click is one row) and its outcome; the per-request and per-day limits
  are counted here, in the database, so they hold across replicas.
Nothing existing changes; downgrading drops both tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'test_phones',
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('phone', sa.String(length=16), nullable=False),
        sa.Column('set_by', sa.String(length=64), nullable=False),
        sa.Column('set_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('user_id'),
    )
    op.create_table(
        'test_sends',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.String(length=16), nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('click', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['send_requests.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('request_id', 'user_id', 'click', name='uq_test_sends_click'),
    )
    op.create_index('ix_test_sends_user_at', 'test_sends', ['user_id', 'at'])


def downgrade() -> None:
    op.drop_index('ix_test_sends_user_at', table_name='test_sends')
    op.drop_table('test_sends')
    op.drop_table('test_phones')
