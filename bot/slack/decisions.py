"""Decisions that carry words: Reject (a required reason), Approve with a note, and an admin's
Record outcome for a send whose outcome is unknown. (An admin's Withdraw is a plain click: actions.py.)

A click opens a small modal with the click's `trigger_id` (Slack's confirm dialog holds no
input, so the words need a modal); the modal's submission is the decision. What people type is
checked like the form's fields and refused inline; a refusal (no grant, already decided) is
shown on the modal's field, and the decision itself is taken by the same Lifecycle as every
other surface. The requester is told how it ended in the card's thread (`CardPublisher.post_outcome`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.ops.work import BackgroundWork
from bot.requests.fields import parse_note
from bot.requests.lifecycle import TERMINAL_WITH_OUTCOME, Changed, Closed, Decision, Lifecycle, Refused
from bot.requests.reading import RequestView
from bot.slack import blocks
from bot.slack.actions import ALREADY, tell
from bot.slack.cards import CardPublisher
from bot.slack.database_down import DATABASE_DOWN, DATABASE_ERRORS
from bot.slack.views import submitted_value
from bot.store.models import State

log = logging.getLogger(__name__)

NOT_UNKNOWN = "This send's outcome is already known, so there is nothing to record."


def _request_id(body: dict[str, Any]) -> str:
    meta = (body.get("view") or {}).get("private_metadata") or "{}"
    try:
        return str(json.loads(meta).get("request_id", ""))
    except (ValueError, AttributeError):
        return ""


def register(app: App, lifecycle: Lifecycle, publisher: CardPublisher, work: BackgroundWork,
             after_ack: BackgroundWork) -> None:
    """The modals open on `after_ack`, once the click is answered; what a decision sets off runs on `work`."""
    modals: dict[str, tuple[Callable[[RequestView], dict[str, Any]], tuple[State, ...]]] = {
        blocks.REJECT: (blocks.reject_modal, (State.PENDING,)),
        blocks.APPROVE_WITH_NOTE: (blocks.approve_modal, (State.PENDING,)),
        blocks.RECORD_OUTCOME: (blocks.outcome_modal, (State.UNKNOWN,)),
    }

    def clicked(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        after_ack.submit(open_modal, body, action, client)

    def open_modal(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Open the decision's modal at once: a trigger_id is good for 3 s."""
        user_id, channel_id = body["user"]["id"], (body.get("channel") or {}).get("id", "")
        make, states = modals[action["action_id"]]
        try:
            view = lifecycle.view(str(action.get("value", "")))
        except DATABASE_ERRORS:
            tell(client, channel_id, user_id, DATABASE_DOWN)
            return
        if view is None:
            tell(client, channel_id, user_id, "This request no longer exists.")
            return
        if view.request.state not in states:
            tell(client, channel_id, user_id,
                 NOT_UNKNOWN if State.UNKNOWN in states else ALREADY[view.request.state])
            return
        try:
            client.views_open(trigger_id=body.get("trigger_id", ""), view=make(view))
        except SlackApiError as exc:  # expired_trigger_id: Slack was slow; clicking again opens it
            log.warning("decision modal not opened: %s", exc.response.get("error"))
            tell(client, channel_id, user_id, "Slack did not open the window in time. Click the button again.")

    for action_id in modals:
        app.action(action_id)(clicked)

    def follow_up(decision: Changed, event: str, user_id: str) -> None:
        """After the decision committed: the card, the thread, and the send an approval claimed."""
        view = decision.view
        if event == "rejected":
            publisher.show(view)  # the card, and the reason told to the requester, once (the outbox's lease)
            return
        if decision.send:
            publisher.send(decision, blocks.approval_reply(view, user_id))
            return
        publisher.refresh(view)
        publisher.reply(view, blocks.approval_reply(view, user_id))
        if view.request.state in TERMINAL_WITH_OUTCOME:
            publisher.post_outcome(view)  # the sender code's policy stopped the send at approval

    def decided(ack: Ack, decision: Decision, event: str, user_id: str) -> None:
        match decision:
            case Refused(reason=reason):
                ack(response_action="errors", errors={blocks.NOTE_BLOCK: reason})
            case Closed(view=view):
                ack(response_action="errors", errors={blocks.NOTE_BLOCK: ALREADY[view.request.state]})
            case Changed():
                ack()
                work.submit(follow_up, decision, event, user_id)

    def words(ack: Ack, view: dict[str, Any], label: str, required: bool) -> tuple[bool, str | None]:
        """The typed note, checked; False (and the modal told) if it is refused."""
        text, problem = parse_note(submitted_value(view.get("state", {}).get("values", {}), blocks.NOTE_BLOCK),
                                   label, required=required)
        if problem is not None:
            ack(response_action="errors", errors={blocks.NOTE_BLOCK: problem})
            return False, None
        return True, text

    def decide_with_words(ack: Ack, body: dict[str, Any], view: dict[str, Any], label: str, required: bool,
                          event: str, decide: Callable[[str, str, str | None], Decision]) -> None:
        """A decision modal submitted: its words checked on the field, then `decide(request, user, words)`."""
        ok, text = words(ack, view, label, required=required)
        if not ok:
            return
        user_id = body["user"]["id"]
        try:
            decision = decide(_request_id(body), user_id, text)
        except DATABASE_ERRORS:
            ack(response_action="errors", errors={blocks.NOTE_BLOCK: DATABASE_DOWN})
            return
        decided(ack, decision, event, user_id)

    @app.view(blocks.REJECT_CALLBACK)
    def reject_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        # `required`: the words are never None here
        decide_with_words(ack, body, view, "reason", True, "rejected",
                          lambda request_id, user_id, reason: lifecycle.reject(request_id, user_id, reason or ""))

    @app.view(blocks.APPROVE_CALLBACK)
    def approve_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        decide_with_words(ack, body, view, "note", False, "approved", lifecycle.approve)

    @app.view(blocks.OUTCOME_CALLBACK)
    def outcome_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        verdict = submitted_value(view.get("state", {}).get("values", {}), blocks.VERDICT_BLOCK)
        if verdict not in ("sent", "not-sent"):
            ack(response_action="errors", errors={blocks.VERDICT_BLOCK: "Choose whether it was sent."})
            return
        ok, note = words(ack, view, "note", required=True)
        if not ok or note is None:
            return
        try:
            resolved = lifecycle.resolve(_request_id(body), body["user"]["id"], verdict == "sent", note)
        except DATABASE_ERRORS:
            ack(response_action="errors", errors={blocks.NOTE_BLOCK: DATABASE_DOWN})
            return
        if isinstance(resolved, Refused):
            ack(response_action="errors", errors={blocks.NOTE_BLOCK: resolved.reason})
            return
        ack()
        work.submit(publisher.show, resolved)  # the card, and the outcome in the thread, naming the admin
