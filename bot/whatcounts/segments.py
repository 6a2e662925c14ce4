"""How many SMS segments a text costs (3GPP TS 23.038 GSM-7, else UCS-2).

A text made only of the GSM-7 basic set and its extension table is sent as GSM-7: 160
septets in a single message, 153 per part once it needs several (the rest carries the
concatenation header). Extension characters cost two septets (an escape and the
character), and a part never ends between the two. Any other character makes the whole
text UCS-2: 70 UTF-16 code units alone, 67 per part, a surrogate pair (most emoji) never
split between parts.

The empty text counts as 0 segments: there is nothing to send, and a caller should say
so rather than show "1 SMS".

Carriers and WhatCounts may transliterate or re-encode some characters; this is the
standard count, which is what the recipient's carrier bills in the normal case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# The basic character set, in table order (0x1B, the escape to the extension table, left out).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters reached through the escape: two septets each.
GSM7_EXTENSION = frozenset("\x0c^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class SegmentCount:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # the capacity of each segment: 160/153 (GSM-7) or 70/67 (UCS-2)

    def describe(self) -> str:
        """For a person: '2 SMS segments (GSM-7, 161 of 306 characters)'."""
        if self.segments == 0:
            return "empty message (nothing to send)"
        plural = "segment" if self.segments == 1 else "segments"
        return (f"{self.segments} SMS {plural} ({self.encoding}, {self.units} of "
                f"{self.segments * self.per_segment} {'characters' if self.encoding == 'GSM-7' else 'units'})")


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _gsm7_costs(text: str) -> list[int]:
    return [2 if ch in GSM7_EXTENSION else 1 for ch in text]


def _ucs2_costs(text: str) -> list[int]:
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _parts(costs: list[int], capacity: int) -> int:
    """Greedy packing in which no character (escape pair, surrogate pair) straddles two parts."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts, used = parts + 1, 0
        used += cost
    return parts


def count_segments(text: str) -> SegmentCount:
    if is_gsm7(text):
        encoding: Encoding = "GSM-7"
        costs, single, part = _gsm7_costs(text), GSM7_SINGLE, GSM7_PART
    else:
        encoding = "UCS-2"
        costs, single, part = _ucs2_costs(text), UCS2_SINGLE, UCS2_PART
    units = sum(costs)
    if units == 0:
        return SegmentCount(encoding, 0, 0, single)
    if units <= single:
        return SegmentCount(encoding, units, 1, single)
    return SegmentCount(encoding, units, _parts(costs, part), part)
