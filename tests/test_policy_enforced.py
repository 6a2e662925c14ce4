"""Each sender-code rule refuses through the real server, and WhatCounts then receives no POST."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.fakes import FakeSlack, FakeWhatCounts
from tests.harness import CHANNEL, CODE, Database, SlackDriver, bot_with, form_errors

REQUESTER, APPROVER, ADMIN = "UREQUESTER", "UAPPROVER", "UADMIN"


def window(start_in: timedelta, end_in: timedelta) -> dict[str, Any]:
    """Quiet hours in UTC, relative to now, to the minute."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return {"quiet_start": (now + start_in).time(), "quiet_end": (now + end_in).time(), "timezone": "UTC"}


def quiet_now() -> dict[str, Any]:
    return window(timedelta(hours=-2), timedelta(hours=2))


def quiet_later() -> dict[str, Any]:
    return window(timedelta(hours=5), timedelta(hours=7))


def submit(slack: SlackDriver, user: str, view: dict[str, Any] | None = None, **values: str | None) -> httpx.Response:
    """The form (opened now, unless given) submitted with a valid request, but for `values`."""
    fields = {"message_name": "Spring Sale", "sender_code": CODE, "campaign_name": "Spring", "group_name": "*",
              **values}
    return slack.submit(user, view or slack.open_form(user), **fields)


def card_text(fake_slack: FakeSlack) -> str:
    return json.dumps(fake_slack.calls("chat.postMessage")[0]["blocks"], ensure_ascii=False)


def test_an_unregistered_group_is_refused(db: Database, slack: SlackDriver, fake_slack: FakeSlack,
                                          fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP"])
    # The form offers only registered groups; a crafted submission with another is refused.
    errors = form_errors(submit(slack, REQUESTER, group_name="Everyone Else"))
    assert "“Everyone Else” is not a registered group of sender code 5551234567 (registered: VIP)" \
        in errors["group_name"]
    assert db.requests() == [] and fake_slack.calls("chat.postMessage") == []
    assert fake_whatcounts.posts() == []


def test_all_contacts_is_said_prominently(db: Database, slack: SlackDriver, fake_slack: FakeSlack,
                                          fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP"])
    request_id = slack.request(REQUESTER, group_name="*")
    card = card_text(fake_slack)
    assert '"text": "ALL CONTACTS"' in card and '"text": " of the sender code"' in card
    assert "This sends to ALL CONTACTS of sender code 5551234567" in card  # the Approve confirmation
    slack.click(APPROVER, "approve", request_id)
    slack.wait_outcome("submitted")
    assert "groupName" not in fake_whatcounts.posts()[0].query
    assert db.request(request_id).group_name is None


def test_quiet_hours_refuse_at_submit(db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    quiet = quiet_now()
    db.allow_sends(REQUESTER, APPROVER, **quiet)
    view = slack.open_form(REQUESTER)
    assert "in effect now" in json.dumps(view["blocks"])
    assert "quiet_override" not in json.dumps(view["blocks"])  # not an admin: no override
    errors = form_errors(submit(slack, REQUESTER, view))
    assert f"inside sender code {CODE}'s quiet hours ({quiet['quiet_start']:%H:%M}-" in errors["sender_code"]
    # A crafted override from someone who is not an admin is refused too.
    override = {"type": "input", "block_id": "quiet_override", "label": {"type": "plain_text", "text": "x"},
                "element": {"type": "plain_text_input", "action_id": "value"}}
    crafted = {**view, "blocks": [*view["blocks"], override]}
    errors = form_errors(submit(slack, REQUESTER, crafted, quiet_override="please"))
    assert "Only an admin" in errors["quiet_override"]
    assert db.requests() == [] and fake_whatcounts.posts() == []


def test_an_admin_overrides_quiet_hours_with_a_reason(db: Database, slack: SlackDriver, fake_slack: FakeSlack,
                                                      fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, **quiet_now())
    db.grant(ADMIN, "requester")
    db.grant(ADMIN, "admin")
    view = slack.open_form(ADMIN)
    assert "Quiet-hours override (admins)" in json.dumps(view["blocks"])
    reason = "Storm warning for customers; legal approved"
    response = submit(slack, ADMIN, view, campaign_name="Storm", quiet_override=reason)
    assert response.text == ""
    card = card_text(fake_slack)
    assert f'"user_id": "{ADMIN}"}}, {{"text": ": “{reason}”", "type": "text"}}' in card
    assert "in effect when this was requested" in card
    [request] = db.requests()
    assert request.quiet_override == reason
    assert [e.details["reason"] for e in db.audit_rows() if e.event == "quiet_override"] == [reason]
    slack.click(APPROVER, "approve", request.id)
    slack.wait_outcome("submitted")
    assert len(fake_whatcounts.posts()) == 1


def test_an_override_reason_with_an_invisible_character_is_refused_on_its_field(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER, **quiet_now())
    db.grant(ADMIN, "requester")
    db.grant(ADMIN, "admin")
    errors = form_errors(submit(slack, ADMIN, campaign_name="Storm", quiet_override="Legal ok\u202e"))
    assert errors == {"quiet_override": "Quiet-hours override reason contains an invisible or direction-changing "
                                        "character (U+202E RIGHT-TO-LEFT OVERRIDE); remove it, so that approvers "
                                        "see exactly what is sent."}
    assert fake_slack.calls("chat.postMessage") == [] and db.requests() == []


def test_quiet_hours_refuse_again_at_send_time(db: Database, slack: SlackDriver, fake_slack: FakeSlack,
                                               fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, **quiet_later())
    request_id = slack.request(REQUESTER)
    assert "not in effect while this request is open" in card_text(fake_slack)
    db.sender_code(CODE, **quiet_now())  # by the time it is approved, quiet hours have begun
    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("Not sent at approval")
    assert "quiet hours" in outcome["text"]
    assert db.request(request_id).state == "failed"
    assert fake_whatcounts.posts() == []


def test_the_daily_cap_refuses_at_submit_with_the_count(db: Database, slack: SlackDriver,
                                                        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, daily_cap=1, timezone="America/New_York")
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    slack.wait_outcome("submitted")
    errors = form_errors(submit(slack, REQUESTER, campaign_name="Again"))
    assert (f"Sender code {CODE} has reached its daily cap: 1 of 1 sends today (the day in America/New_York)"
            in errors["sender_code"])
    assert len(db.requests()) == 1 and len(fake_whatcounts.posts()) == 1


def test_the_daily_cap_holds_when_approvals_race(db: Database, slack: SlackDriver, fake_slack: FakeSlack,
                                                 fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, daily_cap=2)
    first, second, third = (slack.request(REQUESTER, campaign_name=f"Wave {n}") for n in range(3))
    # Three requests made while the cap was free, approved at once: the row lock lets two through.
    clicks = [threading.Thread(target=slack.click, args=(APPROVER, "approve", r)) for r in (first, second, third)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    outcome = slack.wait_outcome("daily cap")
    assert "2 of 2 sends today" in outcome["text"]
    fake_slack.wait_until(lambda: len([r for r in db.requests() if r.state == "sent"]) == 2, what="two sends")
    assert sorted(r.state for r in db.requests()) == ["failed", "sent", "sent"]
    assert len(fake_whatcounts.posts()) == 2


def test_a_channel_restriction_hides_the_code_and_refuses_a_crafted_request(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER, channels=["CMARKETING"])
    response = slack.command(REQUESTER)
    assert "cannot be requested in this channel" in response.text and "<#CMARKETING>" in response.text
    assert fake_slack.calls("views.open") == []
    view = slack.open_form(REQUESTER, channel_id="CMARKETING")
    crafted = {**view, "private_metadata": json.dumps({"channel_id": CHANNEL, "team_id": "T1"})}
    errors = form_errors(submit(slack, REQUESTER, crafted))
    assert "can only be requested in these channels" in errors["sender_code"]
    assert db.requests() == [] and fake_whatcounts.posts() == []


def test_an_unregistered_sender_code_cannot_be_requested(db: Database, slack: SlackDriver,
                                                          fake_slack: FakeSlack) -> None:
    db.grant(REQUESTER, "requester")
    response = slack.command(REQUESTER)
    assert f"You may request {CODE}, but no such sender code is registered" in response.text
    assert fake_slack.calls("views.open") == []


def test_dry_run_does_everything_but_the_post(db: Database, env: dict[str, str], fake_slack: FakeSlack,
                                              fake_whatcounts: FakeWhatCounts, tmp_path: Path) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP"])
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_DRY_RUN="1") as (_bot, slack):
        view = slack.open_form(REQUESTER)
        assert "DRY RUN" in json.dumps(view["blocks"])
        request_id = slack.request(REQUESTER, group_name="VIP")
        assert "DRY RUN" in card_text(fake_slack) and "DRY RUN" in fake_slack.calls("chat.postMessage")[0]["text"]
        slack.click(APPROVER, "approve", request_id)
        outcome = slack.wait_outcome("DRY RUN")
        assert "WhatCounts was not called" in outcome["text"]
        assert ("It would have sent the SMS message “Spring Sale” from sender code 5551234567 to the group “VIP”, "
                "as the campaign “Spring 2026”.") in outcome["text"]
        assert "/rest/" not in outcome["text"] and "http" not in outcome["text"]
        slack.wait_card(request_id, "DRY RUN complete")
    request = db.request(request_id)
    assert (request.state, request.dry_run, request.whatcounts_id) == ("sent", True, None)
    assert fake_whatcounts.posts() == []
