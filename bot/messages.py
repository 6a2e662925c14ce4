"""The WhatCounts SMS messages, cached briefly: a type-ahead for the form, a check before a send.

`get` tells three answers apart: the message (found), None (WhatCounts answered and has
no message of that name) and `Unverifiable` (WhatCounts could not be asked). A miss is
only reported after a fresh list, so a message created a moment ago is not "not found".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.whatcounts import SmsMessage

log = logging.getLogger(__name__)


class MessageSource(Protocol):
    def list_messages(self) -> list[SmsMessage] | None: ...


@dataclass(frozen=True)
class Unverifiable:
    """WhatCounts could not be asked, so whether the message exists is not known."""

    reason: str


class MessageCatalog:
    """Thread-safe. One WhatCounts listing at a time; other threads wait for it and share it.

    `ttl_seconds`: how long a listing is used before it is fetched again.
    `retry_seconds`: after a failed listing, how long to answer from what is known
    (or Unverifiable) before asking WhatCounts again, so a type-ahead does not wait on
    a WhatCounts that is down at every keystroke.
    `recheck_seconds`: a miss in `get` fetches again if the listing is older than this.
    """

    def __init__(self, client: MessageSource, ttl_seconds: float = 60.0, *, retry_seconds: float = 10.0,
                 recheck_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()  # held while fetching, so one fetch serves every waiting thread
        self._messages: dict[str, SmsMessage] | None = None  # by name, as last listed
        self._fetched_at = 0.0
        self._failed_at: float | None = None

    def _refresh(self, max_age: float) -> bool:
        """Make the listing at most `max_age` old if WhatCounts answers; False if it did not."""
        with self._lock:
            now = self._clock()
            if self._messages is not None and now - self._fetched_at <= max_age:
                return True
            if self._failed_at is not None and now - self._failed_at < self._retry:
                return False
            listed = self._client.list_messages()
            if listed is None:
                self._failed_at = self._clock()
                log.warning("could not list the SMS messages in WhatCounts")
                return False
            self._messages = {m.name: m for m in listed}
            self._fetched_at, self._failed_at = self._clock(), None
            return True

    def _snapshot(self) -> dict[str, SmsMessage] | None:
        with self._lock:
            return self._messages

    def search(self, query: str, limit: int = 100) -> list[SmsMessage]:
        """Messages whose name contains `query` (any case): names starting with it first, then A-Z.

        Answers from the last listing, however old, when WhatCounts cannot be reached; [] if
        there never was one.
        """
        self._refresh(self._ttl)
        messages = self._snapshot() or {}
        needle = query.strip().casefold()
        found = [m for m in messages.values() if needle in m.name.casefold()]
        found.sort(key=lambda m: (not m.name.casefold().startswith(needle), m.name.casefold(), m.name))
        return found[:limit]

    def get(self, name: str) -> SmsMessage | None | Unverifiable:
        """The message named exactly `name` (WhatCounts names are case-sensitive)."""
        fresh = self._refresh(self._ttl)
        messages = self._snapshot()
        if messages is not None and name in messages:
            return messages[name]
        if fresh and self._refresh(self._recheck):
            messages = self._snapshot()
            assert messages is not None
            return messages.get(name)
        return Unverifiable("WhatCounts could not be reached to check the message name")
