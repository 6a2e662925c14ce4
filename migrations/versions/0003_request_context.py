"""what the approvers see: message text, sender label, quiet hours, override, dry run

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 17:40:00

Requests made before this revision were not checked against WhatCounts' message list,
so they are marked unverified and live (not dry run).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('send_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('message_verified', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('sender_label', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('quiet_hours', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('quiet_override', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('dry_run', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('send_requests', schema=None) as batch_op:
        for column in ('dry_run', 'quiet_override', 'quiet_hours', 'sender_label', 'message_verified',
                       'message_text'):
            batch_op.drop_column(column)
