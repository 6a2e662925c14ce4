"""Keeping approval cards and outcome messages in Slack in step with the database.

A failed Slack call is logged and left for the sweep: the database says which cards lag
behind (`card_version < version`) and which endings (outcomes, rejects, cancels, expiries) are
not yet told. A card that cannot
be drawn or that Slack refuses backs off and is finally given up (see `Outbox`), so it never
holds up the others; an ending's post is leased, so a process that dies mid-post delays it
but does not lose it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.requests.lifecycle import Changed, Lifecycle
from bot.requests.outbox import Outbox
from bot.requests.reading import RequestView
from bot.requests.reminders import Reminder, Reminders
from bot.slack import blocks
from bot.slack.database_down import DATABASE_ERRORS

log = logging.getLogger(__name__)


class CardPublisher:
    def __init__(self, client: WebClient, lifecycle: Lifecycle, outbox: Outbox,
                 changed: Callable[[RequestView], None] = lambda _view: None,
                 reminders: Reminders | None = None) -> None:
        self.client = client
        self.reminders = reminders  # None: no reminders before expiry
        self.lifecycle = lifecycle
        self.outbox = outbox
        self.changed = changed  # after a card shows a change: the Home tabs of the people involved

    def refresh(self, view: RequestView, tabs: bool = True) -> None:
        """The card as `view` says, then (with `tabs`) the Home tabs of the people involved."""
        r = view.request
        try:
            self.client.chat_update(channel=r.channel_id, ts=r.card_ts, text=blocks.card_fallback(view),
                                    blocks=blocks.card(view))
        except (SlackApiError, SlackClientError, OSError) as exc:  # a card too big to draw too
            if self.outbox.card_failed(r.id):
                log.warning("request %s: card update failed, will retry: %s", r.id, _slack_error(exc))
            return
        self.outbox.card_shown(r.id, r.version)
        if tabs:
            self.changed(view)

    def post_outcome(self, view: RequestView) -> None:
        """Tell the requester how the request ended, in the card's thread, once; a send's outcome is
        broadcast to the channel too."""
        r = view.request
        if self.outbox.claim_outcome_post(r.id, r.version):
            self._thread_reply(view, "outcome", blocks.ending_message(view), r.state in blocks.BROADCAST,
                               done=lambda: self.outbox.outcome_post_done(r.id, r.version),
                               failed=lambda: self.outbox.release_outcome_post(r.id))

    def remind(self, reminder: Reminder) -> None:
        """Post the reminder in the card's thread; once, whichever process gets here first."""
        r = reminder.view.request
        reminders = self.reminders
        if reminders is not None and reminders.claim(r.id):
            self._thread_reply(reminder.view, "reminder", blocks.reminder_message(reminder), False,
                               done=lambda: reminders.done(r.id), failed=lambda: reminders.release(r.id))

    def reply(self, view: RequestView, text: str) -> None:
        """A reply under the request's card, not leased; a failure is logged (the card and the audit trail
        still say it)."""
        r = view.request
        try:
            self.client.chat_postMessage(channel=r.channel_id, thread_ts=r.card_ts, text=text)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("request %s: thread reply not posted: %s", r.id, type(exc).__name__)

    def _thread_reply(self, view: RequestView, what: str, text: str, broadcast: bool,
                      done: Callable[[], None], failed: Callable[[], None]) -> None:
        """A leased reply in the card's thread: `done` once Slack took it, `failed` to let a later sweep try."""
        r = view.request
        try:
            self.client.chat_postMessage(channel=r.channel_id, thread_ts=r.card_ts, reply_broadcast=broadcast,
                                         text=text, unfurl_links=False, unfurl_media=False)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("request %s: %s post failed, will retry: %s", r.id, what, _slack_error(exc))
            failed()
            return
        done()

    def send(self, claim: Changed, reply: str | None = None) -> None:
        """The approval that claimed a send: WhatCounts is called first; once the POST is written,
        another thread shows the card as sending (and `reply` in the thread) while the answer is
        awaited. The outcome is told as soon as it is known; the card shows it once the sending
        card is done, so the older card can never arrive last."""
        view = claim.view

        def sending() -> None:  # a thread of its own: nothing above it would log what it raises
            try:
                self.refresh(view, tabs=False)  # the Home tabs follow with the outcome
                if reply is not None:
                    self.reply(view, reply)
            except DATABASE_ERRORS as exc:
                log.warning("request %s: the sending card was not recorded as shown (%s); the sweep shows it "
                            "again", view.request.id, type(exc).__name__)
            except Exception:
                log.exception("request %s: the sending card failed", view.request.id)
        shown = threading.Thread(target=sending, name=f"sms-bot-card-{view.request.id}")
        try:
            outcome = self.lifecycle.execute(claim, posted=shown.start)
            if shown.ident is None and reply is not None:  # never posted: the words before the ending
                self.reply(view, reply)
            self.post_outcome(outcome)
        finally:
            if shown.ident is not None:
                shown.join()
        self.refresh(outcome)

    def show(self, view: RequestView) -> None:
        """An ending told first (what people wait for), then the card and the Home tabs."""
        self.post_outcome(view)
        self.refresh(view)

    def sweep(self) -> None:
        """Send what is scheduled for now, expire, give up on lost sends, remind before expiry, and catch up
        cards and outcomes that Slack missed."""
        for due in self.lifecycle.start_due_sends():  # claimed here, by this process only: sent here
            self.show(self.lifecycle.execute(due) if due.send else due.view)
        for view in self.lifecycle.expire_due() + self.lifecycle.mark_lost_sends():
            self.show(view)
        for reminder in self.reminders.due() if self.reminders else ():
            self.remind(reminder)
        for view in self.outbox.cards_behind():
            self.refresh(view)
        for view in self.outbox.outcomes_unposted():
            self.post_outcome(view)


class Sweeper(threading.Thread):
    """Runs `CardPublisher.sweep` at start and then every `interval` seconds, in every process."""

    def __init__(self, publisher: CardPublisher, interval: float) -> None:
        super().__init__(name="sms-bot-sweeper", daemon=True)
        self.publisher = publisher
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.publisher.sweep()
            except Exception:  # keep sweeping: a database blip must not stop expiry for good
                log.exception("sweep failed; trying again in %.0f s", self.interval)
            if self.stopped.wait(self.interval):
                return

    def stop(self, timeout: float = 30) -> None:
        """Stop, and wait for a sweep under way to finish."""
        self.stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


def _slack_error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown error"))
    return type(exc).__name__
