"""The request form: its message type-ahead, redrawing it for the chosen sender code, and submitting it."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.requests.choices import RequestForm
from bot.requests.fields import parse_fields
from bot.requests.lifecycle import Invalid, Lifecycle, Refused, Unregistered
from bot.requests.reading import RequestView
from bot.slack import blocks
from bot.whatcounts.catalog import MessageCatalog

log = logging.getLogger(__name__)

SUGGEST_WAIT = 1.5  # seconds a type-ahead waits for WhatCounts, well inside Slack's 3 s

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


def register(app: App, form: RequestForm, lifecycle: Lifecycle, catalog: MessageCatalog) -> None:
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
    def request_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
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
        draft = lifecycle.draft(body["user"]["id"], team_id, channel_id, fields, quiet_override=override)
        if isinstance(draft, Invalid):
            refuse(draft.errors)
            return
        if isinstance(draft, Unregistered):
            refuse({"sender_code": f"Sender code {draft.code} is not registered: an admin adds it with "
                                   f"`/sms-send admin sender-code set {draft.code}`."})
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
            refuse({"message_name": CHANNEL_PROBLEMS.get(
                error, f"Slack would not post the request in this channel ({error}). Nothing was saved.")})
            return
        stored = lifecycle.store(draft, posted["ts"])
        if isinstance(stored, Refused):
            client.chat_delete(channel=channel_id, ts=posted["ts"])
            refuse({"sender_code": stored.reason})
            return
        ack()
