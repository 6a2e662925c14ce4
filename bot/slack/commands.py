"""`/sms-send`: help, the no-access answer, opening the request form, and handing `admin ...` on."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session, sessionmaker

from bot.ops.work import BackgroundWork
from bot.requests.choices import EmptyReason, FormChoices, OnlyElsewhere, RequestForm
from bot.requests.lifecycle import Refused
from bot.rules.cache import RulesCache
from bot.slack import admin, blocks
from bot.slack.database_down import ACK_BUDGET, TooSlow, in_time
from bot.slack.mrkdwn import channel_link, escape, mentions
from bot.whatcounts.catalog import MessageCatalog

log = logging.getLogger(__name__)


def no_access_text(user_id: str, admins: list[str]) -> str:
    who = f"ask {mentions(admins)}" if admins else "ask the people who run this bot"
    return (f"You don't have access to request SMS sends. To get the *requester* role for a sender code, {who} "
            "(admins of the bot).")


def nothing_to_offer_text(reason: EmptyReason) -> str:
    """Why the form would offer no sender code here, and where to go instead."""
    if isinstance(reason, OnlyElsewhere):
        places = ", ".join(channel_link(c) for c in reason.channels)
        return f"Your sender codes cannot be requested in this channel. Run /sms-send in {places}."
    wanted = ", ".join(reason.codes) or "any sender code"
    return (f"You may request {wanted}, but no such sender code is registered yet. An admin registers it with "
            "`/sms-send admin sender-code set CODE`.")


ADMIN_TOO_SLOW = ("The SMS bot's database did not answer in time. A change you asked for may still be made: "
                  "look with `/sms-send admin` in a minute before asking again.")


def register(app: App, form: RequestForm, catalog: MessageCatalog, cache: RulesCache,
             admin_sessions: sessionmaker[Session], reads: BackgroundWork, after_ack: BackgroundWork) -> None:
    """`admin_sessions`: the database that `/sms-send admin ...` reads and changes. What needs the
    database before the acknowledgement runs on `reads` within `ACK_BUDGET` (see `in_time`); the form
    is opened on `after_ack`, once the command is answered."""
    @app.command("/sms-send")
    def sms_send(ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        text = (command.get("text") or "").strip()
        if (admin_words := admin.admin_text(text)) is not None:
            try:
                answer = in_time(reads, ACK_BUDGET,
                                 lambda: admin.answer(admin_sessions, command["user_id"], admin_words))
            except TooSlow:
                answer = ADMIN_TOO_SLOW
            cache.invalidate()  # so this process's next form shows any change at once
            ack(answer)
            return
        if text.lower() in ("help", "-h", "--help", "?"):
            ack(blocks.HELP)
            return
        if text:
            ack(f"`/sms-send {escape(text)}` is not something I know.\n\n{blocks.HELP}")
            return
        user_id, channel_id = command["user_id"], command["channel_id"]

        def read() -> tuple[FormChoices | Refused, list[str]]:
            choices = form.choices(user_id, channel_id)
            return choices, form.admins() if isinstance(choices, Refused) else []

        # From memory as a rule; a thread hop (and a bound) only when the cache will ask the database.
        choices, admins = read() if cache.fresh() else in_time(reads, ACK_BUDGET, read)
        if isinstance(choices, Refused):
            ack(no_access_text(user_id, admins))
            return
        if choices.empty is not None:
            ack(nothing_to_offer_text(choices.empty))
            return
        ack()
        after_ack.submit(open_form, command, choices, client, respond)

    def open_form(command: dict[str, Any], choices: FormChoices, client: WebClient, respond: Respond) -> None:
        catalog.warm()  # so the message type-ahead answers from a fresh list
        only = form.code_status(choices.codes[0]) if len(choices.codes) == 1 else None
        modal = blocks.request_modal(command["channel_id"], command.get("team_id", ""), choices, only, form.dry_run)
        try:
            client.views_open(trigger_id=command["trigger_id"], view=modal)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            respond(f"Slack would not open the form ({exc.response.get('error')}). Please run /sms-send again.")
