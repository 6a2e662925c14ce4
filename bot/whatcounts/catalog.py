"""The WhatCounts SMS messages, cached briefly: a type-ahead for the form, a check before a send.

Both run inside Slack's 3 s deadlines, and listing the messages may take WhatCounts several
seconds, so no caller ever waits on WhatCounts longer than the `wait` it passes: the listing
is fetched on a background thread, and a fetch that outlasts the wait carries on and fills
the cache for later calls.

`get` tells three answers apart: the message (found), None (WhatCounts answered and has
no message of that name) and `Unverifiable` (WhatCounts could not be asked in time). A miss
is only reported after a fresh list, so a message created a moment ago is not "not found".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.whatcounts.client import SmsMessage

log = logging.getLogger(__name__)


class MessageSource(Protocol):
    def list_messages(self) -> list[SmsMessage] | None: ...


@dataclass(frozen=True)
class Unverifiable:
    """WhatCounts could not be asked, so whether the message exists is not known."""

    reason: str


@dataclass(frozen=True)
class MessageSearch:
    """What a type-ahead shows. `listed` is False when there is no listing at all to answer
    from (WhatCounts never answered, or not in time), so the typed text may be offered as an
    unverified choice; results from an older listing still count as listed."""

    messages: list[SmsMessage]
    listed: bool


class MessageCatalog:
    """Thread-safe. One WhatCounts listing at a time, on a background thread; callers share it.

    `ttl_seconds`: how long a listing is used before it is fetched again.
    `retry_seconds`: after a failed listing, how long to answer from what is known
    (or Unverifiable) before asking WhatCounts again, so a type-ahead does not ask
    a WhatCounts that is down at every keystroke.
    `recheck_seconds`: a miss in `get` fetches again if the listing is older than this.
    `clock` measures those ages; the waits are real time.
    """

    def __init__(self, client: MessageSource, ttl_seconds: float = 60.0, *, retry_seconds: float = 10.0,
                 recheck_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below; never held while WhatCounts is asked
        self._messages: dict[str, SmsMessage] | None = None  # by name, as last listed
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._fetching: threading.Event | None = None  # set when the running fetch ends; None if none runs

    def _refresh(self, max_age: float, wait: float) -> bool:
        """Make the listing at most `max_age` old if WhatCounts answers within `wait` seconds.

        Starts a fetch unless one is running or WhatCounts failed less than `retry_seconds`
        ago; False if the listing is not that young when the wait ends.
        """
        with self._lock:
            if self._is_fresh(max_age):
                return True
            if self._fetching is None:
                if self._failed_at is not None and self._clock() - self._failed_at < self._retry:
                    return False
                self._fetching = threading.Event()
                threading.Thread(target=self._fetch, args=(self._fetching,), name="whatcounts-messages",
                                 daemon=True).start()
            fetching = self._fetching
        fetching.wait(max(0.0, wait))
        with self._lock:
            return self._is_fresh(max_age)

    def _is_fresh(self, max_age: float) -> bool:
        return self._messages is not None and self._clock() - self._fetched_at <= max_age

    def _fetch(self, done: threading.Event) -> None:
        try:
            listed = self._client.list_messages()
        except Exception:
            log.exception("listing the SMS messages in WhatCounts raised")
            listed = None
        with self._lock:
            if listed is None:
                log.warning("could not list the SMS messages in WhatCounts")
                self._failed_at = self._clock()
            else:
                self._messages = {m.name: m for m in listed}
                self._fetched_at, self._failed_at = self._clock(), None
            self._fetching = None
        done.set()

    def _snapshot(self) -> dict[str, SmsMessage] | None:
        with self._lock:
            return self._messages

    def warm(self) -> None:
        """Start fetching a listing older than the TTL, without waiting (when the form opens)."""
        self._refresh(self._ttl, wait=0.0)

    def search(self, query: str, limit: int = 100, wait: float = 1.5) -> MessageSearch:
        """Messages whose name contains `query` (any case): names starting with it first, then A-Z.

        Waits at most `wait` seconds for a listing older than the TTL to be fetched again;
        answers from the last listing, however old, when WhatCounts cannot be reached in time.
        """
        self._refresh(self._ttl, wait)
        messages = self._snapshot()
        if messages is None:
            return MessageSearch([], listed=False)
        needle = query.strip().casefold()
        found = [m for m in messages.values() if needle in m.name.casefold()]
        found.sort(key=lambda m: (not m.name.casefold().startswith(needle), m.name.casefold(), m.name))
        return MessageSearch(found[:limit], listed=True)

    def get(self, name: str, wait: float = 1.0) -> SmsMessage | Unverifiable | None:
        """The message named exactly `name` (WhatCounts names are case-sensitive), within `wait` seconds."""
        deadline = time.monotonic() + wait
        fresh = self._refresh(self._ttl, wait)
        messages = self._snapshot()
        if messages is not None and name in messages:
            return messages[name]
        if fresh and self._refresh(self._recheck, deadline - time.monotonic()):
            messages = self._snapshot()
            assert messages is not None
            return messages.get(name)
        return Unverifiable("WhatCounts could not be reached in time to check the message name")
