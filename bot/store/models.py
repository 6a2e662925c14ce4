"""Tables. Alembic migrations in `migrations/` are the only way they are created."""

from __future__ import annotations

import enum
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.quiet_hours import QuietHours, format_time, parse_time
from bot.store.engine import utcnow

ALL_SENDER_CODES = "*"


class Base(DeclarativeBase):
    pass


class Role(enum.StrEnum):
    REQUESTER = "requester"
    APPROVER = "approver"
    ADMIN = "admin"


class State(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SCHEDULED = "scheduled"  # approved, waiting for its `send_at` (migration 0010)


OPEN_STATES = (State.PENDING, State.SENDING)


def _stored_as_value(enum_class: type[enum.StrEnum]) -> Enum:
    """An enum kept as its lowercase value in a VARCHAR(16), as the migrations made it.

    No CHECK constraint and no native database enum, so the schema is what migrations
    0001-0004 created; reading a value the enum does not know raises rather than passing
    a bare string on.
    """
    return Enum(enum_class, native_enum=False, create_constraint=False, length=16, validate_strings=True,
                values_callable=lambda members: [member.value for member in members])


class ClockTime(TypeDecorator[time]):
    """A time of day, kept as the "HH:MM" text migration 0002 made the quiet-hours columns for."""

    impl = String(5)
    cache_ok = True

    def process_bind_param(self, value: time | None, dialect: Dialect) -> str | None:
        return None if value is None else format_time(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> time | None:
        return None if value is None else parse_time(value)


class QuietHoursText(TypeDecorator[QuietHours]):
    """Quiet hours with their zone, kept as the text migration 0003 stores: "21:00-08:00 America/New_York"."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: QuietHours | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> QuietHours | None:
        return None if value is None else QuietHours.from_text(value)


class Grant(Base):
    """A user's role, for one sender code or for all of them (`*`)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("user_id", "role", "sender_code", name="uq_grants_user_role_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[Role] = mapped_column(_stored_as_value(Role))
    sender_code: Mapped[str] = mapped_column(String(32), default=ALL_SENDER_CODES)
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class SenderCode(Base):
    """Per-sender-code rules. A code with no row gets the defaults below."""

    __tablename__ = "sender_codes"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    allow_self_approval: Mapped[bool] = mapped_column(default=False)
    # The SMS groups (WhatCounts groupName) that may be chosen; assign a new list to change it.
    groups: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    daily_cap: Mapped[int | None] = mapped_column(Integer)  # None: no cap
    # Quiet hours: from quiet_start to quiet_end in `timezone`; SenderCodeRules.from_row makes them one value.
    quiet_start: Mapped[time | None] = mapped_column(ClockTime())
    quiet_end: Mapped[time | None] = mapped_column(ClockTime())
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA name, of the quiet hours and the day; None: UTC
    # Slack channel IDs where this code may be requested; empty: any channel.
    channels: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # Migration 0009. The Slack user group a card asks to approve (None: the code's approvers, by name),
    # and the approvals a send to All contacts needs (None: `approvals_required`, as for a group).
    approvers_group: Mapped[str | None] = mapped_column(String(32))
    approvals_all_contacts: Mapped[int | None] = mapped_column(Integer)


class PolicyVersion(Base):
    """One row (id 1) whose number database triggers move whenever `grants` or `sender_codes` change."""

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class SendRequest(Base):
    """One requested send and its life cycle. Fields sent to WhatCounts never change."""

    __tablename__ = "send_requests"
    __table_args__ = (
        Index("ix_send_requests_state_expires", "state", "expires_at"),
        Index("ix_send_requests_card_sync", "card_version", "version"),
        Index("ix_send_requests_created_at", "created_at"),
        Index("uq_send_requests_view_id", "view_id", unique=True),
        Index("ix_send_requests_state_send_at", "state", "send_at"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[State] = mapped_column(_stored_as_value(State), default=State.PENDING)
    requester_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str] = mapped_column(String(32), default="")
    channel_id: Mapped[str] = mapped_column(String(32))
    card_ts: Mapped[str] = mapped_column(String(32))
    message_name: Mapped[str] = mapped_column(String(255))
    sender_code: Mapped[str] = mapped_column(String(32))
    campaign_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    group_name: Mapped[str | None] = mapped_column(String(255))
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    allow_self_approval: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Set with the SENDING state: past it, a request still SENDING lost its process.
    sending_deadline: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Who rejected, cancelled or sent it, and why it stopped, for the card.
    closed_by: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    whatcounts_id: Mapped[str | None] = mapped_column(String(64))
    whatcounts_status: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_text: Mapped[str | None] = mapped_column(Text)
    # What the approvers were shown, fixed when the request was made (migration 0003).
    message_text: Mapped[str | None] = mapped_column(Text)  # None: WhatCounts could not be asked
    message_verified: Mapped[bool] = mapped_column(default=False)
    sender_label: Mapped[str] = mapped_column(String(100), default="")
    quiet_hours: Mapped[QuietHours | None] = mapped_column(QuietHoursText())  # the code's, when requested
    quiet_override: Mapped[str | None] = mapped_column(Text)  # an admin's reason to send inside them
    dry_run: Mapped[bool] = mapped_column(default=False)
    # `version` moves with every change; the card shows `card_version`. A sweep
    # re-renders cards that lag behind, so a failed card update is retried, not lost.
    version: Mapped[int] = mapped_column(Integer, default=1)
    card_version: Mapped[int] = mapped_column(Integer, default=1)
    outcome_posted: Mapped[bool] = mapped_column(default=False)
    # Migration 0005. The Slack modal the request was submitted from: one request per form.
    view_id: Mapped[str | None] = mapped_column(String(64))
    # A lease on posting the outcome: held by the process posting it; lapsed, any sweep may post.
    outcome_claimed_until: Mapped[datetime | None]
    # Failed card updates since the card last showed its state, and when to try again.
    card_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    card_retry_at: Mapped[datetime | None]
    # Migration 0007. The one reminder before expiry: when it was posted, and a lease on posting it.
    reminded_at: Mapped[datetime | None]
    reminder_claimed_until: Mapped[datetime | None]
    # Migration 0010. When to send once approved; None: as soon as it is approved.
    send_at: Mapped[datetime | None]


class Approval(Base):
    __tablename__ = "approvals"

    request_id: Mapped[str] = mapped_column(ForeignKey("send_requests.id"), primary_key=True)
    approver_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)  # the approver's optional words with the approval


class AuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(16), index=True)
    sender_code: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TestPhone(Base):
    """A person's own phone for test sends (migration 0011), registered by an admin of every sender code."""

    __tablename__ = "test_phones"
    __test__ = False  # not a pytest test class, whatever its name

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    phone: Mapped[str] = mapped_column(String(16))  # E.164, e.g. +15551234567
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class TestSendOutcome(enum.StrEnum):
    SENDING = "sending"  # claimed; WhatCounts is being asked (stays so if the process died meanwhile)
    SENT = "sent"
    REFUSED = "refused"  # WhatCounts answered with its own error
    NOT_SENT = "not_sent"  # certainly never reached WhatCounts: does not count against the limits
    UNKNOWN = "unknown"
    DRY_RUN = "dry_run"


class TestSend(Base):
    """One click on "Send test to my phone" that passed the checks (migration 0011): the limits count these.

    `click` is the click's own id (Slack's `action_ts`): a repeat of one click is one row.
    """

    __tablename__ = "test_sends"
    __test__ = False
    __table_args__ = (
        UniqueConstraint("request_id", "user_id", "click", name="uq_test_sends_click"),
        Index("ix_test_sends_user_at", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("send_requests.id"))
    user_id: Mapped[str] = mapped_column(String(32))
    click: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    outcome: Mapped[TestSendOutcome] = mapped_column(_stored_as_value(TestSendOutcome))
