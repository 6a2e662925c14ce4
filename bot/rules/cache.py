"""The grants and registered sender codes, kept in memory for the request form.

Opening the form is what every `/sms-send` does, and reading grants and sender codes from the database
for it cost more CPU than the rest of the command (docs/benchmarks.md). The form only
offers choices: a request is checked against the database again when it is submitted and
when it is approved, so a form drawn from rules a moment old can never send anything
the database does not allow.

Triggers (migration 0004) move `policy_version` whenever `grants` or `sender_codes`
change, whoever changes them. The cache reads that number at most every `max_age` seconds
and reloads when it has moved; `max_age` 0 reads it on every use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.rules import grants
from bot.rules.sender_codes import SenderCodeRules, list_sender_codes
from bot.store.models import PolicyVersion, Role


@dataclass(frozen=True)
class RulesSnapshot:
    version: int
    roles: Mapping[str, Mapping[Role, frozenset[str]]]  # user -> role -> scopes (see grants.covers)
    codes: tuple[SenderCodeRules, ...]  # the registered sender codes, by code

    def codes_by_role(self, user_id: str) -> Mapping[Role, frozenset[str]]:
        return self.roles.get(user_id, {})

    def holders(self, role: Role) -> list[str]:
        return sorted(user for user, held in self.roles.items() if role in held)


def _version(session: Session) -> int:
    return session.scalar(select(PolicyVersion.version).where(PolicyVersion.id == 1)) or 0


def load(session: Session) -> RulesSnapshot:
    # The number first: a change committed while the tables are read moves it past the
    # number kept here, so the next check reloads rather than missing that change.
    version = _version(session)
    roles = {user: {role: frozenset(codes) for role, codes in held.items()}
             for user, held in grants.grants_by_user(session).items()}
    codes = tuple(SenderCodeRules.from_row(row) for row in list_sender_codes(session))
    return RulesSnapshot(version, roles, codes)


class RulesCache:
    def __init__(self, sessions: sessionmaker[Session], max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: RulesSnapshot | None = None
        self._checked = float("-inf")

    def current(self) -> RulesSnapshot:
        """The grants and sender codes as of at most `max_age` seconds ago (or since the last `invalidate()`)."""
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - self._checked < self._max_age:
            return snapshot
        # With a snapshot to answer from, threads do not queue behind the one checking; with
        # max_age 0 (or none yet) each waits and checks for itself.
        if not self._lock.acquire(blocking=snapshot is None or self._max_age == 0):
            assert snapshot is not None
            return snapshot
        try:
            if self._snapshot is not None and self._clock() - self._checked < self._max_age:
                return self._snapshot  # another thread checked while this one waited
            checked = self._clock()
            with self._sessions() as session:
                if self._snapshot is None or _version(session) != self._snapshot.version:
                    self._snapshot = load(session)
            self._checked = checked
            return self._snapshot
        finally:
            self._lock.release()

    def fresh(self) -> bool:
        """Whether `current()` would answer from memory now, without asking the database."""
        return self._snapshot is not None and self._clock() - self._checked < self._max_age

    def invalidate(self) -> None:
        """Check the database at the next use: this process has just changed grants or sender codes."""
        self._checked = float("-inf")
