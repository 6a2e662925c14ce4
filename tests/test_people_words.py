"""What requesters and approvers read: cards safe to post and readable without sight, local times, plain words."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.fakes import FakeSlack
from tests.harness import CODE, Database, SlackDriver, request_id_of

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"


def buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}


def test_the_card_and_its_outcome_are_posted_without_link_previews_and_read_well_without_the_card(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP customers"])
    request_id = slack.request(REQUESTER, campaign_name="Spring 2026", group_name="VIP customers")
    card = fake_slack.calls("chat.postMessage")[0]
    assert (card["unfurl_links"], card["unfurl_media"]) == (False, False)
    assert card["text"] == (f"SMS send waiting for approval: campaign “Spring 2026” (message Spring Sale) to group "
                            f"VIP customers of sender code {CODE}, requested by <@{REQUESTER}>. Request {request_id}.")
    labels = {action: button["accessibility_label"] for action, button in buttons(card).items()}
    assert labels == {"approve": "Approve and send: campaign Spring 2026 to group VIP customers",
                      "reject": "Reject this request: campaign Spring 2026 to group VIP customers",
                      "cancel": "Cancel request: campaign Spring 2026 to group VIP customers"}

    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("submitted")
    assert (outcome["unfurl_links"], outcome["unfurl_media"]) == (False, False)
    assert outcome["text"].startswith(":white_check_mark: *SMS send submitted to WhatCounts*\n")
    updated = slack.wait_card(request_id, "submitted")
    assert updated["text"].startswith("SMS send submitted to WhatCounts: campaign “Spring 2026”")
    assert "approve" not in json.dumps(updated["blocks"])


def test_a_long_campaign_name_keeps_the_button_labels_within_slacks_limit(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    slack.request(REQUESTER, campaign_name="C" * 100)
    card = fake_slack.calls("chat.postMessage")[0]
    assert all(len(b["accessibility_label"]) == 75 and b["accessibility_label"].endswith("…")
               for b in buttons(card).values())
    assert request_id_of(card) in card["text"]


def local(moment: datetime) -> str:
    """How Slack is asked to show a moment in each reader's zone, with UTC where it cannot."""
    stamp = int(moment.replace(tzinfo=UTC).timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} at {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def test_times_on_the_card_and_in_the_thread_show_in_each_readers_own_zone(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    card = fake_slack.calls("chat.postMessage")[0]
    assert f"Expires {local(db.request(request_id).expires_at)}." in json.dumps(card["blocks"], ensure_ascii=False)

    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("submitted")
    finished = db.request(request_id).finished_at
    assert finished is not None
    assert outcome["text"].endswith(f" · finished {local(finished)}")


def test_a_rejection_says_when_in_the_readers_zone(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "reject", request_id)
    card = slack.wait_card(request_id, "Rejected by")
    finished = db.request(request_id).finished_at
    assert finished is not None
    assert f"Rejected by <@{APPROVER}>, {local(finished)}." in json.dumps(card["blocks"], ensure_ascii=False)
