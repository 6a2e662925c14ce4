"""The request form: its message type-ahead, redrawing it for the chosen sender code, and submitting it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.ops.work import BackgroundWork
from bot.requests.choices import RequestForm
from bot.requests.fields import parse_fields, parse_override, parse_send_at
from bot.requests.lifecycle import Invalid, Lifecycle, Refused, Unregistered
from bot.requests.reading import RequestView
from bot.slack import blocks
from bot.slack.client import card_client
from bot.slack.database_down import ACK_BUDGET, DATABASE_DOWN, DATABASE_ERRORS, in_time
from bot.slack.submission import NotPosted, Posted, Published, Submission
from bot.store.models import SendRequest
from bot.whatcounts.catalog import MessageCatalog

log = logging.getLogger(__name__)

SUGGEST_WAIT = 1.5  # seconds a type-ahead waits for WhatCounts, well inside Slack's 3 s
# Seconds a submission waits for its card to be posted and stored before answering "posting…"
# (counted from when the listener starts: Slack's 3 s also cover the network and Bolt).
SUBMIT_BUDGET = 2.0


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
             work: BackgroundWork, stored: Callable[[RequestView], None], reads: BackgroundWork,
             after_ack: BackgroundWork) -> None:
    """`stored`: told of each new request (the approvers' Home tabs), as background work of its own.
    `reads`: where a submission's checks run, within `ACK_BUDGET` (see `in_time`). `after_ack`: where
    the form is redrawn, once a choice in it is answered."""
    submission = Submission(lifecycle, card_client(app.client))

    def publish(draft: SendRequest) -> Published:
        result = submission.publish(draft)
        if isinstance(result, Posted):
            work.submit(stored, result.view)
        return result

    @app.options(blocks.MESSAGE_ACTION)
    def suggest_messages(ack: Ack, payload: dict[str, Any]) -> None:
        """The message type-ahead, answered within Slack's 3 s even when WhatCounts is slow."""
        query = str(payload.get("value") or "")
        found = catalog.search(query, wait=SUGGEST_WAIT)
        ack(options=blocks.message_options(found, query))

    def redraw(body: dict[str, Any], client: WebClient, chosen: dict[str, str | None]) -> None:
        """Redraw the form for what is chosen in it now: the sender code's groups and rules, and the
        message's text, length and segments. `chosen`: the field just changed, over the form's state."""
        view, user_id = body["view"], body["user"]["id"]
        channel_id, team_id = _metadata(view)
        values = (view.get("state") or {}).get("values") or {}
        picked = {key: submitted_value(values, key) for key in ("sender_code", "message_name")} | chosen
        try:
            choices = form.choices(user_id, channel_id)
            if isinstance(choices, Refused):
                return  # the grant was revoked while the form was open; submitting will say so
            code = choices.get(picked["sender_code"]) if picked["sender_code"] else None
            status = form.code_status(code) if code else None
        except DATABASE_ERRORS as exc:  # acknowledged already: say it beside the form
            log.warning("form not redrawn: the database could not be reached (%s)", type(exc).__name__)
            try:
                client.chat_postEphemeral(channel=channel_id, user=user_id, text=DATABASE_DOWN)
            except SlackApiError as error:
                log.warning("database-down notice not posted: %s", error.response.get("error"))
            return
        message = picked["message_name"]
        preview = catalog.get(message, wait=SUGGEST_WAIT) if message else None
        modal = blocks.request_modal(channel_id, team_id, choices, status, form.dry_run, preview, message)
        try:
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=modal)
        except SlackApiError as exc:  # hash_conflict: a newer choice redraws it
            log.info("form not redrawn: %s", exc.response.get("error"))

    @app.action(blocks.SENDER_CODE_ACTION)
    def sender_code_chosen(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Redraw the form with the chosen sender code's groups and rules."""
        ack()
        after_ack.submit(redraw, body, client, {"sender_code": (action.get("selected_option") or {}).get("value")})

    @app.action(blocks.MESSAGE_ACTION)
    def message_chosen(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Redraw the form with the chosen message's text, length and segments under its select."""
        ack()
        after_ack.submit(redraw, body, client, {"message_name": (action.get("selected_option") or {}).get("value")})

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
        override, override_errors = parse_override(submitted_value(values, "quiet_override"))
        picker: dict[str, Any] = next(iter(values.get(blocks.SEND_AT_BLOCK, {}).values()), {})
        send_at, send_at_errors = parse_send_at(picker.get("selected_date_time"))
        if fields is None or override_errors or send_at_errors:
            refuse({**errors, **override_errors, **send_at_errors})
            return
        channel_id, team_id = _metadata(view)
        user_id = body["user"]["id"]
        view_id = view.get("id") or None

        def check() -> tuple[SendRequest | Invalid | Unregistered, RequestView | None]:
            draft = lifecycle.draft(user_id, team_id, channel_id, fields, quiet_override=override,
                                     send_at=send_at)
            return draft, lifecycle.submitted(view_id) if view_id and isinstance(draft, SendRequest) else None

        # Reads only, so a slow database is given up on within the budget (see `in_time`).
        draft, earlier = in_time(reads, ACK_BUDGET - (time.monotonic() - started), check)
        if isinstance(draft, Invalid):
            refuse(draft.errors)
            return
        if isinstance(draft, Unregistered):
            refuse({"sender_code": f"Sender code {draft.code} is not registered: an admin adds it with "
                                   f"`/sms-send admin sender-code set {draft.code}`."})
            return
        draft.view_id = view_id
        if earlier is not None:
            ack()  # the same form again (a double click, or a retry of a slow answer): one request
            return
        publishing = work.submit(publish, draft)
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


