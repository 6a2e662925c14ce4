"""Choosing a message in the form shows its text, length and SMS segments there, before submitting."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import SPRING_SALE, FakeWhatCounts, WhatCountsReply
from tests.harness import CODE, Database, SlackDriver

REQUESTER = "UREQUESTER"
SPRING_TEXT = str(SPRING_SALE["messageText"])


def under_the_message(view: dict[str, Any]) -> str:
    """What the form shows between the message select and the sender code select."""
    ids = [b.get("block_id") for b in view["blocks"]]
    between = view["blocks"][ids.index("message_name") + 1:ids.index("sender_code")]
    return json.dumps(between, ensure_ascii=False)


def test_choosing_a_message_shows_its_text_length_and_segments_in_the_form(
        db: Database, slack: SlackDriver) -> None:
    db.sender_code(CODE)
    db.grant(REQUESTER, "requester")
    view = slack.open_form(REQUESTER)
    assert under_the_message(view) == "[]"
    message_block = next(b for b in view["blocks"] if b.get("block_id") == "message_name")
    assert message_block["dispatch_action"] is True  # Slack tells the bot as soon as a message is chosen
    shown = under_the_message(slack.choose_message(REQUESTER, view, "Spring Sale"))
    assert SPRING_TEXT in shown
    assert f"{len(SPRING_TEXT)} characters, 1 SMS segment" in shown


def test_the_chosen_sender_codes_rules_stay_in_the_form_when_a_message_is_chosen(
        db: Database, slack: SlackDriver) -> None:
    db.sender_code(CODE, label="Marketing")
    db.grant(REQUESTER, "requester")
    view = slack.choose_sender_code(REQUESTER, slack.open_form(REQUESTER), CODE)
    redrawn = slack.choose_message(REQUESTER, view, "Spring Sale", sender_code=CODE)
    assert SPRING_TEXT in under_the_message(redrawn)
    assert "*Marketing*: 1 approval needed" in json.dumps(redrawn["blocks"])


def test_the_chosen_messages_text_stays_in_the_form_when_a_sender_code_is_chosen(
        db: Database, slack: SlackDriver) -> None:
    db.sender_code(CODE, label="Marketing")
    db.grant(REQUESTER, "requester")
    view = slack.choose_message(REQUESTER, slack.open_form(REQUESTER), "Spring Sale")
    redrawn = slack.choose_sender_code(REQUESTER, view, CODE, message="Spring Sale")
    assert SPRING_TEXT in under_the_message(redrawn)
    assert "*Marketing*: 1 approval needed" in json.dumps(redrawn["blocks"])


def test_a_message_whatcounts_cannot_show_is_said_so_in_the_form(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.sender_code(CODE)
    db.grant(REQUESTER, "requester")
    fake_whatcounts.messages = None  # GET /rest/sms answers `reply`: WhatCounts is failing
    fake_whatcounts.reply = WhatCountsReply(503, {"error": "Service Unavailable"})
    view = slack.open_form(REQUESTER)
    shown = under_the_message(slack.choose_message(REQUESTER, view, "Autumn Sale"))
    assert "WhatCounts could not be reached to show this message's text" in shown


def test_a_message_whatcounts_does_not_have_is_said_so_in_the_form(db: Database, slack: SlackDriver) -> None:
    db.sender_code(CODE)
    db.grant(REQUESTER, "requester")
    shown = under_the_message(slack.choose_message(REQUESTER, slack.open_form(REQUESTER), "Spring sale"))
    assert "WhatCounts has no SMS message named “Spring sale”" in shown
