"""The append-only audit trail: every decision, who made it, and when."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.store.engine import database_utcnow
from bot.store.models import AuditEvent

log = logging.getLogger(__name__)

EVENTS = frozenset({
    "requested", "approved", "rejected", "cancelled", "expired", "sending", "sent",
    "failed", "unknown", "resolved", "late_outcome", "late_outcome_conflict", "grant", "revoke", "sender_code",
    "quiet_override", "refused", "withdrawn", "scheduled", "test_phone", "test_send",
})
MAX_DETAIL = 500  # characters of a typed command kept with a refusal


def record(session: Session, event: str, actor_id: str, *, request_id: str | None = None,
           sender_code: str | None = None, **details: Any) -> None:
    """Add one event to the caller's transaction, so it commits or rolls back with the change."""
    assert event in EVENTS, event
    session.add(AuditEvent(at=database_utcnow(), event=event, actor_id=actor_id, request_id=request_id,
                           sender_code=sender_code, details=details))


def record_refusal(sessions: sessionmaker[Session], actor_id: str, action: str, reason: str, *,
                   request_id: str | None = None, sender_code: str | None = None, **details: str) -> None:
    """Keep a refused attempt: an audit row in a transaction of its own, and nothing else.

    Called after the refused action's own transaction has ended, so whatever that did is
    rolled back or committed on its own terms. If the row cannot be written, the refusal
    still stands and is told; the failure is logged (without the details).
    """
    clipped = {key: value[:MAX_DETAIL] for key, value in details.items()}
    try:
        with sessions.begin() as session:
            record(session, "refused", actor_id, request_id=request_id, sender_code=sender_code,
                   action=action, reason=reason, **clipped)
    except SQLAlchemyError as exc:
        log.error("refusal of %s by %s not recorded in the audit trail: %s", action, actor_id, type(exc).__name__)


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    user_id: str | None = None
    sender_code: str | None = None
    request_id: str | None = None


def query(session: Session, where: AuditFilter) -> Iterator[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if where.since:
        stmt = stmt.where(AuditEvent.at >= where.since)
    if where.until:
        stmt = stmt.where(AuditEvent.at < where.until)
    if where.user_id:
        stmt = stmt.where(AuditEvent.actor_id == where.user_id)
    if where.sender_code:
        stmt = stmt.where(AuditEvent.sender_code == where.sender_code)
    if where.request_id:
        stmt = stmt.where(AuditEvent.request_id == where.request_id)
    yield from session.scalars(stmt.execution_options(yield_per=1000))


COLUMNS = ("id", "at", "event", "actor_id", "request_id", "sender_code", "details")


def _row(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.at.isoformat(timespec="seconds") + "Z", "event": event.event,
            "actor_id": event.actor_id, "request_id": event.request_id,
            "sender_code": event.sender_code, "details": event.details}


def to_jsonl(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(_row(event), ensure_ascii=False, sort_keys=True) + "\n"


def to_csv(events: Iterable[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for event in events:
        row = _row(event)
        row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _table_line(at: str, event: str, actor: str, request: str, code: str, details: str) -> str:
    return f"{at:<20}  {event:<9}  {actor:<12}  {request:<12}  {code:<12}  {details}\n"


def to_table(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Aligned columns under a header; the details as JSON, as in the CSV and JSON Lines exports."""
    header = False
    for event in events:
        if not header:
            yield _table_line("AT (UTC)", "EVENT", "BY", "REQUEST", "SENDER CODE", "DETAILS")
            header = True
        row = _row(event)
        details = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        yield _table_line(row["at"], row["event"], row["actor_id"], row["request_id"] or "-",
                          row["sender_code"] or "-", details)
