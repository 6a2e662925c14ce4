"""SMS segment counts against the GSM-7 / UCS-2 rules, including the boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.whatcounts.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentCount,
    count_segments,
)

EMOJI = "😀"  # outside the BMP: a surrogate pair, two UTF-16 code units


@pytest.mark.parametrize(("text", "expected"), [
    ("", SegmentCount("GSM-7", 0, 0, 160)),
    ("a", SegmentCount("GSM-7", 1, 1, 160)),
    ("a" * 160, SegmentCount("GSM-7", 160, 1, 160)),
    ("a" * 161, SegmentCount("GSM-7", 161, 2, 153)),
    ("a" * 306, SegmentCount("GSM-7", 306, 2, 153)),
    ("a" * 307, SegmentCount("GSM-7", 307, 3, 153)),
    ("a" * 459, SegmentCount("GSM-7", 459, 3, 153)),
    ("a" * 460, SegmentCount("GSM-7", 460, 4, 153)),
    ("ж" * 70, SegmentCount("UCS-2", 70, 1, 70)),
    ("ж" * 71, SegmentCount("UCS-2", 71, 2, 67)),
    ("ж" * 134, SegmentCount("UCS-2", 134, 2, 67)),
    ("ж" * 135, SegmentCount("UCS-2", 135, 3, 67)),
])
def test_boundaries(text: str, expected: SegmentCount) -> None:
    assert count_segments(text) == expected


def test_extension_characters_cost_two_septets() -> None:
    assert count_segments("€" * 80) == SegmentCount("GSM-7", 160, 1, 160)
    assert count_segments("€" * 80 + "a") == SegmentCount("GSM-7", 161, 2, 153)
    assert count_segments("\x0c^{}\\[~]|€").units == 20


def test_escape_pair_is_never_split_across_parts() -> None:
    # 306 septets would fill two parts exactly, but the "{" pair would straddle septets
    # 153 and 154: it moves to part 2, which pushes the last septet into a third part.
    text = "a" * 152 + "{" + "a" * 152
    assert count_segments(text) == SegmentCount("GSM-7", 306, 3, 153)
    # The same septets with the pair wholly inside part 1 take two parts.
    assert count_segments("a" * 151 + "{" + "a" * 153) == SegmentCount("GSM-7", 306, 2, 153)


def test_surrogate_pair_is_never_split_across_parts() -> None:
    # 134 units would fill two parts, but the emoji would take units 67 and 68.
    assert count_segments("ж" * 66 + EMOJI + "ж" * 66) == SegmentCount("UCS-2", 134, 3, 67)
    assert count_segments("ж" * 65 + EMOJI + "ж" * 67).segments == 2  # 67 | 67


def test_emoji() -> None:
    assert count_segments(EMOJI) == SegmentCount("UCS-2", 2, 1, 70)
    assert count_segments(EMOJI * 35) == SegmentCount("UCS-2", 70, 1, 70)
    assert count_segments(EMOJI * 36).segments == 2
    # One emoji turns a GSM-7 text into UCS-2: 100 letters fit one GSM segment, not one UCS-2 one.
    assert count_segments("a" * 100).segments == 1
    assert count_segments("a" * 100 + EMOJI) == SegmentCount("UCS-2", 102, 2, 67)


@pytest.mark.parametrize(("char", "encoding"), [
    ("é", "GSM-7"), ("É", "GSM-7"), ("è", "GSM-7"), ("ü", "GSM-7"), ("ñ", "GSM-7"), ("Ç", "GSM-7"),
    ("£", "GSM-7"), ("¥", "GSM-7"), ("Δ", "GSM-7"), ("\n", "GSM-7"), ("€", "GSM-7"),
    ("ê", "UCS-2"), ("ç", "UCS-2"), ("á", "UCS-2"), ("’", "UCS-2"), ("“", "UCS-2"), ("—", "UCS-2"),
    ("`", "UCS-2"), ("\t", "UCS-2"), ("\x1b", "UCS-2"),
])
def test_which_characters_are_gsm7(char: str, encoding: str) -> None:
    assert count_segments(f"Hi {char}").encoding == encoding


def test_describe() -> None:
    assert count_segments("a" * 161).describe() == "2 SMS segments (GSM-7, 161 of 306 characters)"
    assert count_segments("hi").describe() == "1 SMS segment (GSM-7, 2 of 160 characters)"
    assert count_segments("").describe() == "empty message (nothing to send)"


def _reference(text: str) -> int:
    """An independent count: cut the text into parts of whole characters, one at a time."""
    gsm = all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)

    def cost(c: str) -> int:
        return (2 if c in GSM7_EXTENSION else 1) if gsm else len(c.encode("utf-16-le")) // 2

    single, part = (160, 153) if gsm else (70, 67)
    if not text:
        return 0
    if sum(map(cost, text)) <= single:
        return 1
    parts, rest = 0, list(text)
    while rest:
        used = 0
        while rest and used + cost(rest[0]) <= part:
            used += cost(rest.pop(0))
        parts += 1
    return parts


@given(st.text(alphabet=st.sampled_from([*sorted(GSM7_BASIC | GSM7_EXTENSION), "ê", EMOJI]), max_size=700))
def test_matches_reference_count(text: str) -> None:
    count = count_segments(text)
    assert count.segments == _reference(text)
    assert count.segments * count.per_segment >= count.units
