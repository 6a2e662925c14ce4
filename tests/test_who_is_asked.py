"""The card names who is asked to approve, and only its first post notifies them (#12)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot.rules import policy_file
from bot.store.models import ALL_SENDER_CODES
from tests.fakes import FakeSlack
from tests.harness import CODE, Database, SlackDriver

REQUESTER, ADMIN = "UREQUESTER", "UADMIN"
APPROVERS = ("UAPPROVER1", "UAPPROVER2", "UAPPROVER3", "UAPPROVER4", "UAPPROVER5")
GROUP = "S0123ABCD"


def card_text(call: dict[str, Any]) -> str:
    """A message's text and blocks, as one string to search."""
    blocks = call.get("blocks")
    return str(call.get("text", "")) + (blocks if isinstance(blocks, str) else json.dumps(blocks))


def mentioned(call: dict[str, Any]) -> set[str]:
    """The people a Slack message mentions: `<@U…>` in its text or blocks, and rich-text user elements."""
    text = card_text(call)
    return set(re.findall(r"<@([UW][A-Z0-9]+)>", text)) | set(re.findall(r'"user_id":\s*"([UW][A-Z0-9]+)"', text))


def test_the_card_names_a_few_approvers_and_only_its_first_post_mentions_them(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.sender_code(CODE, approvals_required=2)
    db.grant(REQUESTER, "requester")
    db.grant(REQUESTER, "approver")  # not asked: nobody approves their own request here
    for approver in APPROVERS[:4]:
        db.grant(approver, "approver")
    db.grant(APPROVERS[4], "approver", ALL_SENDER_CODES)  # a grant for every code covers this one too

    request_id = slack.request(REQUESTER)
    [card] = fake_slack.calls("chat.postMessage")
    asked = f"Asked to approve: <@{APPROVERS[0]}>, <@{APPROVERS[1]}>, <@{APPROVERS[2]}> and 2 more"
    assert asked in json.dumps(card["blocks"]) and asked in card["text"]  # mobile notifications read `text`
    assert mentioned(card) == {REQUESTER, *APPROVERS[:3]}  # the requester as "Requested by", not as asked

    slack.click(APPROVERS[3], "approve", request_id)
    slack.wait_card(request_id, f"Approvals: 1 of 2 (<@{APPROVERS[3]}>)")
    slack.click(APPROVERS[0], "approve", request_id)
    slack.wait_outcome("submitted")

    # Slack notifies the mentions of a new message, never those of an edit: each update mentions only
    # people the first post did or who clicked, and once decided the card asks nobody.
    updates = slack.card_updates(request_id)
    assert updates and all(mentioned(u) <= {REQUESTER, *APPROVERS[:4]} for u in updates)
    assert "Asked to approve" not in card_text(updates[-1])
    # The one reply in the thread, the outcome, names the requester and the two who approved, not everyone asked.
    replies = [c for c in fake_slack.calls("chat.postMessage") if c.get("thread_ts")]
    assert [mentioned(c) for c in replies] == [{REQUESTER, APPROVERS[3], APPROVERS[0]}]
    assert len(fake_slack.calls("chat.postMessage")) == 1 + len(replies)  # the card was posted once


def test_a_code_with_an_approvers_group_asks_the_group_and_names_nobody(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVERS[0], approvers_group=GROUP)
    db.grant(APPROVERS[1], "approver")
    request_id = slack.request(REQUESTER)
    [card] = fake_slack.calls("chat.postMessage")
    assert f"Asked to approve: <!subteam^{GROUP}>" in json.dumps(card["blocks"])
    assert f"<!subteam^{GROUP}>" in card["text"]
    assert mentioned(card) == {REQUESTER}  # one group mention, not each approver on top of it

    slack.click(REQUESTER, "cancel", request_id)
    update = slack.wait_card(request_id, "cancelled")
    assert "subteam" not in card_text(update)


def test_a_code_nobody_may_approve_says_so_on_the_card(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.sender_code(CODE)
    db.grant(REQUESTER, "requester")
    slack.request(REQUESTER)
    [card] = fake_slack.calls("chat.postMessage")
    assert f"Nobody holds an approver grant for sender code {CODE} yet" in json.dumps(card["blocks"])


def test_an_admin_sets_and_clears_the_approvers_group_from_slack(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.sender_code(CODE)
    # Typing @marketing-approvers in Slack sends the group as <!subteam^ID|@name>.
    reply = slack.command(ADMIN, f"admin sender-code set {CODE} --approvers-group <!subteam^{GROUP}|@mkt>").text
    assert f"approvers_group None -&gt; '{GROUP}'" in reply and f"cards ask user group {GROUP}" in reply, reply
    assert f"cards ask user group {GROUP}" in slack.command(ADMIN, "admin sender-code list").text

    reply = slack.command(ADMIN, f"admin sender-code set {CODE} --approvers-group marketing").text
    assert "'marketing' is not a Slack user group ID" in reply and "was not changed" in reply, reply

    reply = slack.command(ADMIN, f"admin sender-code set {CODE} --approvers-group none").text
    assert "cards ask its approvers by name" in reply, reply
    with db.sessions() as session:
        assert "approvers_group: null" in policy_file.export_policy(session)


@pytest.mark.parametrize("value", ["marketing", "U0123ABCD", "s0123abcd", "<!subteam^S0123>"])
def test_the_policy_file_refuses_what_is_not_a_user_group_id(db: Database, value: str) -> None:
    document = f"sender_codes:\n- {{code: '{CODE}', approvers_group: '{value}'}}\ngrants: []\n"
    with db.sessions.begin() as session, pytest.raises(policy_file.PolicyError) as caught:
        policy_file.import_policy(session, document, "U1")
    [problem] = caught.value.problems
    assert problem.startswith("sender_codes[0].approvers_group:") and "is not a Slack user group ID" in problem
