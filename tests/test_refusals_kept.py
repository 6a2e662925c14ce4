"""A refused click is kept in the audit trail, and keeping it changes nothing else."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.models import Approval
from tests.fakes import FakeWhatCounts
from tests.harness import CODE, Database, SlackDriver, form_errors

REQUESTER, APPROVER, STRANGER = "UREQUESTER", "UAPPROVER", "USTRANGER"


def approvals(db: Database) -> list[str]:
    with db.sessions() as session:
        return list(session.scalars(select(Approval.approver_id)))


def test_refused_clicks_are_kept_in_the_audit_trail_and_change_nothing_else(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, approvals_required=2)
    db.grant(REQUESTER, "approver")  # an approver too, but not of their own request
    request_id = slack.request(REQUESTER)
    before = db.request(request_id)

    slack.click(STRANGER, "approve", request_id)
    slack.wait_ephemeral(STRANGER, f"You need an approver grant for sender code {CODE} to approve.")
    slack.click(REQUESTER, "approve", request_id)
    slack.wait_ephemeral(REQUESTER, "You asked for this send, so someone else must approve it.")
    assert form_errors(slack.reject(STRANGER, request_id, "Not mine to send")) == {
        "note": f"You need an approver grant for sender code {CODE} to reject."}
    slack.click(APPROVER, "cancel", request_id)
    slack.wait_ephemeral(APPROVER, "Only the person who asked for this send can cancel it.")
    forged = "x" * 40  # a crafted button value: no such request
    slack.click(STRANGER, "approve", forged)
    slack.slack.wait_until(lambda: len(slack.ephemerals(STRANGER)) == 2, what="the second refusal to the stranger")

    after = db.request(request_id)
    assert (after.state, after.version, after.closed_by) == (before.state, before.version, None) == (
        "pending", 1, None)
    assert approvals(db) == [] and fake_whatcounts.posts() == []
    kept = [(e.actor_id, e.request_id, e.sender_code, e.details) for e in db.audit_rows() if e.event == "refused"]
    assert kept == [
        (STRANGER, request_id, CODE, {"action": "approve",
                                      "reason": f"You need an approver grant for sender code {CODE} to approve."}),
        (REQUESTER, request_id, CODE, {"action": "approve",
                                       "reason": "You asked for this send, so someone else must approve it."}),
        (STRANGER, request_id, CODE, {"action": "reject",
                                      "reason": f"You need an approver grant for sender code {CODE} to reject."}),
        (APPROVER, request_id, CODE, {"action": "cancel",
                                      "reason": "Only the person who asked for this send can cancel it."}),
        (STRANGER, None, None, {"action": "approve", "reason": "This request no longer exists.", "request": forged}),
    ]


def test_a_double_click_is_told_but_not_kept_as_a_refusal(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER, approvals_required=2)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    slack.wait_card(request_id, "Approvals: 1 of 2")
    slack.click(APPROVER, "approve", request_id)
    slack.wait_ephemeral(APPROVER, "You have already approved this request.")
    assert db.events(request_id) == ["requested", "approved"]
    assert approvals(db) == [APPROVER]
