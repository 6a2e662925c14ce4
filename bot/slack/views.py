"""The request form: its message type-ahead, redrawing it for the chosen sender code, and submitting it."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.ops.work import BackgroundWork
from bot.requests.choices import RequestForm
from bot.requests.fields import parse_fields
from bot.requests.lifecycle import ALREADY_SUBMITTED, Invalid, Lifecycle, Refused, Unregistered
from bot.requests.reading import RequestView
from bot.slack import blocks
from bot.slack.database_down import DATABASE_DOWN, DATABASE_ERRORS
from bot.store.models import SendRequest
from bot.whatcounts.catalog import MessageCatalog

log = logging.getLogger(__name__)

SUGGEST_WAIT = 1.5  # seconds a type-ahead waits for WhatCounts, well inside Slack's 3 s
# Seconds a submission waits for its card to be posted and stored before answering "posting…"
# (counted from when the listener starts: Slack's 3 s also cover the network and Bolt).
SUBMIT_BUDGET = 2.0
CARD_POST_TIMEOUT = 10  # seconds for each call posting a card at submission, off the ack path
MAX_RATE_LIMIT_WAIT = 10  # seconds a 429's Retry-After may ask for before the submission gives up
NO_ANSWER = ("Slack did not confirm the request's card in time, so nothing was saved. If a card appears in "
             "the channel anyway, its buttons do nothing: submit again.")

CHANNEL_PROBLEMS = {
    "not_in_channel": "The bot is not in this channel. Invite it (type `/invite @SMS Send` in the channel), "
                      "then submit again.",
    "channel_not_found": "The bot cannot see this conversation (a private channel or a DM it is not in). "
                         "Invite it with `/invite @SMS Send`, or run /sms-send in a channel it is in.",
    "is_archived": "This channel is archived. Run /sms-send in an active channel.",
    "restricted_action": "This channel does not let the bot post. Ask a workspace admin, or use another channel.",
}


def submitted_value(values: dict[str, Any], block_id: str) -> str | None:
    """An input block's value: a text input's `value` or a select's `selected_option.value`."""
    element: dict[str, Any] = next(iter(values.get(block_id, {}).values()), {})
    option = element.get("selected_option") or {}
    return element.get("value") or option.get("value")


def _metadata(view: dict[str, Any]) -> tuple[str, str]:
    """The channel the form was opened in, and its team."""
    meta = json.loads(view.get("private_metadata") or "{}")
    return meta.get("channel_id", ""), meta.get("team_id", "")


def register(app: App, form: RequestForm, lifecycle: Lifecycle, catalog: MessageCatalog,
             work: BackgroundWork) -> None:
    submission = Submission(lifecycle, card_client(app.client))

    @app.options(blocks.MESSAGE_ACTION)
    def suggest_messages(ack: Ack, payload: dict[str, Any]) -> None:
        """The message type-ahead, answered within Slack's 3 s even when WhatCounts is slow."""
        query = str(payload.get("value") or "")
        found = catalog.search(query, wait=SUGGEST_WAIT)
        ack(options=blocks.message_options(found, query))

    @app.action(blocks.SENDER_CODE_ACTION)
    def sender_code_chosen(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Redraw the form with the chosen sender code's groups and rules."""
        ack()
        view = body["view"]
        channel_id, team_id = _metadata(view)
        choices = form.choices(body["user"]["id"], channel_id)
        if isinstance(choices, Refused):
            return  # the grant was revoked while the form was open; submitting will say so
        chosen = choices.get((action.get("selected_option") or {}).get("value"))
        status = form.code_status(chosen) if chosen else None
        modal = blocks.request_modal(channel_id, team_id, choices, status, form.dry_run)
        try:
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=modal)
        except SlackApiError as exc:  # hash_conflict: a newer choice redraws it
            log.info("form not redrawn: %s", exc.response.get("error"))

    @app.view(blocks.REQUEST_CALLBACK)
    def request_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Check the form, post its card and store the request; answered inside Slack's 3 s whatever
        Slack's API does: if the card is not through in time, the form says so and is updated later."""
        started = time.monotonic()
        values = view["state"]["values"]
        shown = {block.get("block_id") for block in view.get("blocks", [])}

        def refuse(errors: dict[str, str]) -> None:
            # Slack refuses errors for blocks the form does not show; such a problem goes on the sender code.
            placed: dict[str, str] = {}
            for key, text in errors.items():
                placed.setdefault(key if key in shown else "sender_code", text)
            ack(response_action="errors", errors=placed)

        fields, errors = parse_fields(*(submitted_value(values, key) for key in (
            "message_name", "sender_code", "campaign_name", "description", "group_name")))
        override = (submitted_value(values, "quiet_override") or "").strip() or None
        if fields is None:
            refuse(errors)
            return
        channel_id, team_id = _metadata(view)
        user_id = body["user"]["id"]
        draft = lifecycle.draft(user_id, team_id, channel_id, fields, quiet_override=override)
        if isinstance(draft, Invalid):
            refuse(draft.errors)
            return
        if isinstance(draft, Unregistered):
            refuse({"sender_code": f"Sender code {draft.code} is not registered: an admin adds it with "
                                   f"`/sms-send admin sender-code set {draft.code}`."})
            return
        draft.view_id = view.get("id") or None
        if draft.view_id and lifecycle.submitted(draft.view_id) is not None:
            ack()  # the same form again (a double click, or a retry of a slow answer): one request
            return
        publishing = work.submit(submission.publish, draft)
        try:
            result = publishing.result(timeout=max(0.0, SUBMIT_BUDGET - (time.monotonic() - started)))
        except FutureTimeout:
            ack(response_action="update", view=blocks.posting_modal(channel_id))
            publishing.add_done_callback(
                lambda done: submission.tell(done, user_id, channel_id, str(view.get("id", ""))))
            return
        except Exception:  # publish catches Slack's failures; anything else is a defect
            log.exception("submission failed")
            refuse({"message_name": "Something went wrong in the bot. Nothing was saved: submit again."})
            return
        if isinstance(result, NotPosted):
            refuse(result.errors)
        else:
            ack()  # posted and stored, or posted by the same form's first submission


@dataclass(frozen=True)
class Posted:
    view: RequestView


@dataclass(frozen=True)
class NotPosted:
    """Nothing was saved and no card is left: a sentence for the form field it concerns."""

    errors: dict[str, str]


@dataclass(frozen=True)
class Duplicate:
    """The same form was submitted before and made its request; this submission made nothing."""


Published = Posted | NotPosted | Duplicate


class BoundedRateLimitRetry(RateLimitErrorRetryHandler):
    """Waits out a 429 once, unless Slack asks for longer than `max_wait` seconds."""

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_retry_count=1)
        self.max_wait = max_wait

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        assert response is not None
        wait = next((v[0] for k, v in response.headers.items() if k.lower() == "retry-after" and v), "1")
        return wait.isdigit() and int(wait) <= self.max_wait


@dataclass
class Submission:
    """Posting a submitted form's card and storing its request, off the acknowledgement path.

    The card goes first: if Slack will not take it, nothing is stored. If the request cannot
    be stored after all, the card is deleted (or, failing that, edited to say it was not
    saved), so a submission that ends in an error leaves nothing behind.
    """

    lifecycle: Lifecycle
    client: WebClient  # a bounded timeout of its own: see `card_client`

    def publish(self, draft: SendRequest) -> Published:
        channel_id = draft.channel_id
        preview = RequestView(draft)
        try:
            posted = self.client.chat_postMessage(channel=channel_id, text=blocks.card_fallback(preview),
                                                  blocks=blocks.card(preview))
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            log.warning("request card not posted in %s: %s", channel_id, error)
            if error == "ratelimited":
                return NotPosted({"message_name": "Slack is limiting how fast the bot may post in this channel. "
                                                  "Nothing was saved: submit again in a minute."})
            return NotPosted({"message_name": CHANNEL_PROBLEMS.get(
                error, f"Slack would not post the request in this channel ({error}). Nothing was saved.")})
        except (SlackClientError, OSError) as exc:  # no answer in time, or the connection broke
            log.warning("request card not posted in %s: %s", channel_id, type(exc).__name__)
            return NotPosted({"message_name": NO_ANSWER})
        card_ts = str(posted["ts"])
        try:
            stored = self.lifecycle.store(draft, card_ts)
        except DATABASE_ERRORS as exc:
            log.warning("request %s: not stored after its card was posted: the database could not be reached "
                        "(%s)", draft.id, type(getattr(exc, "orig", None) or exc).__name__)
            stored = Refused(DATABASE_DOWN)
        except Exception:
            log.exception("request %s: not stored after its card was posted", draft.id)
            stored = Refused("The bot could not save the request. Nothing was saved: submit again.")
        if isinstance(stored, Refused):
            self._withdraw(channel_id, card_ts, draft.id)
            if stored.reason == ALREADY_SUBMITTED:
                return Duplicate()
            return NotPosted({"sender_code": stored.reason})
        return Posted(stored)

    def _withdraw(self, channel_id: str, card_ts: str, request_id: str) -> None:
        """Take back a card whose request was not stored: its buttons would lead nowhere."""
        try:
            self.client.chat_delete(channel=channel_id, ts=card_ts)
            return
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("request %s: unsaved card not deleted (%s); marking it instead", request_id,
                        _error_name(exc))
        try:
            self.client.chat_update(channel=channel_id, ts=card_ts, text=blocks.WITHDRAWN, blocks=[])
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.error("request %s: unsaved card left in %s (%s)", request_id, channel_id, _error_name(exc))

    def tell(self, done: Future[Published], user_id: str, channel_id: str, view_id: str) -> None:
        """After a slow post: replace the 'posting…' form with the outcome, or say it in the channel."""
        try:
            result = done.result()
        except Exception:  # publish catches Slack's failures; anything else is a defect
            log.exception("submission failed")
            result = NotPosted({"message_name": "Something went wrong in the bot. Nothing was saved: submit again."})
        if isinstance(result, Duplicate):
            return
        if isinstance(result, Posted):
            modal = blocks.posted_modal(result.view.request.id, channel_id)
            words = None
        else:
            words = " ".join(result.errors.values())
            modal = blocks.not_posted_modal(words)
        try:
            self.client.views_update(view_id=view_id, view=modal)
            return
        except (SlackApiError, SlackClientError, OSError) as exc:  # the person closed it, or Slack is down
            log.info("submission outcome not shown in the form: %s", _error_name(exc))
        if words is None:
            return  # the card in the channel says it all
        try:
            self.client.chat_postEphemeral(channel=channel_id, user=user_id,
                                           text=f"Your SMS send request was not posted. {words}")
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("submission failure not told to %s: %s", user_id, _error_name(exc))


def card_client(client: WebClient) -> WebClient:
    """The Bolt app's client with a bound on each call, for posting cards at submission."""
    return WebClient(token=client.token, base_url=client.base_url, timeout=CARD_POST_TIMEOUT,
                     retry_handlers=[BoundedRateLimitRetry(max_wait=MAX_RATE_LIMIT_WAIT)])


def _error_name(exc: Exception) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__
