"""`/sms-send`: help, the no-access answer, opening the request form, and handing `admin ...` on."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.requests.choices import RequestForm
from bot.requests.lifecycle import Refused
from bot.rules.cache import RulesCache
from bot.slack import admin, blocks
from bot.whatcounts.catalog import MessageCatalog

log = logging.getLogger(__name__)


def no_access_text(user_id: str, admins: list[str]) -> str:
    who = (", ".join(f"<@{a}>" for a in admins) + " can grant it"
           if admins else "the bot's operator can grant it")
    return (f"You don't have access to request SMS sends. Ask for the *requester* role: {who} "
            f"(`sms-bot grant {user_id} requester --sender-code CODE`).")


def register(app: App, form: RequestForm, catalog: MessageCatalog, cache: RulesCache) -> None:
    @app.command("/sms-send")
    def sms_send(ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        text = (command.get("text") or "").strip()
        if (admin_words := admin.admin_text(text)) is not None:
            answer = admin.answer(form.sessions, command["user_id"], admin_words)
            cache.invalidate()  # so this process's next form shows any change at once
            ack(answer)
            return
        if text.lower() in ("help", "-h", "--help", "?"):
            ack(blocks.HELP)
            return
        if text:
            ack(f"`/sms-send {blocks.escape(text)}` is not something I know.\n\n{blocks.HELP}")
            return
        user_id, channel_id = command["user_id"], command["channel_id"]
        choices = form.choices(user_id, channel_id)
        if isinstance(choices, Refused):
            ack(no_access_text(user_id, form.admins()))
            return
        if not choices.codes:
            ack(choices.empty_reason)
            return
        ack()
        catalog.warm()  # so the message type-ahead answers from a fresh list
        only = form.code_status(choices.codes[0]) if len(choices.codes) == 1 else None
        modal = blocks.request_modal(channel_id, command.get("team_id", ""), choices, only, form.dry_run)
        try:
            client.views_open(trigger_id=command["trigger_id"], view=modal)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            respond(f"Slack would not open the form ({exc.response.get('error')}). Please run /sms-send again.")
