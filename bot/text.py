"""What the core says to a person, as data: each edge shows the marked parts its own way.

A reply is lines and listings; a line is plain words with a few parts marked: a user, a
channel, words to type exactly, a title. Slack turns them into mentions, channel links,
`code` and *bold* (`bot.slack.mrkdwn`); a terminal prints `plain(reply)`: IDs as they are.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    """A Slack user ID, or an operator on the command line (`cli:alice`)."""

    id: str


@dataclass(frozen=True)
class Channel:
    """A Slack channel ID."""

    id: str


@dataclass(frozen=True)
class Literal:
    """Words to type exactly as shown: a command, an option, `*`."""

    text: str


@dataclass(frozen=True)
class Title:
    """What a reply or a section is about."""

    text: str


Part = str | User | Channel | Literal | Title


@dataclass(frozen=True)
class Line:
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Listing:
    """Lines kept exactly as they are, aligned: a usage, a table. Empty shows nothing."""

    lines: tuple[str, ...]


Block = Line | Listing


@dataclass(frozen=True)
class Reply:
    blocks: tuple[Block, ...]

    def __str__(self) -> str:
        return plain(self)


def line(*parts: Part) -> Line:
    return Line(parts)


def listing(lines: Iterable[str]) -> Listing:
    return Listing(tuple(lines))


def reply(*blocks: Block | str) -> Reply:
    """A reply of these blocks; a string is a line of plain words."""
    return Reply(tuple(line(b) if isinstance(b, str) else b for b in blocks))


def joined(parts: Iterable[Part], separator: str = ", ") -> tuple[Part, ...]:
    """The parts with `separator` between them, to put inside a line."""
    out: list[Part] = []
    for part in parts:
        if out:
            out.append(separator)
        out.append(part)
    return tuple(out)


def plain_part(part: Part) -> str:
    match part:
        case str():
            return part
        case User(id=text) | Channel(id=text) | Title(text=text):
            return text
        case Literal(text=text):
            return f"`{text}`"
    raise AssertionError(part)


def plain(message: Reply | Block) -> str:
    """For a terminal or a log: IDs as they are, listings as their lines, one block a line."""
    match message:
        case Reply(blocks=blocks):
            return "\n".join(plain(b) for b in blocks)
        case Line(parts=parts):
            return "".join(plain_part(p) for p in parts)
        case Listing(lines=lines):
            return "\n".join(lines)
    raise AssertionError(message)


# Characters that show nothing or change how the rest is shown, so a reader could not see what
# was typed: format characters (zero-width spaces and joiners, the bidirectional overrides and
# isolates U+202A-U+202E and U+2066-U+2069, marks such as U+200E), line and paragraph
# separators, lone surrogates and the C0 and C1 controls.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def hidden_character(value: str) -> str | None:
    """The first character that is invisible or changes the direction of the text; None if there is none."""
    return next((ch for ch in value if unicodedata.category(ch) in _HIDDEN_CATEGORIES), None)


def describe_character(ch: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`: a character named so that a person can find it."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".strip()
