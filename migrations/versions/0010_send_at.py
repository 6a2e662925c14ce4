"""send at a time: an approved request waits as `scheduled` until its `send_at`

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 07:30:00

- `send_at`: when to send once approved (naive UTC, like every time the bot stores); NULL,
  as for every request made before this revision: as soon as it is approved.
- `ix_send_requests_state_send_at`: the sweep looks for `state = 'scheduled' AND send_at <= now`.
The new state is stored as its word, `scheduled`, in the existing VARCHAR(16) `state`.

Downgrading: a revision before this one knows no `scheduled` state, so requests still waiting
for their time end as failed, with a reason, and are left for that version to tell people.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_SENT_DOWNGRADE = ("Not sent: the bot was moved to a version without scheduled sends before this "
                      "request's time came. Request it again if it is still wanted.")


def upgrade() -> None:
    op.add_column('send_requests', sa.Column('send_at', sa.DateTime(), nullable=True))
    op.create_index('ix_send_requests_state_send_at', 'send_requests', ['state', 'send_at'])


def downgrade() -> None:
    requests = sa.table('send_requests', sa.column('state', sa.String()), sa.column('reason', sa.Text()),
                        sa.column('outcome_posted', sa.Boolean()), sa.column('finished_at', sa.DateTime()),
                        sa.column('version', sa.Integer()))
    # Naive UTC, as the bot stores it (bot.store.engine.database_utcnow, which migrations do not import).
    postgres = op.get_bind().dialect.name == 'postgresql'
    now = sa.text("(now() AT TIME ZONE 'UTC')" if postgres else "strftime('%Y-%m-%d %H:%M:%f000', 'now')")
    op.execute(requests.update().where(requests.c.state == 'scheduled').values(
        state='failed', reason=NOT_SENT_DOWNGRADE, outcome_posted=False, finished_at=now,
        version=requests.c.version + 1))
    op.drop_index('ix_send_requests_state_send_at', table_name='send_requests')
    op.drop_column('send_requests', 'send_at')
