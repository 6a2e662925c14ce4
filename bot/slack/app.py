"""The one place where the bot is wired: settings in, a Bolt app and its helpers out."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.config import Settings
from bot.db import make_engine, make_session_factory
from bot.sends import SendService
from bot.slack import actions, commands, views
from bot.slack.cards import CardPublisher, Sweeper
from bot.slack.work import BackgroundWork
from bot.whatcounts import WhatCountsClient

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    app: App
    service: SendService
    publisher: CardPublisher
    work: BackgroundWork
    sweeper: Sweeper

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


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    whatcounts = WhatCountsClient(settings.whatcounts_url, settings.whatcounts_realm,
                                  settings.whatcounts_password, settings.whatcounts_timeout)
    service = SendService(make_session_factory(engine), whatcounts,
                          request_ttl=timedelta(minutes=settings.request_ttl_minutes))
    client = slack_client(settings)
    # The token is checked once by `sms-bot serve` before any worker starts.
    app = App(client=client, signing_secret=settings.slack_signing_secret, token_verification_enabled=False,
              listener_executor=ThreadPoolExecutor(max_workers=10, thread_name_prefix="bolt-listener"))
    publisher = CardPublisher(client, service)
    work = BackgroundWork()
    commands.register(app, service)
    views.register(app, service)
    actions.register(app, service, publisher, work)
    return Runtime(app, service, publisher, work, Sweeper(publisher, settings.sweep_interval_seconds))
