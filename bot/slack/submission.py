"""A submitted form's card posted and its request stored, off the acknowledgement path.

The submission listener (bot/slack/views.py) waits for this up to `SUBMIT_BUDGET`, inside
Slack's 3 s; past it the form says "Posting your request…" and `Submission.tell` updates it
(or tells the person privately) once the card is through or has failed.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.requests.lifecycle import ALREADY_SUBMITTED, Lifecycle, Refused
from bot.requests.reading import RequestView
from bot.slack import blocks
from bot.slack.database_down import DATABASE_DOWN, DATABASE_ERRORS
from bot.store.models import SendRequest

log = logging.getLogger(__name__)

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


@dataclass
class Submission:
    """Posting a submitted form's card and storing its request, off the acknowledgement path.

    The card goes first: if Slack will not take it, nothing is stored. If the request cannot
    be stored after all, the card is deleted (or, failing that, edited to say it was not
    saved), so a submission that ends in an error leaves nothing behind.
    """

    lifecycle: Lifecycle
    client: WebClient  # a bounded timeout of its own: see `bot.slack.client.card_client`

    def publish(self, draft: SendRequest) -> Published:
        channel_id = draft.channel_id
        try:  # who is asked to approve: mentioned on this first post, which is what notifies them
            preview = self.lifecycle.preview(draft)
        except DATABASE_ERRORS as exc:
            log.warning("request card not posted: the database could not be reached (%s)", type(exc).__name__)
            return NotPosted({"sender_code": DATABASE_DOWN})
        try:
            posted = self.client.chat_postMessage(channel=channel_id, text=blocks.card_fallback(preview),
                                                  blocks=blocks.card(preview), unfurl_links=False,
                                                  unfurl_media=False)
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


def _error_name(exc: Exception) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__
