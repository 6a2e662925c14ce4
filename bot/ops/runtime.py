"""The core, wired from settings: everything the bot is, short of the Slack surface that drives it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.ops import metrics
from bot.ops.config import Settings
from bot.ops.work import BackgroundWork, RequestScopedWork
from bot.requests.choices import RequestForm
from bot.requests.lifecycle import Lifecycle
from bot.requests.outbox import Outbox
from bot.requests.test_sends import TestSendLimits, TestSends
from bot.rules.cache import RulesCache
from bot.store.engine import make_engine, make_session_factory
from bot.whatcounts.catalog import MessageCatalog
from bot.whatcounts.client import Outcome, WhatCountsClient

log = logging.getLogger(__name__)


@dataclass
class Core:
    engine: Engine
    sessions: sessionmaker[Session]
    whatcounts: WhatCountsClient
    catalog: MessageCatalog
    cache: RulesCache
    form: RequestForm
    lifecycle: Lifecycle
    outbox: Outbox
    work: BackgroundWork
    test_sends: TestSends
    # The database reads a listener waits for before acknowledging (bot.slack.database_down.in_time):
    # a pool of their own, so that they never queue behind sends and Slack calls.
    reads: BackgroundWork

    def shutdown(self) -> None:
        """Let sends in flight finish and be recorded, then close the WhatCounts client."""
        self.reads.shutdown()
        self.work.shutdown()
        self.whatcounts.close()


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


def build_core(settings: Settings) -> Core:
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    whatcounts = WhatCountsClient(settings.whatcounts_url, settings.whatcounts_realm,
                                  settings.whatcounts_password, settings.whatcounts_timeout,
                                  observer=_observe_send)
    catalog = MessageCatalog(whatcounts)
    cache = RulesCache(sessions, settings.policy_cache_seconds)
    dry_run = settings.whatcounts_dry_run
    if dry_run:
        log.warning("WHATCOUNTS_DRY_RUN is on: requests are approved as usual but nothing is sent to WhatCounts")
    if settings.send_at_grace_minutes * 60 < 2 * settings.sweep_interval_seconds:
        log.warning("SEND_AT_GRACE_MINUTES (%g) is shorter than two sweeps (SWEEP_INTERVAL_SECONDS %g): scheduled "
                    "sends may fail as missed", settings.send_at_grace_minutes, settings.sweep_interval_seconds)
    lifecycle = Lifecycle(sessions, whatcounts, request_ttl=timedelta(minutes=settings.request_ttl_minutes),
                          messages=catalog, dry_run=dry_run,
                          send_at_max=timedelta(days=settings.send_at_max_days),
                          send_at_grace=timedelta(minutes=settings.send_at_grace_minutes))
    form = RequestForm(sessions, cache, dry_run=dry_run)
    limits = TestSendLimits(settings.test_sends_per_request, settings.test_sends_per_day)
    # On the life cycle's clock, so that what is pending and what is quiet agree (and tests move both).
    test_sends = TestSends(sessions, whatcounts, limits, clock=lambda session: lifecycle.clock(session),
                           dry_run=dry_run)
    return Core(engine, sessions, whatcounts, catalog, cache, form, lifecycle, Outbox(sessions), RequestScopedWork(),
                test_sends, RequestScopedWork(name="sms-bot-reads"))
