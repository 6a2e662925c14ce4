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


# Plain ALTER TABLE, no batch rebuild: SQLite cannot drop `send_requests` while `approvals`
# refers to it (foreign keys are on), and adding nullable or defaulted columns needs no rebuild.
# The view id's uniqueness is a unique index, which SQLite can add to an existing table.


def upgrade() -> None:
    op.add_column('send_requests', sa.Column('view_id', sa.String(length=64), nullable=True))
    op.add_column('send_requests', sa.Column('outcome_claimed_until', sa.DateTime(), nullable=True))
    op.add_column('send_requests', sa.Column('card_attempts', sa.Integer(), server_default='0', nullable=False))
    op.add_column('send_requests', sa.Column('card_retry_at', sa.DateTime(), nullable=True))
    op.create_index('uq_send_requests_view_id', 'send_requests', ['view_id'], unique=True)
    op.create_index('ix_send_requests_created_at', 'send_requests', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_send_requests_created_at', 'send_requests')
    op.drop_index('uq_send_requests_view_id', 'send_requests')
    for column in ('card_retry_at', 'card_attempts', 'outcome_claimed_until', 'view_id'):
        op.drop_column('send_requests', column)
