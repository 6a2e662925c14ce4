"""A thread pool for everything that happens after an acknowledgement.

Kept apart from Bolt's listener pool, so slow WhatCounts calls or Slack rate limits can
never hold up the acknowledgement of the next click. Its threads are joined at exit, so a
send in flight is finished and recorded before the process ends.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class InFlight:
    """Counts tasks submitted and not yet finished, so that a caller can wait until none is left."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def track(self, future: Future[Any]) -> None:
        with self._changed:
            self._count += 1
        future.add_done_callback(self._done)

    def _done(self, _future: Future[Any]) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is in flight; False if something still was after `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


class BackgroundWork:
    def __init__(self, max_workers: int = 16, name: str = "sms-bot-work") -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self.in_flight = InFlight()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._pool.submit(fn, *args)
        future.add_done_callback(_log_failure)
        self.in_flight.track(future)
        return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class RequestScopedWork(BackgroundWork):
    """Background work that runs in the context (and so the request id) of the Slack request that caused it."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return super().submit(contextvars.copy_context().run, fn, *args)


def _log_failure(future: Future[Any]) -> None:
    if (exc := future.exception()) is not None:
        log.error("background work failed", exc_info=exc)
