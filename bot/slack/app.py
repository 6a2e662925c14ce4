"""The one place where the bot is wired: settings in, a Bolt app and its helpers out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App

from bot.ops.config import Settings
from bot.ops.logs import current_request
from bot.ops.runtime import Core, build_core
from bot.ops.work import BackgroundWork, RequestScopedWork
from bot.requests.reminders import Reminders
from bot.slack import actions, blocks, commands, database_down, decisions, home, test_sends, views
from bot.slack.cards import CardPublisher, Sweeper
from bot.slack.client import pooled_request_client, web_client

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The core and the Bolt app that drives it, with the card publisher and the sweeper."""

    core: Core
    app: App
    publisher: CardPublisher
    sweeper: Sweeper
    after_ack: BackgroundWork  # what listeners hand off once they have acknowledged (see `build_runtime`)
    signing_secret: str  # the HTTP edge verifies every body with it before Bolt sees it

    def start_background(self) -> None:
        self.sweeper.start()

    def wait_idle(self, timeout: float) -> bool:
        """True once the work listeners handed off, and the background work that handed off, has finished.

        Listeners finish before their request is answered, and what runs after an acknowledgement hands
        its own work off before it finishes, so waiting in this order misses nothing. The sweeper is not
        waited for.
        """
        deadline = time.monotonic() + timeout
        return (self.after_ack.in_flight.wait_idle(timeout)
                and self.core.reads.in_flight.wait_idle(max(0.0, deadline - time.monotonic()))
                and self.core.work.in_flight.wait_idle(max(0.0, deadline - time.monotonic())))

    def shutdown(self) -> None:
        """Stop sweeping; let listeners and sends in flight finish and be recorded."""
        self.sweeper.stop()
        self.after_ack.shutdown()
        self.core.shutdown()


# Request kinds counted in metrics; anything else (a forged body, say) is "other".
KINDS = frozenset({"command", "block_actions", "view_submission", "view_closed", "shortcut", "message_action",
                   "block_suggestion", "event_callback", "url_verification", "interactive_message"})
DECISIONS = frozenset({blocks.APPROVE, blocks.REJECT, blocks.CANCEL, blocks.APPROVE_WITH_NOTE, blocks.WITHDRAW,
                       blocks.RECORD_OUTCOME, blocks.TEST_SEND})


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


def build_runtime(settings: Settings) -> Runtime:
    core = build_core(settings)
    client = web_client(settings)
    # Listeners run in their request's own thread and are answered as soon as they return. Bolt's default
    # runs each on a pool and polls for its ack() every 10 ms, so every answer waits for the next tick while
    # it holds a server thread (at most 100 answers a second per thread). What comes after an ack (opening a
    # form or a modal, redrawing a form, a Home tab) is handed to `after_ack`, its own pool, so that no send
    # in `work` holds up a form whose trigger_id lapses in 3 s.
    after_ack = RequestScopedWork(max_workers=10, name="sms-bot-slack")
    # The token is checked once by `sms-bot serve` before any worker starts.
    app = App(client=client, signing_secret=settings.slack_signing_secret, token_verification_enabled=False,
              process_before_response=True, before_authorize=pooled_request_client)
    app.use(_bind_request_id)
    database_down.register(app)
    homes = home.HomePublisher(client, core.lifecycle)
    # On the life cycle's clock, so that reminders and expiry agree on the time (and tests move both).
    reminders = Reminders(core.sessions, settings.reminder_at_fraction,
                          clock=lambda session: core.lifecycle.clock(session))
    publisher = CardPublisher(client, core.lifecycle, core.outbox, homes.request_changed, reminders)
    home.register(app, homes, after_ack)
    commands.register(app, core.form, core.catalog, core.cache, core.sessions, core.reads, after_ack)
    views.register(app, core.form, core.lifecycle, core.catalog, core.work, homes.request_changed, core.reads,
                   after_ack)
    actions.register(app, core.lifecycle, publisher, core.work)
    decisions.register(app, core.lifecycle, publisher, core.work, after_ack)
    test_sends.register(app, core.test_sends, publisher, core.work)
    return Runtime(core, app, publisher, Sweeper(publisher, settings.sweep_interval_seconds), after_ack,
                   settings.slack_signing_secret)
