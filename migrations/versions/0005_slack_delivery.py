"""delivering to Slack: the form a request came from, outcome-post leases, card retry back-off

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 05:00:00

- `view_id`: the Slack modal a request was submitted from, unique, so submitting the same
  form twice makes at most one request. Requests made before this revision have none.
- `outcome_claimed_until`: a lease on posting the outcome; a process that dies holding it
  only delays the post until the lease lapses and a sweep in any process takes it over.
- `card_attempts`, `card_retry_at`: failed card updates back off and are finally given up,
  so a card Slack will not take never holds up the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('send_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('view_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('outcome_claimed_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('card_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('card_retry_at', sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint('uq_send_requests_view_id', ['view_id'])
        batch_op.create_index('ix_send_requests_created_at', ['created_at'])


def downgrade() -> None:
    with op.batch_alter_table('send_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_send_requests_created_at')
        batch_op.drop_constraint('uq_send_requests_view_id', type_='unique')
        for column in ('card_retry_at', 'card_attempts', 'outcome_claimed_until', 'view_id'):
            batch_op.drop_column(column)
