"""The baselines: a bare Bolt app whose /sms-send listener only acknowledges, under the bot's gunicorn settings.

`python -m bench.bare_app --port P --workers 2 --threads 8 [--open-modal]` with SLACK_SIGNING_SECRET,
SLACK_BOT_TOKEN and SLACK_API_URL in the environment.

With `--open-modal` the listener, after ack(), also calls views.open with a constant form the
size of the bot's (about 2.5 KB of JSON; the bot's is 2.4 KB): the floor of any /sms-send that
opens a modal, Bolt plus the one Web API call it cannot avoid. The floor also answers the form's
submission (chat.postMessage of a card, then ack(): the bot too posts the card before answering)
and the card's Approve (ack(), then chat.postMessage of the outcome in the card's thread): one
Web API call each, the least a person can wait for (bench/distance.py).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.ops.config import Settings
from bot.slack.server import gunicorn_options


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _option(text: str, value: str, description: str | None = None) -> dict[str, Any]:
    option: dict[str, Any] = {"text": _plain(text), "value": value}
    if description:
        option["description"] = _plain(description)
    return option


# A request form shaped like the bot's: input blocks, a static select of a couple of options, a
# context line. Built once: the floor pays for the call, not for building the form.
MODAL: dict[str, Any] = {
    "type": "modal", "callback_id": "sms_send_request", "title": _plain("Send an SMS campaign"),
    "submit": _plain("Request approval"), "close": _plain("Cancel"),
    "private_metadata": json.dumps({"channel_id": "C0BENCH", "team_id": "T1"}),
    "blocks": [
        {"type": "input", "block_id": "message_name", "label": _plain("SMS message"),
         "hint": _plain("Type to search WhatCounts' SMS messages."),
         "element": {"type": "external_select", "action_id": "message_name", "min_query_length": 0,
                     "placeholder": _plain("Search messages by name")}},
        {"type": "input", "block_id": "sender_code", "label": _plain("Sender code"), "dispatch_action": True,
         "element": {"type": "static_select", "action_id": "sender_code",
                     "placeholder": _plain("Choose a sender code"),
                     "initial_option": _option("5551234567 \u00b7 Bench", "5551234567"),
                     "options": [_option("5551234567 \u00b7 Bench", "5551234567")]}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": "*Bench*: 1 approval needed \u00b7 no daily cap \u00b7 no quiet hours"}]},
        {"type": "input", "block_id": "campaign_name", "label": _plain("Campaign name"), "optional": False,
         "element": {"type": "plain_text_input", "action_id": "value", "max_length": 255}},
        {"type": "input", "block_id": "description", "label": _plain("Description"), "optional": True,
         "element": {"type": "plain_text_input", "action_id": "value", "max_length": 500}},
        {"type": "input", "block_id": "group_name", "label": _plain("Send to"),
         "hint": _plain("The sender code's registered groups."),
         "element": {"type": "static_select", "action_id": "value",
                     "placeholder": _plain("Choose a group, or All contacts"),
                     "options": [_option("All contacts of the sender code", "*", "EVERY contact: no group"),
                                 _option("VIP customers", "VIP customers")]}},
    ],
}


def card(request_id: str) -> list[dict[str, Any]]:
    """A card with an Approve button carrying `request_id`, as the bot's does."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": "*A request* to send an SMS campaign"}},
            {"type": "actions", "block_id": "decision", "elements": [
                {"type": "button", "action_id": "approve", "value": request_id, "style": "primary",
                 "text": _plain("Approve")}]}]


def build(open_modal: bool = False) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"], token_verification_enabled=False)

    if open_modal:
        @app.command("/sms-send")
        def sms_send_form(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
            ack()
            client.views_open(trigger_id=command["trigger_id"], view=MODAL)

        @app.view(MODAL["callback_id"])
        def form_submitted(ack: Ack, view: dict[str, Any], client: WebClient) -> None:
            channel = json.loads(view["private_metadata"])["channel_id"]
            client.chat_postMessage(channel=channel, text="A request", blocks=card(view["id"]))
            ack()

        @app.action("approve")
        def approved(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            ack()
            client.chat_postMessage(channel=body["channel"]["id"], thread_ts=body["message"]["ts"],
                                    text=f"Sent: {body['actions'][0]['value']}")
    else:
        @app.command("/sms-send")
        def sms_send(ack: Ack) -> None:
            ack()

    slack = SlackRequestHandler(app)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return application


class _Bare(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types: its base is Any
    def __init__(self, options: dict[str, Any], open_modal: bool) -> None:
        self.options = options
        self.open_modal = open_modal
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        return build(self.open_modal)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--open-modal", action="store_true", help="call views.open after ack(): the floor")
    args = parser.parse_args()
    options = gunicorn_options(Settings(), "127.0.0.1", args.port, args.workers, args.threads)
    for ours in ("logger_class", "child_exit"):  # the bot's own logging and metrics hooks
        options.pop(ours)
    _Bare(options, args.open_modal).run()


if __name__ == "__main__":
    main()
