"""The request form: inline errors Slack's way, and nothing stored when the card cannot be posted."""

from __future__ import annotations

import json

import pytest

from bot.fields import MAX_NAME
from tests.fakes import FakeSlack
from tests.harness import CODE, Database, SlackDriver

REQUESTER = "UREQUESTER"


def errors_of(response_text: str) -> dict[str, str]:
    body = json.loads(response_text)
    assert body["response_action"] == "errors"
    return body["errors"]


@pytest.mark.parametrize("values, field, message", [
    ({"message_name": "  "}, "message_name", "Enter a message name"),
    ({"campaign_name": None}, "campaign_name", "Enter a campaign name"),
    ({"message_name": "x" * (MAX_NAME + 1)}, "message_name", f"the limit is {MAX_NAME}"),
    ({"sender_code": "12-34"}, "sender_code", "short code"),
    ({"sender_code": "5559999999"}, "sender_code", "no grant to request sends for sender code 5559999999"),
    ({"description": "line one\nline two"}, "description", "line break"),
])
def test_invalid_input_is_shown_inline_and_changes_nothing(
        values: dict[str, str | None], field: str, message: str,
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.grant(REQUESTER, "requester", None)  # any code: the form has a text input for it
    view = slack.open_form(REQUESTER)
    assert view["blocks"][1]["element"]["type"] == "plain_text_input"
    db.revoke(REQUESTER, "requester", None)
    db.grant(REQUESTER, "requester", CODE)
    fields = {"message_name": "Spring Sale", "sender_code": CODE, "campaign_name": "Spring", **values}
    response = slack.submit(REQUESTER, view, **fields)
    assert response.status_code == 200
    errors = errors_of(response.text)
    assert list(errors) == [field] and message in errors[field]
    assert fake_slack.calls("chat.postMessage") == []
    assert db.requests() == []


def test_phone_number_formatting_is_accepted(db: Database, slack: SlackDriver) -> None:
    db.grant(REQUESTER, "requester", None)
    view = slack.open_form(REQUESTER)
    response = slack.submit(REQUESTER, view, message_name="Spring Sale", sender_code="(555) 123-4567",
                            campaign_name="Spring")
    assert response.text == ""
    assert [r.sender_code for r in db.requests()] == [CODE]


@pytest.mark.parametrize("error, advice", [
    ("not_in_channel", "/invite @SMS Send"),
    ("channel_not_found", "private channel or a DM"),
])
def test_a_channel_the_bot_cannot_post_in_leaves_nothing_behind(
        error: str, advice: str, db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.grant(REQUESTER, "requester")
    fake_slack.fail("chat.postMessage", error)
    view = slack.open_form(REQUESTER)
    response = slack.submit(REQUESTER, view, message_name="Spring Sale", sender_code=CODE, campaign_name="Spring")
    assert advice in errors_of(response.text)["message_name"]
    assert db.requests() == []
    assert db.events() == ["grant"]
