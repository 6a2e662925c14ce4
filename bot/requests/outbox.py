"""What Slack still has to be shown: cards behind their request's state, outcomes not yet posted.

A card update or a thread post that fails is not lost: the request's `version` runs ahead of
its `card_version`, or its outcome stays unposted, until a sweep in any process catches up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.requests.lifecycle import TERMINAL_WITH_OUTCOME
from bot.requests.reading import RequestView, read_view
from bot.store.models import SendRequest


@dataclass
class Outbox:
    sessions: sessionmaker[Session]

    def cards_behind(self, limit: int = 50) -> list[RequestView]:
        """Requests whose card does not yet show their latest state (a card update failed)."""
        with self.sessions() as session:
            ids = list(session.scalars(select(SendRequest.id).where(SendRequest.card_version < SendRequest.version)
                                       .limit(limit)))
            return [v for i in ids if (v := read_view(session, i)) is not None]

    def outcomes_unposted(self, limit: int = 50) -> list[RequestView]:
        with self.sessions() as session:
            ids = list(session.scalars(select(SendRequest.id).where(
                SendRequest.state.in_(TERMINAL_WITH_OUTCOME), SendRequest.outcome_posted.is_(False)).limit(limit)))
            return [v for i in ids if (v := read_view(session, i)) is not None]

    def card_shown(self, request_id: str, version: int) -> None:
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id,
                                                      SendRequest.card_version < version)
                            .values(card_version=version))

    def claim_outcome_post(self, request_id: str) -> bool:
        """True for the one caller that should post this outcome to the thread."""
        with self.sessions.begin() as session:
            return session.execute(update(SendRequest).where(
                SendRequest.id == request_id, SendRequest.outcome_posted.is_(False),
                SendRequest.state.in_(TERMINAL_WITH_OUTCOME)).values(outcome_posted=True)).rowcount == 1

    def release_outcome_post(self, request_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(update(SendRequest).where(SendRequest.id == request_id).values(outcome_posted=False))
