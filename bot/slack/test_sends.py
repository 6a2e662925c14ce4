""""Send test to my phone" on a waiting card: acknowledged at once, sent off the ack path.

The clicker is told the result privately; what happened is noted in the card's thread by
mention, never with the phone number. The click's `action_ts` is what makes a repeat of the
same click (a Slack retry) one send (`TestSends.send`).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.ops.work import BackgroundWork
from bot.requests.reading import RequestView
from bot.requests.test_sends import TestSends
from bot.slack import blocks, mrkdwn
from bot.slack.actions import tell
from bot.slack.cards import CardPublisher
from bot.slack.database_down import DATABASE_DOWN, DATABASE_ERRORS

log = logging.getLogger(__name__)


def register(app: App, test_sends: TestSends, publisher: CardPublisher, work: BackgroundWork) -> None:
    def send(request_id: str, user_id: str, channel_id: str, click: str, client: WebClient) -> None:
        try:
            result = test_sends.send(request_id, user_id, click)
        except DATABASE_ERRORS:
            log.warning("request %s: the database could not be reached for a test send", request_id)
            tell(client, channel_id, user_id, DATABASE_DOWN)
            return
        tell(client, channel_id, user_id, mrkdwn.render(result.told))
        if result.request is not None and result.note is not None:
            publisher.reply(RequestView(result.request), mrkdwn.render(result.note))

    @app.action(blocks.TEST_SEND)
    def clicked(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        channel_id = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
        click = str(action.get("action_ts") or secrets.token_hex(8))  # Slack always sends action_ts
        work.submit(send, str(action.get("value", "")), body["user"]["id"], channel_id, click, client)
