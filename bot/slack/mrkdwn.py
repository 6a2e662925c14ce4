"""Slack's mrkdwn: escaping, mentions, channel links, and the core's replies (`bot.text`) rendered in it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.text import Block, Channel, Line, Listing, Literal, Part, Reply, Title, User

USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_id: str) -> str:
    """A user, as Slack shows them; anything else (`cli:alice`) as it is."""
    return f"<@{user_id}>" if USER_ID.fullmatch(user_id) else escape(user_id)


def mentions(user_ids: Iterable[str]) -> str:
    return ", ".join(mention(u) for u in user_ids)


def channel_link(channel_id: str) -> str:
    return f"<#{channel_id}>"


def local_time(moment: datetime) -> str:
    """A moment as each reader's Slack shows it, in their own zone ("Today at 4:34 AM"); the UTC time when it
    cannot (old clients, notifications). A naive datetime is UTC, as the database stores it."""
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} at {{time}}|{utc:%Y-%m-%d %H:%M} UTC>"


def part(value: Part) -> str:
    match value:
        case str():
            return escape(value)
        case User(id=user_id):
            return mention(user_id)
        case Channel(id=channel_id):
            return channel_link(channel_id)
        case Literal(text=text):
            return f"`{escape(text)}`"
        case Title(text=text):
            return f"*{escape(text)}*"
    raise AssertionError(value)


def block(value: Block) -> str:
    match value:
        case Line(parts=parts):
            return "".join(part(p) for p in parts)
        case Listing(lines=lines):
            return f"```{escape(chr(10).join(lines))}```" if lines else ""
    raise AssertionError(value)


def render(reply: Reply) -> str:
    """The reply as one mrkdwn message: every word escaped, the marked parts as Slack shows them."""
    return "\n".join(block(b) for b in reply.blocks)
