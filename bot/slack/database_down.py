"""A database that cannot be reached still gets every Slack request a plain answer, inside Slack's 3 s.

The engine bounds every wait for the database (bot.store.engine), so a listener that needs
it fails fast with an OperationalError or a pool TimeoutError; this turns that into a sentence
for the person instead of Slack's generic error, and the bot recovers by itself once the
database answers again (the pool replaces dead connections).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt import App, BoltResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)

DATABASE_DOWN = ("The SMS bot cannot reach its database right now, so nothing was done. "
                 "Please try again in a few minutes; if it keeps happening, tell the bot's operator.")
DATABASE_ERRORS = (OperationalError, PoolTimeoutError)
JSON: dict[str, str | Sequence[str]] = {"content-type": "application/json;charset=utf-8"}


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
    def on_listener_error(error: Exception, body: dict[str, Any], response: BoltResponse | None
                          ) -> BoltResponse | None:
        if not is_database_down(error):
            log.error("a Slack listener failed", exc_info=error)
            return None
        cause = getattr(error, "orig", None) or error
        log.warning("the database could not be reached while answering Slack (%s)", type(cause).__name__)
        if response is None:  # already acknowledged: nothing more can be said in this response
            return None
        return _answer(body)
