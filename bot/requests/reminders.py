"""One reminder per pending request, in its thread, before it expires; exactly once across replicas.

A request is due for its reminder once `fraction` of its time to live has passed. Posting is
leased like an outcome post (see `Outbox`): the poster claims the reminder with a conditional
UPDATE until `reminder_claimed_until` and marks it done (`reminded_at`) only once Slack took it.
A failed post releases the claim, so a later sweep tries again; a process that dies holding it
leaves a lease that lapses. Two sweeps never both win the claim, so nobody is reminded twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.requests.reading import RequestView, read_view
from bot.store.engine import database_now, rows_matched
from bot.store.models import SendRequest, State

# As for outcomes: longer than any one post can take, so a live poster is never doubled.
REMINDER_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Reminder:
    """A request due for its reminder, and the approvers who have not yet decided on it."""

    view: RequestView
    undecided: tuple[str, ...]


@dataclass
class Reminders:
    sessions: sessionmaker[Session]
    fraction: float  # of the time to live after which to remind; 0: never
    clock: Callable[[Session], datetime] = field(default=database_now)

    def due(self, limit: int = 50) -> list[Reminder]:
        """Pending requests past `fraction` of their time to live, not yet reminded nor leased, oldest first."""
        if not self.fraction:
            return []
        with self.sessions() as session:
            now = self.clock(session)
            rows = session.execute(select(SendRequest.id, SendRequest.created_at, SendRequest.expires_at).where(
                SendRequest.state == State.PENDING, SendRequest.reminded_at.is_(None), SendRequest.expires_at > now,
                or_(SendRequest.reminder_claimed_until.is_(None), SendRequest.reminder_claimed_until <= now))
                .order_by(SendRequest.created_at, SendRequest.id)).all()
            due = [i for i, created, expires in rows if now >= created + (expires - created) * self.fraction]
            return [reminder for i in due[:limit] if (reminder := self._reminder(session, i)) is not None]

    def _reminder(self, session: Session, request_id: str) -> Reminder | None:
        view = read_view(session, request_id)
        if view is None:
            return None
        asked = view.asked.approvers if view.asked else ()  # a pending request's view has them
        return Reminder(view, tuple(a for a in asked if a not in view.approvers))

    def claim(self, request_id: str) -> bool:
        """True for the one caller that should post this request's reminder now."""
        with self.sessions.begin() as session:
            now = self.clock(session)
            return rows_matched(session, update(SendRequest).where(
                SendRequest.id == request_id, SendRequest.state == State.PENDING, SendRequest.reminded_at.is_(None),
                SendRequest.expires_at > now,
                or_(SendRequest.reminder_claimed_until.is_(None), SendRequest.reminder_claimed_until <= now),
            ).values(reminder_claimed_until=now + REMINDER_LEASE)) == 1

    def done(self, request_id: str) -> None:
        """Slack took the reminder: never again for this request."""
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id)
                            .values(reminded_at=self.clock(session), reminder_claimed_until=None))

    def release(self, request_id: str) -> None:
        """The post failed: a later sweep tries again."""
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id, SendRequest.reminded_at.is_(None))
                            .values(reminder_claimed_until=None))
