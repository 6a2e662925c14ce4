"""What Slack still has to be shown: cards behind their request's state, endings not yet posted.

A card update or a thread post that fails is not lost: the request's `version` runs ahead of
its `card_version`, or its outcome stays unposted, until a sweep in any process catches up.

Ending posts (an outcome, or a reject, cancel or expiry, told to the requester) are leased:
the poster claims the post until `outcome_claimed_until`, and marks it posted only once Slack
took it. A process that dies in between leaves a lease that lapses, after which a sweep in any
process posts it.

A card that fails to update backs off (`card_retry_at`, doubling up to a cap) and is given up
after `MAX_CARD_ATTEMPTS`, so one card Slack will not take never holds up the others; sweeps
take the oldest cards first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.requests.lifecycle import ENDINGS
from bot.requests.reading import RequestView, read_view
from bot.store.engine import database_now, rows_matched
from bot.store.models import SendRequest

log = logging.getLogger(__name__)

# Longer than any one post can take (the Slack client's timeout and its rate-limit retries),
# so a live poster is never doubled; a dead one delays its outcome by at most this much.
OUTCOME_LEASE = timedelta(minutes=2)
MAX_CARD_ATTEMPTS = 10
CARD_BACKOFF_FIRST = timedelta(seconds=5)
CARD_BACKOFF_MAX = timedelta(minutes=10)


def card_backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed update of one card (5 s, 10 s, 20 s … 10 min)."""
    factor: int = 2 ** max(attempts - 1, 0)
    return min(CARD_BACKOFF_FIRST * factor, CARD_BACKOFF_MAX)


@dataclass
class Outbox:
    sessions: sessionmaker[Session]
    # The time, asked of the database, so that leases and back-offs mean the same to every replica.
    clock: Callable[[Session], datetime] = field(default=database_now)

    def cards_behind(self, limit: int = 50) -> list[RequestView]:
        """Requests whose card does not yet show their latest state (a card update failed),
        oldest first, leaving out those backing off or given up."""
        with self.sessions() as session:
            now = self.clock(session)
            ids = list(session.scalars(
                select(SendRequest.id).where(
                    SendRequest.card_version < SendRequest.version,
                    SendRequest.card_attempts < MAX_CARD_ATTEMPTS,
                    or_(SendRequest.card_retry_at.is_(None), SendRequest.card_retry_at <= now))
                .order_by(SendRequest.created_at, SendRequest.id).limit(limit)))
            return [v for i in ids if (v := read_view(session, i)) is not None]

    def card_shown(self, request_id: str, version: int) -> None:
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id,
                                                      SendRequest.card_version < version)
                            .values(card_version=version, card_attempts=0, card_retry_at=None))

    def card_failed(self, request_id: str) -> bool:
        """Count a failed card update and put the next try off; False once the card is given up."""
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id)
                            .values(card_attempts=SendRequest.card_attempts + 1))
            attempts = session.scalar(select(SendRequest.card_attempts).where(SendRequest.id == request_id))
            if attempts is None:
                return False
            session.execute(update(SendRequest).where(SendRequest.id == request_id)
                            .values(card_retry_at=self.clock(session) + card_backoff(attempts)))
        if attempts >= MAX_CARD_ATTEMPTS:
            log.error("request %s: card update failed %d times; giving up on it (its state is in the database "
                      "and `sms-bot audit`)", request_id, attempts)
            return False
        return True

    def outcomes_unposted(self, limit: int = 50) -> list[RequestView]:
        """Endings not yet in the thread and not leased to a live poster, oldest first."""
        with self.sessions() as session:
            now = self.clock(session)
            ids = list(session.scalars(select(SendRequest.id).where(
                SendRequest.state.in_(ENDINGS), SendRequest.outcome_posted.is_(False),
                or_(SendRequest.outcome_claimed_until.is_(None), SendRequest.outcome_claimed_until <= now))
                .order_by(SendRequest.created_at, SendRequest.id).limit(limit)))
            return [v for i in ids if (v := read_view(session, i)) is not None]

    def claim_outcome_post(self, request_id: str, version: int) -> bool:
        """True for the one caller that should post this ending (the state seen at `version`) now."""
        with self.sessions.begin() as session:
            now = self.clock(session)
            return rows_matched(session, update(SendRequest).where(
                SendRequest.id == request_id, SendRequest.version == version,
                SendRequest.outcome_posted.is_(False), SendRequest.state.in_(ENDINGS),
                or_(SendRequest.outcome_claimed_until.is_(None), SendRequest.outcome_claimed_until <= now),
            ).values(outcome_claimed_until=now + OUTCOME_LEASE)) == 1

    def outcome_post_done(self, request_id: str, version: int) -> None:
        """Slack took the post. If the outcome changed meanwhile, the new one is left to post."""
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id, SendRequest.version == version)
                            .values(outcome_posted=True, outcome_claimed_until=None))
            session.execute(update(SendRequest).where(SendRequest.id == request_id, SendRequest.version != version)
                            .values(outcome_claimed_until=None))

    def release_outcome_post(self, request_id: str) -> None:
        """The post failed: the next sweep tries again."""
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id)
                            .values(outcome_claimed_until=None))
