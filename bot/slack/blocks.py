"""Block Kit rendering: the request modal, the approval card and the outcome message.

Built with `slack_sdk.models`, whose `to_dict()` checks Slack's length limits. What people
typed (or WhatCounts holds) is shown literally on the card: in rich text, whose text is
never read as mrkdwn, so `*`, `_`, `~` and backticks are seen as they will be sent, and a
description cannot ping `<!channel>` or fake a link. mrkdwn has no escape for its
formatting characters (only &, < and >), so typed text goes into mrkdwn only escaped, where
a stray `*` can do no more than change how it looks (the fallback texts, the outcome reply).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, assert_never

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DateTimePickerElement,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RichTextBlock,
    RichTextElementParts,
    RichTextQuoteElement,
    RichTextSectionElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.requests.choices import CodeStatus, FormChoices
from bot.requests.fields import MAX_DESCRIPTION, MAX_NAME
from bot.requests.lifecycle import WITHDRAWN_SCHEDULED
from bot.requests.reading import RequestView, approvals_rule
from bot.requests.reminders import Reminder
from bot.rules import sending
from bot.rules.sender_codes import ALL_CONTACTS, SenderCodeRules
from bot.slack.mrkdwn import escape, local_time, mention, mentions
from bot.store.models import SendRequest, State
from bot.whatcounts.catalog import MessageSearch, Unverifiable
from bot.whatcounts.client import RejectionCause, SmsMessage, rejection_cause
from bot.whatcounts.segments import count_segments

REQUEST_CALLBACK = "sms_send_request"
INPUT_ACTION = "value"
MESSAGE_ACTION = "message_name"  # the type-ahead: Slack asks for its options by this action_id
SENDER_CODE_ACTION = "sender_code"  # choosing one redraws the form with its groups and rules
APPROVE, REJECT, CANCEL = "approve", "reject", "cancel"
APPROVE_WITH_NOTE, WITHDRAW, RECORD_OUTCOME = "approve_with_note", "withdraw", "record_outcome"
TEST_SEND = "test_send"  # "Send test to my phone": bot.slack.test_sends
# The modals a decision with words is made in; each carries its request in `private_metadata`.
REJECT_CALLBACK, APPROVE_CALLBACK, OUTCOME_CALLBACK = "reject_request", "approve_request", "record_outcome"
NOTE_BLOCK, VERDICT_BLOCK = "note", "verdict"
SEND_AT_BLOCK = "send_at"
MAX_SELECT_OPTIONS = 100
MAX_OPTION_VALUE = 150

HELP = (
    "*/sms-send* asks for an SMS campaign to be sent through WhatCounts.\n"
    "• `/sms-send` opens a form: the SMS message (searched in WhatCounts), the sender code, a campaign "
    "name, an optional description, and who receives it: one of the sender code's registered groups, "
    "or *All contacts*.\n"
    "• The bot posts the request in this channel; an approver for that sender code (not you) "
    "clicks *Approve* and the bot sends it, once, then posts WhatCounts' answer in the thread.\n"
    "• Until then you can *Cancel request* and approvers can *Reject* it. Requests expire if nobody decides.\n"
    "• *Send at* (optional) sends it at a time you choose, once approved; until then you can still cancel it.\n"
    "• Sender codes have quiet hours, a daily cap and sometimes a list of channels: the form says "
    "what stops a request before anything is posted.\n"
    "• *Send test to my phone* on a waiting card texts the message to your own phone, registered by an admin.\n"
    "• `/sms-send admin` (admins): grants, sender codes and test phones.\n"
    "• `/sms-send help` shows this."
)


def fit(markup: str, limit: int) -> str:
    """Markup (already escaped) clipped to `limit` characters, never cutting an entity (`&amp;`)
    or a `<…>` token in two: clipping before escaping lets escaping push text past Slack's limits."""
    if len(markup) <= limit:
        return markup
    cut = markup[:limit - 1]
    if (amp := cut.rfind("&")) > cut.rfind(";"):
        cut = cut[:amp]
    if (lt := cut.rfind("<")) > cut.rfind(">"):
        cut = cut[:lt]
    return cut + "…"


# --- the modal ---------------------------------------------------------------------------


def _text_input(block_id: str, label: str, limit: int, *, optional: bool = False, hint: str | None = None,
                placeholder: str | None = None) -> InputBlock:
    return InputBlock(
        block_id=block_id, label=label, optional=optional, hint=hint,
        element=PlainTextInputElement(action_id=INPUT_ACTION, max_length=limit, placeholder=placeholder),
    )


def _option(value: str, text: str, description: str | None = None) -> Option:
    return Option(value=value, text=_clip(text, 75), description=_clip(description, 75) if description else None)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _code_option(rules: SenderCodeRules) -> Option:
    return _option(rules.code, f"{rules.code} · {rules.label}" if rules.label else rules.code)


def policy_summary(status: CodeStatus) -> str:
    """The chosen sender code's rules and where it stands today, under the select in the form."""
    s = status.rules
    cap = f"{status.sends_today} of {s.daily_cap} sends used today" if s.daily_cap else "no daily cap"
    quiet = (f"quiet hours {s.quiet_hours}" + (" *(in effect now)*" if status.quiet_now else "")
             if s.quiet_hours else "no quiet hours")
    return f"*{escape(s.label or s.code)}*: {approvals_needed(s)} · {cap} · {quiet}"


def approvals_needed(rules: SenderCodeRules) -> str:
    """How many approvals a send of the code needs, and how many for All contacts where that differs."""
    words = f"{rules.approvals} approval{'s' if rules.approvals != 1 else ''} needed"
    if (all_contacts := rules.approvals_for(None)) != rules.approvals:
        words += f" ({all_contacts} for All contacts)"
    return words


def request_modal(channel_id: str, team_id: str, choices: FormChoices, status: CodeStatus | None,
                  dry_run: bool = False, preview: Preview = None, message: str | None = None) -> dict[str, Any]:
    """The request form. `status`: the chosen sender code, whose groups and rules it then shows;
    `preview`: the message chosen (named `message`), whose text it then shows."""
    chosen = status.rules if status else None
    override = bool(chosen and chosen.quiet_hours and choices.may_override(chosen.code))
    form = _form(tuple(choices.codes[:MAX_SELECT_OPTIONS]), status, override, dry_run, preview, message)
    return {**form, "private_metadata": json.dumps({"channel_id": channel_id, "team_id": team_id})}


@functools.lru_cache(maxsize=256)
def _form(codes: tuple[SenderCodeRules, ...], status: CodeStatus | None, override: bool,
          dry_run: bool, preview: Preview = None, message: str | None = None) -> dict[str, Any]:
    """The form, drawn (and checked by `to_dict()`) once for each set of inputs: building the
    slack_sdk models was most of what an /sms-send cost. Forms share it, so nothing may change it."""
    chosen = status.rules if status else None
    blocks: list[Block] = []
    if dry_run:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=":test_tube: *DRY RUN*: requests are approved as usual, but nothing is sent to WhatCounts.")]))
    blocks += [
        # dispatch_action: choosing a message tells the bot at once, which shows its text under the select.
        InputBlock(block_id="message_name", label="SMS message", hint="Type to search WhatCounts' SMS messages.",
                   dispatch_action=True,
                   element=ExternalDataSelectElement(action_id=MESSAGE_ACTION, min_query_length=0,
                                                     placeholder="Search messages by name")),
        *message_preview(preview, message),
        InputBlock(block_id="sender_code", label="Sender code", dispatch_action=True, element=StaticSelectElement(
            action_id=SENDER_CODE_ACTION, placeholder="Choose a sender code",
            initial_option=_code_option(chosen) if chosen else None,
            options=[_code_option(c) for c in codes])),
    ]
    if status:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=policy_summary(status))]))
    blocks += [
        _text_input("campaign_name", "Campaign name", MAX_NAME),
        _text_input("description", "Description", MAX_DESCRIPTION, optional=True),
        _send_to(chosen),
        InputBlock(block_id=SEND_AT_BLOCK, label="Send at", optional=True, element=DateTimePickerElement(
            action_id=INPUT_ACTION), hint="Leave empty to send as soon as it is approved. In your own time zone; "
                                          "approvals must come before it."),
    ]
    if chosen and override:
        blocks.append(_text_input(
            "quiet_override", "Quiet-hours override (admins)", MAX_DESCRIPTION, optional=True,
            hint=f"Only to send inside quiet hours ({chosen.quiet_hours}): why. "
                 "Shown on the card and kept in the audit trail."))
    return View(type="modal", callback_id=REQUEST_CALLBACK, title="Send an SMS campaign",
                submit="Request approval", close="Discard", blocks=blocks).to_dict()


def _send_to(chosen: SenderCodeRules | None) -> Block:
    """Where to send: the chosen code's groups first, All contacts last and never preselected, so the
    widest send is never the easy one. No code chosen yet: no choice at all, rather than All contacts alone."""
    if chosen is None:
        return ContextBlock(elements=[MarkdownTextObject(
            text="*Send to*: choose a sender code above to see its groups.")])
    groups = [_option(g, g) for g in chosen.groups[:MAX_SELECT_OPTIONS - 1]]
    groups.append(_option(ALL_CONTACTS, "All contacts of the sender code", "EVERY contact: no group"))
    return InputBlock(block_id="group_name", label="Send to", hint="The sender code's registered groups.",
                      element=StaticSelectElement(action_id=INPUT_ACTION, options=groups,
                                                  placeholder="Choose a group, or All contacts"))


WITHDRAWN = "This SMS send request was not saved, so nothing will be sent. Run /sms-send again if it is wanted."


def _notice(text: str, title: str = "Send an SMS campaign") -> dict[str, Any]:
    """A modal that only says something, with a Close button."""
    return View(type="modal", callback_id=f"{REQUEST_CALLBACK}_notice", title=title, close="Close",
                blocks=[SectionBlock(text=fit(text, SECTION_TEXT))]).to_dict()


def posting_modal(channel_id: str) -> dict[str, Any]:
    """What the form turns into when Slack is slow to take the request's card."""
    return _notice(f":hourglass_flowing_sand: Posting your request in <#{channel_id}>… Slack is slow to answer. "
                   "This window will say when it is done; you can close it, and if the request cannot be "
                   "posted the bot will tell you in the channel.")


def posted_modal(request_id: str, channel_id: str) -> dict[str, Any]:
    return _notice(f":white_check_mark: Your request `{request_id}` is posted in <#{channel_id}> for approval.")


def not_posted_modal(problem: str) -> dict[str, Any]:
    return _notice(f":x: *Your request was not posted.* {escape(problem)}\nRun /sms-send again to make it.")


def message_options(found: MessageSearch, query: str) -> list[dict[str, Any]]:
    """Type-ahead options: WhatCounts' messages, or, if it cannot be asked, what was typed, unverified."""
    options = [_option(m.name, m.name, m.text or None) for m in found.messages if len(m.name) <= MAX_OPTION_VALUE]
    typed = query.strip()
    if not found.listed and typed and len(typed) <= MAX_OPTION_VALUE:
        options.insert(0, _option(typed, typed, "WhatCounts unreachable: cannot be verified"))
    return [option.to_dict() for option in options[:MAX_SELECT_OPTIONS]]


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
    State.SCHEDULED: ":calendar: *SMS send approved, scheduled*",
}


def headline(request: SendRequest) -> str:
    if not request.dry_run:
        return STATE_HEADLINE[request.state]
    if request.state == State.SENT:
        return ":test_tube: *DRY RUN complete: approved, and nothing was sent to WhatCounts*"
    return f":test_tube: *DRY RUN* (nothing will be sent to WhatCounts) · {STATE_HEADLINE[request.state]}"


RichPart = RichTextElementParts.Text | RichTextElementParts.User | RichTextElementParts.Emoji


def _literal(text: str) -> RichTextElementParts.Text:
    """Text shown exactly as it is: rich text is never read as mrkdwn."""
    return RichTextElementParts.Text(text=text)


def _bold(text: str) -> RichTextElementParts.Text:
    return RichTextElementParts.Text(text=text, style={"bold": True})


def _fields(request: SendRequest) -> RichTextBlock:
    """The request's fields, one per line, what people typed shown literally."""
    label = f" ({request.sender_label})" if request.sender_label else ""
    rows: list[tuple[str, list[RichPart]]] = [
        ("Requested by", [RichTextElementParts.User(user_id=request.requester_id)]),
        ("Message name", [_literal(request.message_name)]),
        ("Sender code", [_literal(f"{request.sender_code}{label}")]),
        ("Campaign name", [_literal(request.campaign_name)]),
        ("Send to", _audience(request)),
    ]
    if request.description:  # rows with nothing to say are left out
        rows.append(("Description", [_literal(request.description)]))
    if request.send_at:  # in the code's zone as far as the card knows it (its quiet hours'); everyone's below
        zone = request.quiet_hours.timezone if request.quiet_hours else None
        rows.append(("Send at", [_literal(sending.in_zone(request.send_at, zone))]))
    if request.quiet_hours:
        rows.append(("Quiet hours", _quiet_hours(request)))
    parts: list[RichPart] = []
    for name, value in rows:
        parts += [*([_literal("\n")] if parts else []), _bold(f"{name}: "), *value]
    return RichTextBlock(elements=[RichTextSectionElement(elements=parts)])


def _audience(request: SendRequest) -> list[RichPart]:
    if request.group_name:
        return [_literal("group "), _bold(request.group_name)]
    return [RichTextElementParts.Emoji(name="rotating_light"), _literal(" "), _bold("ALL CONTACTS"),
            _literal(" of the sender code")]


def _quiet_hours(request: SendRequest) -> list[RichPart]:
    parts: list[RichPart] = [_literal(sending.quiet_status(request.quiet_hours, request.created_at,
                                                           request.expires_at, request.send_at))]
    if request.quiet_override:
        parts += [_literal("\n"), RichTextElementParts.Emoji(name="warning"), _literal(" "), _bold("Override"),
                  _literal(" by "), RichTextElementParts.User(user_id=request.requester_id),
                  _literal(f": “{request.quiet_override}”")]
    return parts


SECTION_TEXT = 3000  # Block Kit's limit on a section's text
MAX_QUOTED = 2500  # of a section's 3000 characters
MAX_ERROR = 2000  # WhatCounts' words on a refusal, of the outcome section's 3000

# What a refusal from WhatCounts means for the person who asked for the send; the bold words name the card's fields.
REJECTION_ADVICE = {
    RejectionCause.CREDENTIALS: "WhatCounts did not accept the bot's credentials, so nothing was sent: ask the "
                                "people who run this bot to fix its WhatCounts login, then request the send again.",
    RejectionCause.NO_ACCESS: "WhatCounts refused the bot access to this call: ask the bot's operator to check its "
                              "API settings.",
    RejectionCause.NO_SUCH_MESSAGE: "WhatCounts has no SMS message with that name: check the *Message name* "
                                    "(spelling and case) in WhatCounts, then request the send again.",
    RejectionCause.NO_SUCH_SENDER: "WhatCounts has no sender with that sender code: check the *Sender code*.",
    RejectionCause.NAME_TAKEN: "Something with that name already exists in WhatCounts: use a new *Campaign name*.",
    RejectionCause.UNCLEAR: "WhatCounts sometimes reports an error although part of the send went out: check in "
                            "WhatCounts before requesting it again.",
}


def message_section(request: SendRequest) -> str:
    """The text's length and SMS segments (the text itself: `message_quote`); or why it is not known."""
    if not request.message_verified or request.message_text is None:
        return (":warning: *The message could not be verified*: WhatCounts could not be reached when this "
                "was requested, so the bot could not check that the message name exists or show its text.")
    return message_size(request.message_text)


def message_size(text: str) -> str:
    return f"*Message text*: {len(text)} characters, {count_segments(text).describe()} per recipient"


Preview = SmsMessage | Unverifiable | None


def message_preview(preview: Preview, name: str | None = None) -> list[Block]:
    """Under the form's message select: the chosen message's text, length and segments, or why not."""
    if isinstance(preview, SmsMessage):
        quote = [RichTextBlock(elements=[RichTextQuoteElement(elements=[_literal(_clip(preview.text, MAX_QUOTED))])])]
        return [*(quote if preview.text else []), ContextBlock(elements=[MarkdownTextObject(
            text=message_size(preview.text) if preview.text else "*Message text*: empty")])]
    if isinstance(preview, Unverifiable):
        return [ContextBlock(elements=[MarkdownTextObject(
            text=":warning: WhatCounts could not be reached to show this message's text; you can still request it, "
                 "and the card will say whether it was checked.")])]
    if name:
        return [ContextBlock(elements=[MarkdownTextObject(
            text=f":x: WhatCounts has no SMS message named “{escape(name)}”: choose another.")])]
    return []


def message_quote(request: SendRequest) -> list[Block]:
    """The text as it will go out, quoted literally; nothing if it is not known or empty."""
    if not request.message_verified or not request.message_text:
        return []
    quote = RichTextQuoteElement(elements=[_literal(_clip(request.message_text, MAX_QUOTED))])
    return [RichTextBlock(elements=[quote])]


def _approvals_line(view: RequestView) -> str:
    request = view.request
    given = ", ".join(f"<@{a}>" for a in view.approvers) or "none yet"
    line = f"Approvals: {len(view.approvers)} of {request.approvals_required} ({given}) · {approvals_rule(request)}"
    if request.allow_self_approval:
        line += " · the requester may approve this sender code's sends"
    if asked := _asked(view):
        line += f"\n{asked}"
    return line + "".join(f"\n<@{a}>: “{escape(note)}”" for a, note in view.notes)


MAX_ASKED = 3  # approvers a card names before "and N more"


def _asked(view: RequestView) -> str:
    """Who a pending request asks to approve: the code's user group, or a few of its approvers by name.

    Only the card's first post notifies them: Slack does not notify mentions in an edited message,
    and the line goes once the request is no longer pending."""
    asked, r = view.asked, view.request
    if asked is None or r.state != State.PENDING:
        return ""
    if asked.group:
        return f"Asked to approve: <!subteam^{asked.group}>"
    if not asked.approvers:
        return (f"Nobody holds an approver grant for sender code {r.sender_code} yet: an admin must grant one "
                "before this can be approved")
    return f"Asked to approve: {_named(asked.approvers, MAX_ASKED)}"


def _named(users: Sequence[str], limit: int) -> str:
    """People as mentions, the first `limit` of them, then how many more."""
    more = f" and {len(users) - limit} more" if len(users) > limit else ""
    return mentions(users[:limit]) + more


def _reason(r: SendRequest) -> str:
    """Why a request stopped; an admin's record of an unknown outcome names the admin."""
    recorded_by = f" (recorded by <@{r.closed_by}>)" if r.closed_by and r.state in (State.SENT, State.FAILED) else ""
    return escape(r.reason or "") + recorded_by


MAX_NAMED = 5  # people mentioned by name before "and N more"


def _whom_to_ask(view: RequestView) -> str:
    """The sender code's admins, a few by name; or who runs the bot when the code has none."""
    admins = view.code_admins
    if not admins:
        return f"the people who run this bot (sender code {view.request.sender_code} has no admin)"
    return f"an admin of sender code {view.request.sender_code} ({_named(admins, MAX_NAMED)})"


def outcome_text(view: RequestView) -> str:
    """What happened, in words a marketer understands."""
    r = view.request
    who = f" by <@{r.closed_by}>" if r.closed_by else ""
    when = f", {local_time(r.finished_at)}" if r.finished_at else ""
    words = f": “{escape(r.reason)}”" if r.reason else ""
    approvers = ", ".join(f"<@{a}>" for a in view.approvers)
    match r.state:
        case State.PENDING if r.send_at:
            return f"To be sent {local_time(r.send_at)}, once approved. Expires {local_time(r.expires_at)}."
        case State.PENDING:
            return f"Expires {local_time(r.expires_at)}."
        case State.SCHEDULED:
            return (f"Approved by {approvers}; to be sent {local_time(r.send_at or r.created_at)}. Until then "
                    f"<@{r.requester_id}> can cancel it and an admin of sender code {r.sender_code} can withdraw it.")
        case State.SENDING:
            return f"Approved by {approvers}; sending to WhatCounts…"
        case State.SENT if r.dry_run:
            return f"Approved by {approvers}. {_reason(r)}"
        case State.SENT:
            text = (f"WhatCounts accepted the send: id *{escape(r.whatcounts_id or '?')}*, "
                    f"status *{escape(r.whatcounts_status or '?')}*. Approved by {approvers}.")
            return text + (f"\n{_reason(r)}" if r.reason else "") + \
                "\nQuote the id to WhatCounts support for any question about this send."
        case State.FAILED if r.http_status:
            return (f"WhatCounts refused the send (HTTP {r.http_status}): "
                    f"“{fit(escape(r.error_text or ''), MAX_ERROR)}”.\n"
                    f"{REJECTION_ADVICE[rejection_cause(r.http_status, r.error_text or '')]}")
        case State.FAILED | State.UNKNOWN:
            text = _reason(r)
            if r.state == State.UNKNOWN:
                text += ("\nIt will not be sent again by itself. Check in WhatCounts (or ask its support) whether this "
                         f"campaign went out before asking again, and tell {_whom_to_ask(view)}, who can record "
                         "the answer with *Record outcome* below.")
            return text
        case State.REJECTED:
            return f"Rejected{who}{when}{words}"
        case State.CANCELLED if r.closed_by and r.closed_by != r.requester_id:
            return f"Withdrawn{who}{when}, an admin of sender code {r.sender_code}, {_withdrawn_before(r)}."
        case State.CANCELLED:
            return f"Cancelled{who}{when}."
        case State.EXPIRED:
            return f"Expired{when}: nobody approved it in time. Run /sms-send again if it is still wanted."
        case _:
            assert_never(r.state)


def _withdrawn_before(r: SendRequest) -> str:
    return "before its time to send" if r.reason == WITHDRAWN_SCHEDULED else "before anyone decided"


def card(view: RequestView) -> list[dict[str, Any]]:
    request = view.request
    blocks: list[Block] = [
        SectionBlock(text=headline(request)),
        _fields(request),
        SectionBlock(text=message_section(request)),
        *message_quote(request),
        ContextBlock(elements=[MarkdownTextObject(text=f"Request `{request.id}` · {_approvals_line(view)}")]),
        SectionBlock(text=fit(outcome_text(view), SECTION_TEXT)),
    ]
    if request.state in (State.PENDING, State.SCHEDULED):
        audience = f"group {request.group_name}" if request.group_name else "ALL CONTACTS"
        what = f"campaign {request.campaign_name} to {audience}"
        buttons = [
            ButtonElement(text="Approve", action_id=APPROVE, value=request.id, style="primary",
                          accessibility_label=_clip(f"Approve and send: {what}", 75),
                          confirm=ConfirmObject(title="Send this SMS?", confirm="Approve", deny="Back",
                                                text=PlainTextObject(text=_confirm_text(request), emoji=False))),
            ButtonElement(text="Approve with note", action_id=APPROVE_WITH_NOTE, value=request.id,
                          accessibility_label=_clip(f"Approve with a note: {what}", 75)),
            ButtonElement(text="Reject", action_id=REJECT, value=request.id, style="danger",
                          accessibility_label=_clip(f"Reject this request: {what}", 75)),
            ButtonElement(text="Cancel request", action_id=CANCEL, value=request.id,
                          accessibility_label=_clip(f"Cancel request: {what}", 75)),
            ButtonElement(text="Withdraw (admins)", action_id=WITHDRAW, value=request.id,
                          accessibility_label=_clip(f"Withdraw this request (admins): {what}", 75),
                          confirm=ConfirmObject(title="Withdraw this request?", confirm="Withdraw", deny="Back",
                                                text="Only admins of its sender code can. Nothing will be sent, "
                                                     "and the requester is told in the thread.")),
        ]
        stoppers = (CANCEL, WITHDRAW)  # a scheduled request is approved: it can only be stopped
        blocks.append(ActionsBlock(block_id="decision", elements=[
            b for b in buttons if request.state == State.PENDING or b.action_id in stoppers]))
        if request.state == State.PENDING:  # a test only while the message can still be changed
            blocks.append(test_send_actions(request))
    if request.state == State.UNKNOWN:
        blocks.append(ActionsBlock(block_id="outcome", elements=[
            ButtonElement(text="Record outcome (admins)", action_id=RECORD_OUTCOME, value=request.id)]))
    return [block.to_dict() for block in blocks]


def test_send_actions(request: SendRequest) -> ActionsBlock:
    """For the requester and the approvers: the message, as WhatCounts has it now, to their own registered phone."""
    return ActionsBlock(block_id=TEST_SEND, elements=[
        ButtonElement(text="Send test to my phone", action_id=TEST_SEND, value=request.id,
                      accessibility_label=_clip(f"Send a test to my own phone: campaign {request.campaign_name}", 75),
                      confirm=ConfirmObject(title="Send a test to your phone?", confirm="Send test", deny="Back",
                                            text="The message's current text goes to the phone an admin registered "
                                                 "for you, through this request's sender code. It costs one SMS."))])


def _confirm_text(request: SendRequest) -> str:
    """What approving does, as the Approve button's confirm dialog and the note modal say it."""
    audience = f"group {request.group_name}" if request.group_name else "ALL CONTACTS"
    consequence = "DRY RUN: nothing is sent to WhatCounts." if request.dry_run else "It cannot be undone."
    return f"This sends to {_clip(audience, 160)} of sender code {request.sender_code}. {consequence}"


def _decision_modal(callback_id: str, request: SendRequest, title: str, submit: str, intro: str,
                    inputs: list[Block]) -> dict[str, Any]:
    return View(type="modal", callback_id=callback_id, title=title, submit=submit, close="Back",
                private_metadata=json.dumps({"request_id": request.id}),
                blocks=[SectionBlock(text=fit(intro, SECTION_TEXT)), *inputs]).to_dict()


def reject_modal(view: RequestView) -> dict[str, Any]:
    """Reject, with a required reason that the requester reads on the card and in the thread."""
    r = view.request
    return _decision_modal(REJECT_CALLBACK, r, "Reject SMS send", "Reject",
                           f"Reject *{escape(r.campaign_name)}* (request `{r.id}`) from <@{r.requester_id}>?",
                           [_text_input(NOTE_BLOCK, "Reason", MAX_DESCRIPTION,
                                        hint="Shown on the card, in the thread and kept in the audit trail.")])


def approve_modal(view: RequestView) -> dict[str, Any]:
    """Approve with an optional note: the modal says what the button's confirm dialog says, and
    its submit is the approval."""
    r = view.request
    return _decision_modal(APPROVE_CALLBACK, r, "Send this SMS?", "Approve",
                           f"Approve *{escape(r.campaign_name)}* (request `{r.id}`)? {escape(_confirm_text(r))}",
                           [_text_input(NOTE_BLOCK, "Note", MAX_DESCRIPTION, optional=True,
                                        hint="Shown on the card, in the thread and kept in the audit trail.")])


def outcome_modal(view: RequestView) -> dict[str, Any]:
    """An admin records what WhatCounts (or its support) says about a send whose outcome is unknown."""
    r = view.request
    verdicts = [_option("sent", "It was sent"), _option("not-sent", "It was not sent")]
    return _decision_modal(OUTCOME_CALLBACK, r, "Record outcome", "Record",
                           f"What happened to *{escape(r.campaign_name)}* (request `{r.id}`)?",
                           [InputBlock(block_id=VERDICT_BLOCK, label="WhatCounts says",
                                       element=StaticSelectElement(action_id=INPUT_ACTION, options=verdicts)),
                            _text_input(NOTE_BLOCK, "Note", MAX_DESCRIPTION,
                                        hint="How you know (a support ticket, what WhatCounts shows).")])


def approval_reply(view: RequestView, actor_id: str) -> str:
    """The thread reply for an approval, with its note if it has one."""
    note = dict(view.notes).get(actor_id)
    r = view.request
    scheduled = (f"\nIt will be sent {local_time(r.send_at)}, unless it is cancelled or withdrawn before then."
                 if r.state == State.SCHEDULED and r.send_at else "")
    return f"<@{actor_id}> approved" + (f": “{escape(note)}”" if note else ".") + scheduled


# The card's notification and screen-reader text, said without the card.
FALLBACK_STATE = {
    State.PENDING: "waiting for approval",
    State.SENDING: "approved, sending",
    State.SENT: "submitted to WhatCounts",
    State.FAILED: "failed, nothing sent",
    State.UNKNOWN: "outcome unknown",
    State.REJECTED: "rejected",
    State.CANCELLED: "cancelled",
    State.EXPIRED: "expired, nothing sent",
    State.SCHEDULED: "approved, scheduled",
}


def card_fallback(view: RequestView) -> str:
    """The card in one sentence, for notifications and screen readers: what, to whom, by whom, where it stands."""
    r = view.request
    dry = "DRY RUN (nothing is sent) " if r.dry_run else ""
    audience = f"group {escape(r.group_name)}" if r.group_name else "ALL CONTACTS"
    return (f"{dry}SMS send {FALLBACK_STATE[r.state]}: campaign “{fit(escape(r.campaign_name), 200)}” "
            f"(message {fit(escape(r.message_name), 200)}) to {audience} of sender code {r.sender_code}, "
            f"requested by <@{r.requester_id}>. Request {r.id}." + (f" {asked}." if (asked := _asked(view)) else ""))


# Endings everyone in the channel should see: something was (or may have been) sent, or a send
# failed. A reject, cancel or expiry stays in the thread, for the requester.
BROADCAST = (State.SENT, State.FAILED, State.UNKNOWN)


def ending_message(view: RequestView) -> str:
    """The one thread reply that tells the requester how their request ended (and, for an outcome,
    the approvers); for a `BROADCAST` ending it also shows in the channel, so it names the send in a
    line rather than repeating the card."""
    r = view.request
    to = f"<@{r.requester_id}>: "
    by = f"<@{r.closed_by}>" if r.closed_by else "The bot"
    match r.state:
        case State.REJECTED:
            return f"{to}{by} rejected this request: “{escape(r.reason or '')}”"
        case State.CANCELLED if r.closed_by and r.closed_by != r.requester_id:
            return (f"{to}{by}, an admin of sender code {r.sender_code}, withdrew this request "
                    f"{_withdrawn_before(r)}. Nothing will be sent.")
        case State.CANCELLED:
            return f"{to}you cancelled this request. Nothing will be sent."
        case State.EXPIRED:
            when = f" ({local_time(r.finished_at)})" if r.finished_at else ""
            return (f"{to}nobody decided on this request before it expired{when}, so nothing was sent. "
                    "Run /sms-send again if it is still wanted.")
        case _:  # an outcome: the approvers who let it go are told too, whatever it was
            everyone = ", ".join(mention(u) for u in dict.fromkeys((r.requester_id, *view.approvers)))
            audience = f"group *{escape(r.group_name)}*" if r.group_name else "*All contacts*"
            return (f"{everyone}: {headline(r)} · message *{fit(escape(r.message_name), 200)}* · campaign "
                    f"*{fit(escape(r.campaign_name), 200)}* to {audience} of sender code *{r.sender_code}*"
                    + (f" · finished {local_time(r.finished_at)}" if r.finished_at else "")
                    + f"\n{outcome_text(view)}")


def reminder_message(reminder: Reminder) -> str:
    """The one thread reply before a request expires, mentioning the approvers who have not decided."""
    r = reminder.view.request
    who = (f"{_named(reminder.undecided, MAX_NAMED)}: this request is waiting for your decision"
           if reminder.undecided else f"Nobody who can approve sender code {r.sender_code} has decided yet")
    return (f"Reminder — {who}. Message *{escape(r.message_name)}* for {mention(r.requester_id)} "
            f"expires {local_time(r.expires_at)} unless it is approved or rejected on the card above.")
