"""The one place where the bot is wired: settings in, a Bolt app and its helpers out."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from sqlalchemy import Engine

from bot import metrics
from bot.config import Settings
from bot.db import make_engine, make_session_factory
from bot.logs import ContextThreadPoolExecutor, current_request
from bot.messages import MessageCatalog
from bot.sends import SendService
from bot.slack import actions, blocks, commands, views
from bot.slack.cards import CardPublisher, Sweeper
from bot.slack.work import BackgroundWork
from bot.whatcounts import Outcome, WhatCountsClient

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    app: App
    service: SendService
    publisher: CardPublisher
    work: BackgroundWork
    sweeper: Sweeper
    engine: Engine

    def start_background(self) -> None:
        self.sweeper.start()

    def shutdown(self) -> None:
        """Stop sweeping; let sends in flight finish and be recorded."""
        self.sweeper.stop()
        self.work.shutdown()
        if self.service.whatcounts is not None:
            self.service.whatcounts.close()


def slack_client(settings: Settings) -> WebClient:
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])


# Request kinds counted in metrics; anything else (a forged body, say) is "other".
KINDS = frozenset({"command", "block_actions", "view_submission", "view_closed", "shortcut", "message_action",
                   "block_suggestion", "event_callback", "url_verification", "interactive_message"})
DECISIONS = frozenset({blocks.APPROVE, blocks.REJECT, blocks.CANCEL})


def describe(body: dict[str, Any]) -> tuple[str, str | None]:
    """A parsed Slack request's kind and the send request it is about (a decision button's value)."""
    if "command" in body:
        return "command", None
    kind = body.get("type")
    if kind not in KINDS:
        return "other", None
    if kind == "block_actions":
        first = (body.get("actions") or [{}])[0]
        if isinstance(first, dict) and first.get("action_id") in DECISIONS and first.get("value"):
            return kind, str(first["value"])[:32]
    return str(kind), None


def _bind_request_id(body: dict[str, Any], next_: Callable[[], None]) -> None:
    """Tag the logs of this Slack request, its listener and the work it hands off with its send request id.

    Bolt runs middleware one after the other before the listener, so the value stays set for
    the rest of this thread's request: the HTTP server dispatches each request in a fresh context.
    """
    current_request.set(describe(body)[1])
    next_()


class _RequestScopedWork(BackgroundWork):
    """Background work that runs in the context (and so the request id) of the click that caused it."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return super().submit(contextvars.copy_context().run, fn, *args)


def _observe_send(outcome: Outcome, seconds: float) -> None:
    """Count every WhatCounts send and log it in one line, without any of the request's content."""
    try:
        name = metrics.outcome_name(outcome)
        metrics.observe_send(outcome, seconds)
        log.info("WhatCounts send %s in %.0f ms", name, seconds * 1000,
                 extra={"outcome": name, "seconds": round(seconds, 4),
                        "http_status": getattr(outcome, "http_status", 200 if name == "sent" else None)})
    except Exception:  # never let bookkeeping lose a send's outcome
        log.exception("recording a WhatCounts send in the metrics failed")


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    whatcounts = WhatCountsClient(settings.whatcounts_url, settings.whatcounts_realm,
                                  settings.whatcounts_password, settings.whatcounts_timeout,
                                  observer=_observe_send)
    service = SendService(make_session_factory(engine), whatcounts,
                          request_ttl=timedelta(minutes=settings.request_ttl_minutes),
                          messages=MessageCatalog(whatcounts), dry_run=settings.whatcounts_dry_run,
                          policy_max_age=settings.policy_cache_seconds)
    if settings.whatcounts_dry_run:
        log.warning("WHATCOUNTS_DRY_RUN is on: requests are approved as usual but nothing is sent to WhatCounts")
    client = slack_client(settings)
    # The token is checked once by `sms-bot serve` before any worker starts.
    app = App(client=client, signing_secret=settings.slack_signing_secret, token_verification_enabled=False,
              listener_executor=ContextThreadPoolExecutor(max_workers=10, thread_name_prefix="bolt-listener"))
    app.use(_bind_request_id)
    publisher = CardPublisher(client, service)
    work = _RequestScopedWork()
    commands.register(app, service)
    views.register(app, service)
    actions.register(app, service, publisher, work)
    return Runtime(app, service, publisher, work, Sweeper(publisher, settings.sweep_interval_seconds), engine)
