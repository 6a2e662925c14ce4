"""What a send request is made of, and the checks on what a person typed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.rules.sender_codes import ALL_CONTACTS, normalize_sender_code
from bot.text import describe_character, hidden_character

MAX_NAME = 255
MAX_DESCRIPTION = 500
MAX_GROUP = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")



@dataclass(frozen=True)
class RequestFields:
    """Exactly what will be sent to WhatCounts; an approval is given for these values."""

    message_name: str
    sender_code: str
    campaign_name: str
    description: str | None = None
    group_name: str | None = None


def _text(value: str | None, label: str, limit: int, errors: dict[str, str], key: str,
          required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            errors[key] = f"Enter a {label}."
        return None
    if len(value) > limit:
        errors[key] = f"{label.capitalize()} is {len(value)} characters; the limit is {limit}."
    elif _CONTROL.search(value):
        errors[key] = f"{label.capitalize()} contains a line break or control character; remove it."
    elif (hidden := hidden_character(value)) is not None:
        errors[key] = (f"{label.capitalize()} contains an invisible or direction-changing character "
                       f"({describe_character(hidden)}); remove it, so that approvers see exactly what is sent.")
    return value


def parse_fields(message_name: str | None, sender_code: str | None, campaign_name: str | None,
                 description: str | None, group_name: str | None) -> tuple[RequestFields | None, dict[str, str]]:
    """Check raw input. Returns the fields, or None and an error per field key."""
    errors: dict[str, str] = {}
    message = _text(message_name, "message name", MAX_NAME, errors, "message_name", True)
    campaign = _text(campaign_name, "campaign name", MAX_NAME, errors, "campaign_name", True)
    desc = _text(description, "description", MAX_DESCRIPTION, errors, "description", False)
    group = _text(group_name, "group", MAX_GROUP, errors, "group_name", False)
    if group is None:
        errors["group_name"] = "Choose a group, or All contacts."
    elif group == ALL_CONTACTS:
        group = None
    code = None
    if not (sender_code or "").strip():
        errors["sender_code"] = "Enter a sender code."
    else:
        code = normalize_sender_code(sender_code or "")
        if code is None:
            errors["sender_code"] = ("A sender code is a short code (5 or 6 digits) or a US phone "
                                     "number (10 digits, or 11 starting with 1).")
    if errors or message is None or campaign is None or code is None:
        return None, errors
    return RequestFields(message, code, campaign, desc, group), {}


MAX_NOTE = MAX_DESCRIPTION


def parse_note(value: str | None, label: str, *, required: bool) -> tuple[str | None, str | None]:
    """A decision's words (a reject's reason, an approval's note), checked like the form's fields.

    Returns the text (None if left empty and optional) and None, or None and the sentence to show.
    """
    errors: dict[str, str] = {}
    text = _text(value, label, MAX_NOTE, errors, "note", required)
    return (None, errors["note"]) if errors else (text, None)


def parse_override(reason: str | None) -> tuple[str | None, dict[str, str]]:
    """An admin's reason to send inside quiet hours (optional): shown to approvers and audited."""
    text, problem = parse_note(reason, "quiet-hours override reason", required=False)
    return text, ({"quiet_override": problem} if problem else {})


def parse_send_at(selected: object) -> tuple[datetime | None, dict[str, str]]:
    """Slack's date-and-time picker's `selected_date_time` (UNIX seconds: no time zone to guess) as naive
    UTC, as the database keeps times; None if left empty. Whether it is allowed is the sender code's to say."""
    if selected is None or selected == "":
        return None, {}
    try:
        return datetime.fromtimestamp(int(str(selected)), UTC).replace(tzinfo=None), {}
    except (ValueError, OverflowError, OSError):
        return None, {"send_at": "Choose a date and a time to send at, or leave both empty to send once approved."}
