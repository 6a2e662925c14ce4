"""A database that cannot be reached still gets every Slack request a plain answer, inside Slack's 3 s.

The engine bounds every wait for the database (bot.store.engine), so a listener that needs
it fails fast with an OperationalError or a pool TimeoutError; this turns that into a sentence
for the person instead of Slack's generic error, and the bot recovers by itself once the
database answers again (the pool replaces dead connections).

The engine's bounds are per statement, and an answer may need several statements: a database
that answers each in half a second would hold it past 3 s. So what a listener reads before
acknowledging runs through `in_time`, which gives up waiting after a budget for the whole of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from slack_bolt import App, BoltResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bot.ops.work import BackgroundWork

T = TypeVar("T")

log = logging.getLogger(__name__)

DATABASE_DOWN = ("The SMS bot cannot reach its database right now, so nothing was done. "
                 "Please try again in a few minutes; if it keeps happening, tell the bot's operator.")
# Seconds the database may take, in all, before a Slack request is answered: Slack's 3 s also
# cover the network both ways, Bolt, and building the answer.
ACK_BUDGET = 2.5


class TooSlow(Exception):
    """The database did not answer within an acknowledgement's budget (the work goes on unwatched)."""


DATABASE_ERRORS = (OperationalError, PoolTimeoutError, TooSlow)
JSON: dict[str, str | Sequence[str]] = {"content-type": "application/json;charset=utf-8"}


def in_time(reads: BackgroundWork, budget: float, read: Callable[[], T]) -> T:
    """`read()` on the `reads` pool, waited for at most `budget` seconds; past it, TooSlow.

    Only for reads: what was asked is not stopped, so a write given up on might still be made.
    """
    answer: list[T] = []

    def attempt() -> Exception | None:
        try:
            answer.append(read())
        except Exception as exc:  # raised again in the listener, whose error handler answers Slack
            return exc
        return None

    try:
        error = reads.submit(attempt).result(timeout=max(0.0, budget))
    except FutureTimeout:
        raise TooSlow(f"no answer within {budget:.1f} s") from None
    if error is not None:
        raise error
    return answer[0]


def is_database_down(error: BaseException) -> bool:
    return isinstance(error, DATABASE_ERRORS)


def _answer(body: dict[str, Any]) -> BoltResponse:
    """What the person sees: an inline form error, an empty type-ahead, or an ephemeral reply."""
    if body.get("type") == "view_submission":
        blocks = (body.get("view") or {}).get("blocks") or []
        inputs = [b["block_id"] for b in blocks if b.get("type") == "input" and b.get("block_id")]
        if inputs:
            return BoltResponse(status=200, headers=JSON, body=json.dumps(
                {"response_action": "errors", "errors": {inputs[0]: DATABASE_DOWN}}))
    if body.get("type") == "block_suggestion":
        return BoltResponse(status=200, headers=JSON, body=json.dumps({"options": []}))
    return BoltResponse(status=200, headers=JSON, body=json.dumps({"response_type": "ephemeral",
                                                                   "text": DATABASE_DOWN}))


def register(app: App) -> None:
    @app.error
    def on_listener_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
        """A listener raised before it answered (listeners hand off all they do after answering):
        the database's absence is said in words; anything else is logged and answered 500."""
        if not is_database_down(error):
            log.error("a Slack listener failed", exc_info=error)
            return None
        cause = getattr(error, "orig", None) or error
        log.warning("the database could not be reached while answering Slack (%s)", type(cause).__name__)
        return _answer(body)
