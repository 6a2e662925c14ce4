"""Approvers see exactly what will be sent: typed text is shown literally, never formatted,
and characters that would hide or reorder it are refused when the form is submitted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest

from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts
from tests.harness import CODE, Database, SlackDriver, form_errors, request_id_of

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"
NAME = "Promo <!here> *50%*"
CAMPAIGN = "*Big* _sale_ ~now~ `x`"
DESCRIPTION = "Use `CODE10` *today* & <https://evil.example|your bank>"
TEXT = "Hi *all*: _50%_ off ~today~ with `CODE10`. Reply STOP to opt out."


def text_objects(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(type, text) of every text in the blocks: mrkdwn and plain_text objects, and rich text elements."""
    def walk(node: Any) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text", "text") and isinstance(node.get("text"), str):
                yield node["type"], node["text"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
    yield from walk(blocks)


def test_typed_text_is_shown_on_the_card_exactly_as_it_will_be_sent(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    fake_whatcounts.messages = [{**SPRING_SALE, "name": NAME, "messageText": TEXT}]
    db.allow_sends(REQUESTER, APPROVER, groups=["*VIP* list"])
    response = slack.submit(REQUESTER, slack.open_form(REQUESTER), message_name=NAME, sender_code=CODE,
                            campaign_name=CAMPAIGN, description=DESCRIPTION, group_name="*VIP* list")
    assert response.status_code == 200 and response.text == "", response.text
    card = fake_slack.calls("chat.postMessage")[0]
    texts = list(text_objects(card["blocks"]))
    for typed in (NAME, CAMPAIGN, DESCRIPTION, "*VIP* list", TEXT):
        assert ("text", typed) in texts, typed  # a rich text element: shown as it is, never read as mrkdwn
        assert not any(typed in text for kind, text in texts if kind == "mrkdwn"), typed
    # The fallback (notifications, old clients) is escaped: it can neither ping nor link.
    assert card["text"] == (f"SMS send waiting for approval: campaign “{CAMPAIGN}” (message Promo &lt;!here&gt; "
                            f"*50%*) to group *VIP* list of sender code {CODE}, requested by <@{REQUESTER}>. "
                            f"Request {request_id_of(card)}. Asked to approve: <@{APPROVER}>.")

    slack.click(APPROVER, "approve", request_id_of(card))
    slack.wait_outcome("submitted")
    [post] = fake_whatcounts.posts()
    assert unquote(post.path).endswith(f"/{NAME}/{CODE}/{CAMPAIGN}")
    update = slack.wait_card(request_id_of(card), "submitted")
    assert "&lt;!here&gt;" in update["text"] and "<!here>" not in update["text"]


HIDDEN = [("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"), ("\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE"),
          ("\u200b", "U+200B ZERO WIDTH SPACE"), ("\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
          ("\u2028", "U+2028 LINE SEPARATOR"), ("\u200f", "U+200F RIGHT-TO-LEFT MARK")]


@pytest.mark.parametrize(("field", "label"), [("campaign_name", "Campaign name"), ("description", "Description")])
def test_invisible_and_direction_changing_characters_are_refused_on_the_field(
        field: str, label: str, db: Database, slack: SlackDriver, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    for char, name in HIDDEN:
        values = {"message_name": "Spring Sale", "sender_code": CODE, "campaign_name": "Spring 2026",
                  "group_name": "*", field: f"Spring{char}6202 sale"}
        errors = form_errors(slack.submit(REQUESTER, view, **values))
        assert errors == {field: f"{label} contains an invisible or direction-changing character ({name}); "
                                 "remove it, so that approvers see exactly what is sent."}, name
    assert fake_slack.calls("chat.postMessage") == [] and db.requests() == []
    assert fake_whatcounts.posts() == [] and json.dumps(db.events()) == '["grant", "grant"]'
