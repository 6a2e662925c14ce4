"""an approval's note: the approver's optional words, shown on the card and in the thread

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 06:20:00

A reject's reason needs no column: it is the request's `reason`, like every other ending's.
Approvals given before this revision have no note.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (see 0005): a nullable column needs no batch rebuild on SQLite.


def upgrade() -> None:
    op.add_column('approvals', sa.Column('note', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('approvals', 'note')
