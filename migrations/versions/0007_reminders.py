"""a reminder before a request expires: posted once, leased while it is being posted

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 06:45:00

- `reminded_at`: when the one reminder was posted in the card's thread (none yet: NULL).
- `reminder_claimed_until`: a lease on posting it, as for outcomes (0005): a process that
  dies holding it delays the reminder until the lease lapses, never posts it twice.
Requests made before this revision have not been reminded; a sweep reminds those still pending.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (see 0005): nullable columns need no batch rebuild on SQLite.


def upgrade() -> None:
    op.add_column('send_requests', sa.Column('reminded_at', sa.DateTime(), nullable=True))
    op.add_column('send_requests', sa.Column('reminder_claimed_until', sa.DateTime(), nullable=True))


def downgrade() -> None:
    for column in ('reminder_claimed_until', 'reminded_at'):
        op.drop_column('send_requests', column)
