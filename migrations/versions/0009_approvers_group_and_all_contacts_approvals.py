"""approvers group and All-contacts approvals: two per-sender-code settings (#12, #13)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 07:30:00

- `sender_codes.approvers_group`: the Slack user group (S…) a request's card mentions as who is
  asked to approve; NULL: the card names the code's approvers instead.
- `sender_codes.approvals_all_contacts`: how many approvals a send to All contacts needs, at least
  `approvals_required`; NULL: the same number as a send to a group.

Both nullable, so every code keeps behaving as before. Plain ALTER TABLE, not a batch rebuild: on
SQLite a rebuild of `sender_codes` would drop the policy_version triggers of migration 0004.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('sender_codes', sa.Column('approvers_group', sa.String(length=32), nullable=True))
    op.add_column('sender_codes', sa.Column('approvals_all_contacts', sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in ('approvals_all_contacts', 'approvers_group'):
        op.drop_column('sender_codes', column)
