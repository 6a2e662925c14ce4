"""endings told: rejects, cancels and expiries are now posted to the requester like outcomes

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 06:45:00

No column changes: `outcome_posted` now also covers requests rejected, cancelled or expired.
Those that ended before this revision were told as they were then (a reject's or withdraw's
reply, or nothing), so they count as posted: the first sweep after the upgrade must not tell
every requester of the past again. Downgrading changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    requests = sa.table('send_requests', sa.column('state', sa.String()), sa.column('outcome_posted', sa.Boolean()))
    op.execute(requests.update().where(requests.c.state.in_(('rejected', 'cancelled', 'expired')))
               .values(outcome_posted=True))


def downgrade() -> None:
    pass
