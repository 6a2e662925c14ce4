"""`/sms-send admin ...`: Slack's command text into words for `bot.rules.admin`, its reply back in mrkdwn,
within Slack's limits."""

from __future__ import annotations

import re
import shlex

from sqlalchemy.orm import Session, sessionmaker

from bot.rules.admin import run_admin_command
from bot.slack import mrkdwn
from bot.text import Literal, line, reply

PROG = "/sms-send admin"
MAX_REPLY = 3500  # characters; Slack advises keeping a message's text under 4000
# Slack writes a mention as <@U123|name> (or <@U123>), a channel as <#C123|name> and a user
# group as <!subteam^S123|@name>.
_REFERENCE = re.compile(r"<(?:[@#]|!subteam\^)([UWCGS][A-Z0-9]+)(?:\|[^>]*)?>")
_STRAIGHT_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def admin_text(text: str) -> str | None:
    """What follows a first word `admin` (in any case); None if the command is not `admin ...`."""
    parts = text.split(maxsplit=1)
    if not parts or parts[0].lower() != "admin":
        return None
    return parts[1] if len(parts) > 1 else ""


def words(text: str) -> list[str]:
    """The command text as shell-like words: mentions become IDs, Slack's escapes and smart quotes undone.

    Raises ValueError for an unbalanced quote.
    """
    text = _REFERENCE.sub(r"\1", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return shlex.split(text.translate(_STRAIGHT_QUOTES))


def fit(message: str, limit: int = MAX_REPLY) -> str:
    """The message cut at a line to fit `limit`, with a note of what was left out."""
    if len(message) <= limit:
        return message
    lines = message.splitlines()
    kept: list[str] = []
    size = 0
    for text in lines:
        if size + len(text) + 1 > limit - 200:
            break
        kept.append(text)
        size += len(text) + 1
    fence = "```" if "\n".join(kept).count("```") % 2 else ""
    note = (f"… {len(lines) - len(kept)} more lines not shown: `sms-bot grants` and "
            "`sms-bot sender-code list` on the command line list everything.")
    return "\n".join(kept) + f"{fence}\n{note}"


def answer(sessions: sessionmaker[Session], user_id: str, text: str) -> str:
    """The ephemeral reply to `/sms-send admin ...`; `text` is what follows the word admin."""
    try:
        args = words(text)
    except ValueError as exc:
        return mrkdwn.render(reply(line(
            f"I could not read that ({exc}): put a value with spaces or an apostrophe in double quotes, e.g. ",
            Literal(f'{PROG} sender-code set CODE --label "Marketing US"'), ". Nothing was changed.")))
    return fit(mrkdwn.render(run_admin_command(sessions, user_id, args, prog=PROG)))
