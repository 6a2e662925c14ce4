"""Block Kit rendering: the request modal, the approval card and the outcome message.

Built with `slack_sdk.models`, whose `to_dict()` checks Slack's length limits. Everything a
person typed is escaped, so a description cannot ping `<!channel>` or fake a link.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock, Block, ButtonElement, ConfirmObject, ContextBlock, InputBlock, MarkdownTextObject,
    Option, PlainTextInputElement, SectionBlock, StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.fields import MAX_DESCRIPTION, MAX_GROUP, MAX_NAME
from bot.models import SendRequest, State
from bot.sends import RequestView
from bot.whatcounts import explain_rejection

REQUEST_CALLBACK = "sms_send_request"
INPUT_ACTION = "value"
APPROVE, REJECT, CANCEL = "approve", "reject", "cancel"
MAX_SELECT_OPTIONS = 100

HELP = (
    "*/sms-send* asks for an SMS campaign to be sent through WhatCounts.\n"
    "• `/sms-send` opens a form: message name, sender code, campaign name, and optionally a "
    "description and a group name.\n"
    "• The bot posts the request in this channel; an approver for that sender code (not you) "
    "clicks *Approve* and the bot sends it, once, then posts WhatCounts' answer in the thread.\n"
    "• Until then you can *Cancel* it and approvers can *Reject* it. Requests expire if nobody decides.\n"
    "• Leaving *Group name* empty sends to every contact of the sender code.\n"
    "• `/sms-send help` shows this."
)


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_time(request_time: Any) -> str:
    return f"{request_time:%Y-%m-%d %H:%M} UTC"


# --- the modal ---------------------------------------------------------------------------


def _text_input(block_id: str, label: str, limit: int, *, optional: bool = False, hint: str | None = None,
                multiline: bool = False, placeholder: str | None = None) -> InputBlock:
    return InputBlock(
        block_id=block_id, label=label, optional=optional, hint=hint,
        element=PlainTextInputElement(action_id=INPUT_ACTION, max_length=limit, multiline=multiline,
                                      placeholder=placeholder),
    )


def request_modal(channel_id: str, team_id: str, sender_codes: list[str] | None) -> dict[str, Any]:
    """`sender_codes`: the codes to offer in a select, or None for a validated text input."""
    if sender_codes:
        sender = InputBlock(block_id="sender_code", label="Sender code", element=StaticSelectElement(
            action_id=INPUT_ACTION, placeholder="Choose a sender code",
            options=[Option(value=code, text=code) for code in sender_codes[:MAX_SELECT_OPTIONS]]))
    else:
        sender = _text_input("sender_code", "Sender code", 20, placeholder="e.g. 5551234567 or 12345",
                             hint="A short code (5-6 digits) or a US phone number.")
    blocks: list[Block] = [
        _text_input("message_name", "Message name", MAX_NAME, hint="The SMS message's name in WhatCounts."),
        sender,
        _text_input("campaign_name", "Campaign name", MAX_NAME),
        _text_input("description", "Description", MAX_DESCRIPTION, optional=True, multiline=False),
        _text_input("group_name", "Group name", MAX_GROUP, optional=True,
                    hint="Empty sends to EVERY contact of the sender code."),
    ]
    view = View(type="modal", callback_id=REQUEST_CALLBACK, title="Send an SMS campaign",
                submit="Request approval", close="Cancel", blocks=blocks,
                private_metadata=json.dumps({"channel_id": channel_id, "team_id": team_id}))
    return view.to_dict()


# --- the approval card -------------------------------------------------------------------

STATE_HEADLINE = {
    State.PENDING: ":hourglass_flowing_sand: *SMS send waiting for approval*",
    State.SENDING: ":outbox_tray: *SMS send approved, sending…*",
    State.SENT: ":white_check_mark: *SMS send submitted to WhatCounts*",
    State.FAILED: ":x: *SMS send failed*",
    State.UNKNOWN: ":warning: *SMS send: outcome unknown*",
    State.REJECTED: ":no_entry_sign: *SMS send rejected*",
    State.CANCELLED: ":heavy_multiplication_x: *SMS send cancelled*",
    State.EXPIRED: ":alarm_clock: *SMS send request expired*",
}


def _fields(request: SendRequest) -> list[MarkdownTextObject]:
    group = escape(request.group_name) if request.group_name else "*All contacts* of the sender code"
    rows = [
        ("Requested by", f"<@{request.requester_id}>"),
        ("Message name", escape(request.message_name)),
        ("Sender code", request.sender_code),
        ("Campaign name", escape(request.campaign_name)),
        ("Group name", group),
        ("Description", escape(request.description) if request.description else "_none_"),
    ]
    return [MarkdownTextObject(text=f"*{label}*\n{value}") for label, value in rows]


def _approvals_line(view: RequestView) -> str:
    request = view.request
    given = ", ".join(f"<@{a}>" for a in view.approvers) or "none yet"
    line = f"Approvals: {len(view.approvers)} of {request.approvals_required} ({given})"
    if request.allow_self_approval:
        line += " · the requester may approve this sender code's sends"
    return line


def _reason(r: SendRequest) -> str:
    """Why a request stopped; an admin's record of an unknown outcome names the admin."""
    recorded_by = f" (recorded by <@{r.closed_by}>)" if r.closed_by and r.state in (State.SENT, State.FAILED) else ""
    return escape(r.reason or "") + recorded_by


def outcome_text(view: RequestView) -> str:
    """What happened, in words a marketer understands."""
    r = view.request
    who = f" by <@{r.closed_by}>" if r.closed_by else ""
    when = f" at {fmt_time(r.finished_at)}" if r.finished_at else ""
    approvers = ", ".join(f"<@{a}>" for a in view.approvers)
    match r.state:
        case State.PENDING:
            return f"Expires at {fmt_time(r.expires_at)}."
        case State.SENDING:
            return f"Approved by {approvers}; sending to WhatCounts…"
        case State.SENT:
            text = (f"WhatCounts accepted the send: id *{escape(r.whatcounts_id or '?')}*, "
                    f"status *{escape(r.whatcounts_status or '?')}*. Approved by {approvers}.")
            return text + (f"\n{_reason(r)}" if r.reason else "") + \
                "\nQuote the id to WhatCounts support for any question about this send."
        case State.FAILED if r.http_status:
            return (f"WhatCounts refused the send (HTTP {r.http_status}): “{escape(r.error_text or '')}”.\n"
                    f"{explain_rejection(r.http_status, r.error_text or '')}")
        case State.FAILED | State.UNKNOWN:
            text = _reason(r)
            if r.state == State.UNKNOWN:
                text += ("\nIt will not be sent again by itself. Check in WhatCounts (or ask its support) whether campaign "
                         f"“{escape(r.campaign_name)}” went out before asking again. An admin can record "
                         f"the answer with `sms-bot resolve {r.id} sent|not-sent`.")
            return text
        case State.REJECTED:
            return f"Rejected{who}{when}."
        case State.CANCELLED:
            return f"Cancelled{who}{when}."
        case State.EXPIRED:
            return f"Expired{when}: nobody approved it in time. Run /sms-send again if it is still wanted."
    return ""


def card(view: RequestView) -> list[dict[str, Any]]:
    request = view.request
    blocks: list[Block] = [
        SectionBlock(text=STATE_HEADLINE[State(request.state)]),
        SectionBlock(fields=_fields(request)),
        ContextBlock(elements=[MarkdownTextObject(text=f"Request `{request.id}` · {_approvals_line(view)}")]),
        SectionBlock(text=outcome_text(view)),
    ]
    if request.state == State.PENDING:
        audience = escape(request.group_name) if request.group_name else "EVERY contact"
        blocks.append(ActionsBlock(block_id="decision", elements=[
            ButtonElement(text="Approve", action_id=APPROVE, value=request.id, style="primary",
                          confirm=ConfirmObject(title="Send this SMS?", confirm="Approve", deny="Back",
                                                text=f"This sends to {audience} of sender code "
                                                     f"{request.sender_code}. It cannot be undone.")),
            ButtonElement(text="Reject", action_id=REJECT, value=request.id, style="danger"),
            ButtonElement(text="Cancel", action_id=CANCEL, value=request.id),
        ]))
    return [block.to_dict() for block in blocks]


def card_fallback(view: RequestView) -> str:
    r = view.request
    return f"SMS send {r.state}: {r.message_name} to sender code {r.sender_code} (request {r.id})"


def outcome_message(view: RequestView) -> str:
    """The thread reply (also broadcast to the channel) once a send has an outcome."""
    r = view.request
    group = escape(r.group_name) if r.group_name else "All contacts"
    summary = (f"Message *{escape(r.message_name)}* · sender code *{r.sender_code}* · campaign "
               f"*{escape(r.campaign_name)}* · group *{group}*"
               + (f" · description “{escape(r.description)}”" if r.description else "")
               + f"\nRequested by <@{r.requester_id}>, approved by "
               + (", ".join(f"<@{a}>" for a in view.approvers) or "nobody"))
    return f"{STATE_HEADLINE[State(r.state)]}\n{outcome_text(view)}\n{summary}"
