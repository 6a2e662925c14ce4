"""sender code policy: SMS groups, daily cap, quiet hours, allowed channels

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 14:30:50.064816

Existing sender codes get no groups, no cap, no quiet hours and any channel, which is
what they had before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sender_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('groups', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(sa.Column('daily_cap', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('quiet_start', sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column('quiet_end', sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('channels', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('sender_codes', schema=None) as batch_op:
        batch_op.drop_column('channels')
        batch_op.drop_column('timezone')
        batch_op.drop_column('quiet_end')
        batch_op.drop_column('quiet_start')
        batch_op.drop_column('daily_cap')
        batch_op.drop_column('groups')
