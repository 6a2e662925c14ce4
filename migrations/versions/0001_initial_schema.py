"""initial schema: grants, sender codes, send requests, approvals, audit

Revision ID: 0001
Revises:
Create Date: 2026-11-24 14:22:39.405322
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=16), nullable=True),
    sa.Column('sender_code', sa.String(length=32), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_request_id'), ['request_id'], unique=False)

    op.create_table('grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('sender_code', sa.String(length=32), nullable=False),
    sa.Column('granted_by', sa.String(length=64), nullable=False),
    sa.Column('granted_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'role', 'sender_code', name='uq_grants_user_role_code')
    )
    op.create_table('send_requests',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requester_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('card_ts', sa.String(length=32), nullable=False),
    sa.Column('message_name', sa.String(length=255), nullable=False),
    sa.Column('sender_code', sa.String(length=32), nullable=False),
    sa.Column('campaign_name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('group_name', sa.String(length=255), nullable=True),
    sa.Column('approvals_required', sa.Integer(), nullable=False),
    sa.Column('allow_self_approval', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('sending_deadline', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('closed_by', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('whatcounts_id', sa.String(length=64), nullable=True),
    sa.Column('whatcounts_status', sa.String(length=64), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error_text', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('card_version', sa.Integer(), nullable=False),
    sa.Column('outcome_posted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('send_requests', schema=None) as batch_op:
        batch_op.create_index('ix_send_requests_card_sync', ['card_version', 'version'], unique=False)
        batch_op.create_index('ix_send_requests_state_expires', ['state', 'expires_at'], unique=False)

    op.create_table('sender_codes',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('approvals_required', sa.Integer(), nullable=False),
    sa.Column('allow_self_approval', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('approvals',
    sa.Column('request_id', sa.String(length=16), nullable=False),
    sa.Column('approver_id', sa.String(length=32), nullable=False),
    sa.Column('approved_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['send_requests.id'], ),
    sa.PrimaryKeyConstraint('request_id', 'approver_id')
    )


def downgrade() -> None:
    op.drop_table('approvals')
    op.drop_table('sender_codes')
    with op.batch_alter_table('send_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_send_requests_state_expires')
        batch_op.drop_index('ix_send_requests_card_sync')

    op.drop_table('send_requests')
    op.drop_table('grants')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_request_id'))
        batch_op.drop_index('ix_audit_events_at')

    op.drop_table('audit_events')
