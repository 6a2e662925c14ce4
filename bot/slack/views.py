"""Submitting the request form: inline errors, or the approval card posted and the request stored."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.fields import parse_fields
from bot.sends import Refused, RequestView, SendService
from bot.slack import blocks

log = logging.getLogger(__name__)

CHANNEL_PROBLEMS = {
    "not_in_channel": "The bot is not in this channel. Invite it (type `/invite @SMS Send` in the channel), "
                      "then submit again.",
    "channel_not_found": "The bot cannot see this conversation (a private channel or a DM it is not in). "
                         "Invite it with `/invite @SMS Send`, or run /sms-send in a channel it is in.",
    "is_archived": "This channel is archived. Run /sms-send in an active channel.",
    "restricted_action": "This channel does not let the bot post. Ask a workspace admin, or use another channel.",
}


def submitted_value(values: dict[str, Any], block_id: str) -> str | None:
    """A plain_text_input's `value` or a static_select's `selected_option.value`."""
    element = values.get(block_id, {}).get(blocks.INPUT_ACTION, {})
    option = element.get("selected_option") or {}
    return element.get("value") or option.get("value")


def register(app: App, service: SendService) -> None:
    @app.view(blocks.REQUEST_CALLBACK)
    def request_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        values = view["state"]["values"]
        fields, errors = parse_fields(*(submitted_value(values, key) for key in (
            "message_name", "sender_code", "campaign_name", "description", "group_name")))
        if fields is None:
            ack(response_action="errors", errors=errors)
            return
        meta = json.loads(view.get("private_metadata") or "{}")
        channel_id = meta.get("channel_id", "")
        draft = service.draft(body["user"]["id"], meta.get("team_id", ""), channel_id, fields)
        if isinstance(draft, Refused):
            ack(response_action="errors", errors={"sender_code": draft.reason})
            return
        # The card goes first: if Slack will not take it, nothing is stored and the form
        # stays open with the person's input and what to do.
        preview = RequestView(draft)
        try:
            posted = client.chat_postMessage(channel=channel_id, text=blocks.card_fallback(preview),
                                             blocks=blocks.card(preview))
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            log.warning("request card not posted in %s: %s", channel_id, error)
            ack(response_action="errors", errors={"message_name": CHANNEL_PROBLEMS.get(
                error, f"Slack would not post the request in this channel ({error}). Nothing was saved.")})
            return
        stored = service.store(draft, posted["ts"])
        if isinstance(stored, Refused):
            client.chat_delete(channel=channel_id, ts=posted["ts"])
            ack(response_action="errors", errors={"sender_code": stored.reason})
            return
        ack()
