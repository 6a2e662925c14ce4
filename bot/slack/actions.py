"""Approve and Cancel buttons: acknowledged at once, decided in the database off the ack path.

Reject, Approve with note, Withdraw and Record outcome: bot.slack.decisions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.ops.work import BackgroundWork
from bot.requests.lifecycle import (
    ENDINGS,
    Changed,
    Closed,
    Decision,
    Lifecycle,
    Refused,
)
from bot.slack import blocks
from bot.slack.cards import CardPublisher
from bot.slack.database_down import DATABASE_DOWN, DATABASE_ERRORS
from bot.store.models import State

log = logging.getLogger(__name__)

ALREADY = {
    State.SENDING: "This request is already being handled: it is being sent now.",
    State.SENT: "This request was already sent.",
    State.FAILED: "This request was already handled: the send failed (see the card).",
    State.UNKNOWN: "This request was already handled: its outcome is unknown (see the card).",
    State.REJECTED: "This request was already rejected.",
    State.CANCELLED: "This request was already cancelled.",
    State.EXPIRED: "This request has expired. Run /sms-send again if it is still wanted.",
    State.SCHEDULED: "This request is already approved: it waits for its time to send (see the card).",
}


def register(app: App, lifecycle: Lifecycle, publisher: CardPublisher, work: BackgroundWork) -> None:
    deciders: dict[str, Callable[[str, str], Decision]] = {
        blocks.APPROVE: lifecycle.approve, blocks.CANCEL: lifecycle.cancel, blocks.WITHDRAW: lifecycle.withdraw,
    }

    def decide(action_id: str, request_id: str, user_id: str, channel_id: str, client: WebClient) -> None:
        try:
            decision = deciders[action_id](request_id, user_id)
        except DATABASE_ERRORS:
            log.warning("request %s: the database could not be reached for a click", request_id)
            tell(client, channel_id, user_id, DATABASE_DOWN)
            return
        match decision:
            case Refused(reason=reason):
                tell(client, channel_id, user_id, reason)
            case Closed(view=view):
                tell(client, channel_id and view.request.channel_id, user_id, ALREADY[view.request.state])
            case Changed(send=True):
                publisher.send(decision)
            case Changed(view=view) if view.request.state in ENDINGS:
                publisher.show(view)  # cancelled or withdrawn (the requester told), or stopped by the code's policy
            case Changed(view=view) if view.request.state == State.SCHEDULED:
                publisher.refresh(view)  # the approval that scheduled it: the thread says when it goes
                publisher.reply(view, blocks.approval_reply(view, user_id))
            case Changed(view=view):
                publisher.refresh(view)

    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        channel_id = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
        work.submit(decide, action["action_id"], str(action.get("value", "")), body["user"]["id"],
                    channel_id, client)

    for action_id in deciders:
        app.action(action_id)(on_click)


def tell(client: WebClient, channel_id: str, user_id: str, text: str) -> None:
    """An ephemeral reply in the channel; for a click on the Home tab (no channel), in the app's messages."""
    try:
        if channel_id:
            client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
        else:
            client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError as exc:
        log.warning("ephemeral reply to %s not posted: %s", user_id, exc.response.get("error"))
    except (SlackClientError, OSError) as exc:  # no answer, or the connection broke: the decision stands
        log.warning("ephemeral reply to %s not posted: %s", user_id, type(exc).__name__)
