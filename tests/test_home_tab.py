"""The Home tab, as requesters, approvers and admins open it: what Slack is asked to publish, on both databases."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.quiet_hours import format_time
from bot.rules.sender_codes import set_sender_code
from bot.slack.database_down import DATABASE_DOWN
from bot.store.engine import database_now
from bot.store.models import ALL_SENDER_CODES
from tests.dbproxy import DatabaseProxy
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CHANNEL, CODE, Database, SlackDriver, bot_with, home_opened, in_process_bot
from tests.test_database_down import ON_POSTGRESQL, proxy
from tests.test_socket_mode import APP_TOKEN, FakeSocketModeEndpoint, socket_endpoint

__all__ = ["proxy", "socket_endpoint"]  # the fixtures, shared with those modules

REQUESTER, APPROVER, ADMIN, STRANGER = "UREQ", "UAPPROVER", "UADMIN", "USTRANGER"
_events = itertools.count(1)


def open_home(slack: SlackDriver, user_id: str) -> dict[str, Any]:
    """The person opens the bot's Home tab; returns the view the bot published for them."""
    before = len(published(slack.slack, user_id))
    response = slack.post(json.dumps(home_opened(user_id)), "application/json")
    assert response.status_code == 200, response.text
    slack.settle()

    def newly_published() -> dict[str, Any] | None:
        views = published(slack.slack, user_id)
        return views[-1] if len(views) > before else None

    return slack.slack.wait_until(newly_published, what=f"views.publish for {user_id}")


def published(fake: FakeSlack, user_id: str) -> list[dict[str, Any]]:
    return [c["view"] for c in fake.calls("views.publish") if c.get("user_id") == user_id]


def click_on_home(slack: SlackDriver, user_id: str, action_id: str, request_id: str) -> None:
    """A button on the Home tab, as Slack reports it: from a view, with no channel."""
    payload = {
        "type": "block_actions", "team": {"id": "T1", "domain": "acme"},
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy-verification-token", "trigger_id": f"trigger-home-{next(_events)}",
        "container": {"type": "view", "view_id": "VHOME"},
        "view": {"id": "VHOME", "team_id": "T1", "type": "home", "blocks": [], "state": {"values": {}}},
        "actions": [{"action_id": action_id, "block_id": "decision", "value": request_id, "type": "button",
                     "text": {"type": "plain_text", "text": action_id.title()}, "action_ts": f"{time.time():.6f}"}],
    }
    response = slack.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status_code == 200, response.text
    slack.settle()


def text(view: object) -> str:
    return json.dumps(view, ensure_ascii=False)


def section(view: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The blocks under the header `title`, up to the next divider."""
    found: list[dict[str, Any]] = []
    inside = False
    for block in view["blocks"]:
        if block["type"] == "header":
            inside = block["text"]["text"] == title
        elif block["type"] == "divider":
            inside = False
        elif inside:
            found.append(block)
    assert inside or found or any(b.get("text", {}).get("text") == title for b in view["blocks"]), title
    return found


def headers(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]


def buttons(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_a_requester_sees_their_request_its_state_a_link_to_its_card_and_their_roles(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    card_ts = db.request(request_id).card_ts

    home = open_home(slack, REQUESTER)

    assert home["type"] == "home"
    assert headers(home) == ["Waiting for my approval", "My recent requests", "My roles"]
    assert "Nothing is waiting for your approval." in text(section(home, "Waiting for my approval"))
    recent = text(section(home, "My recent requests"))
    assert request_id in recent and "*pending*" in recent
    assert f"{slack.slack.url}/archives/{CHANNEL}/p{card_ts.replace('.', '')}|see the card>" in recent
    assert f"Request sends: sender code {CODE}" in text(section(home, "My roles"))


def test_an_approver_sees_what_waits_for_them_with_the_cards_approve_and_reject_buttons(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)

    home = open_home(slack, APPROVER)

    waiting = section(home, "Waiting for my approval")
    assert request_id in text(waiting) and f"<@{REQUESTER}>" in text(waiting)
    assert buttons(waiting) == [("approve", request_id), ("approve_with_note", request_id), ("reject", request_id)]
    card_buttons = buttons(slack.slack.calls("chat.postMessage")[0]["blocks"])
    assert set(buttons(waiting)) < set(card_buttons)  # the card's own, Cancel left to the requester
    assert "confirm" in text(waiting)  # the same dialog before a send
    assert "You have not requested any sends yet." in text(section(home, "My recent requests"))
    assert f"Approve sends: sender code {CODE}" in text(section(home, "My roles"))
    assert "Sender codes I administer" not in headers(home)

    assert "You hold no role yet" in text(section(open_home(slack, STRANGER), "My roles"))


def test_approving_from_the_home_tab_sends_once_updates_the_card_and_refreshes_both_home_tabs(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    open_home(slack, APPROVER)
    before = len(published(slack.slack, REQUESTER))

    click_on_home(slack, APPROVER, "approve", request_id)

    slack.wait_card(request_id, "submitted to WhatCounts")
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(request_id).state == "sent"
    approver_home = published(slack.slack, APPROVER)[-1]
    assert request_id not in text(section(approver_home, "Waiting for my approval"))
    requester_homes = published(slack.slack, REQUESTER)[before:]
    assert requester_homes, "the requester's Home tab was not refreshed"
    assert "*sent*" in text(section(requester_homes[-1], "My recent requests"))

    click_on_home(slack, APPROVER, "approve", request_id)  # a stale Home tab: told, in the app's messages
    told = slack.slack.wait_for("chat.postMessage", lambda p: p.get("channel") == APPROVER)
    assert "already sent" in told["text"]
    assert len(fake_whatcounts.posts()) == 1


def test_a_click_on_the_home_tab_is_checked_like_a_click_on_the_card(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)

    click_on_home(slack, STRANGER, "approve", request_id)

    told = slack.slack.wait_for("chat.postMessage", lambda p: p.get("channel") == STRANGER)
    assert "You need an approver grant" in told["text"]
    assert db.request(request_id).state == "pending" and fake_whatcounts.posts() == []


def test_a_new_request_appears_on_its_approvers_home_tabs_without_their_opening_it_again(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    open_home(slack, APPROVER)

    request_id = slack.request(REQUESTER)
    slack.settle()

    assert buttons(section(published(slack.slack, APPROVER)[-1], "Waiting for my approval")) == [
        ("approve", request_id), ("approve_with_note", request_id), ("reject", request_id)]
    assert request_id in text(section(published(slack.slack, REQUESTER)[-1], "My recent requests"))


def test_the_home_tab_opens_over_socket_mode_too(db: Database, env: dict[str, str], fake_slack: FakeSlack,
                                                 socket_endpoint: FakeSocketModeEndpoint) -> None:
    """The bot's app connected over Socket Mode as `sms-bot serve` connects it, in this process
    (test_socket_mode runs the real `serve` process)."""
    db.allow_sends(REQUESTER, APPROVER)
    with in_process_bot({**env, "SLACK_APP_TOKEN": APP_TOKEN}) as bot:
        handler = SocketModeHandler(bot.runtime.app, APP_TOKEN)
        handler.connect()
        try:
            socket_endpoint.outgoing.put({"envelope_id": "env-home", "type": "events_api",
                                          "accepts_response_payload": False, "payload": home_opened(APPROVER)})
            assert socket_endpoint.acks.get(timeout=20)["envelope_id"] == "env-home"
            home = fake_slack.wait_for("views.publish", lambda p: p.get("user_id") == APPROVER, timeout=20)["view"]
        finally:
            handler.close()
    assert f"Approve sends: sender code {CODE}" in text(section(home, "My roles"))


def test_rejecting_on_the_card_refreshes_the_home_tabs_of_requester_and_approvers(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant("UOTHER", "approver", CODE)
    request_id = slack.request(REQUESTER)

    assert slack.reject(APPROVER, request_id, "Wrong audience").text == ""
    slack.wait_card(request_id, "rejected")
    slack.settle()

    assert "*rejected*" in text(section(published(slack.slack, REQUESTER)[-1], "My recent requests"))
    for approver in (APPROVER, "UOTHER"):
        assert "Nothing is waiting" in text(section(published(slack.slack, approver)[-1], "Waiting for my approval"))


def test_an_admin_sees_each_code_with_its_approvals_todays_cap_use_and_quiet_hours_and_whether_they_apply_now(
        db: Database, slack: SlackDriver) -> None:
    now = datetime.now(UTC)
    quiet_now = f"{format_time((now - timedelta(hours=1)).time())}-{format_time((now + timedelta(hours=1)).time())}"
    later = f"{format_time((now + timedelta(hours=3)).time())}-{format_time((now + timedelta(hours=4)).time())}"
    db.allow_sends(REQUESTER, APPROVER, daily_cap=5)
    with db.sessions.begin() as session:  # the two windows, through the registry as an admin sets them
        set_sender_code(session, "5550001111", "test", label="Alerts", quiet_hours=quiet_now, timezone="UTC",
                        approvals=2, approvals_all_contacts=3)
        set_sender_code(session, CODE, "test", quiet_hours=later, timezone="UTC")
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    slack.wait_card(request_id, "submitted to WhatCounts")

    home = open_home(slack, ADMIN)

    assert headers(home)[-3:] == ["Sender codes I administer", "Outcome unknown", "Scheduled sends"]
    codes = text(section(home, "Sender codes I administer"))
    assert (f"*{CODE}* · 1 approval needed · 1 of 5 sends today · quiet hours {later} UTC: not in effect now"
            in codes)
    assert (f"*5550001111* (Alerts) · 2 approvals needed (3 for All contacts) · 0 sends today, no cap · "
            f"quiet hours {quiet_now} UTC: *in effect now*" in codes)
    assert "No send has an unknown outcome." in text(section(home, "Outcome unknown"))
    assert "Administer: every sender code" in text(section(home, "My roles"))


def test_an_admin_sees_the_sends_whose_outcome_is_unknown(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(ADMIN, "admin", CODE)
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 1, "status": "submitted"}, held=True)  # never in time
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_TIMEOUT="0.5") as (_bot, slack):
        request_id = slack.request(REQUESTER)
        slack.click(APPROVER, "approve", request_id)
        slack.wait_outcome("Outcome unknown")
        slack.settle()
        refreshed = published(fake_slack, ADMIN)  # the admin's Home tab followed the request
        assert refreshed and request_id in text(section(refreshed[-1], "Outcome unknown"))

        unknown = section(open_home(slack, ADMIN), "Outcome unknown")
    assert request_id in text(unknown) and "see the card" in text(unknown)


def test_long_lists_are_cut_and_say_how_many_more(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    ids = [slack.request(REQUESTER, campaign_name=f"Campaign {n}") for n in range(12)]

    home = open_home(slack, APPROVER)

    waiting = section(home, "Waiting for my approval")
    assert len(buttons(waiting)) == 3 * 10
    assert "and 2 more" in text(waiting)
    assert sum(request_id in text(waiting) for request_id in ids) == 10
    assert "and 2 more" in text(section(open_home(slack, REQUESTER), "My recent requests"))


def test_slack_refusing_home_tabs_holds_up_no_decision_and_the_next_opening_works(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    slack.slack.fail("views.publish", "internal_error", times=3)
    request_id = slack.request(REQUESTER)  # the approver's Home tab: refused

    slack.click(APPROVER, "approve", request_id)  # the requester's and the approver's: refused

    slack.wait_card(request_id, "submitted to WhatCounts")
    assert len(fake_whatcounts.posts()) == 1
    assert "*sent*" in text(section(open_home(slack, REQUESTER), "My recent requests"))


@ON_POSTGRESQL
def test_a_home_tab_opened_while_the_database_is_gone_says_so(
        db: Database, proxy: DatabaseProxy, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    target = urlsplit(db.url)
    proxied = db.url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    with bot_with(env, tmp_path, fake_slack, DATABASE_URL=proxied) as (_bot, slack):
        assert "My roles" in headers(open_home(slack, APPROVER))
        proxy.close()  # the database stops: its connections are cut and its port refuses new ones

        home = open_home(slack, APPROVER)

    assert DATABASE_DOWN in text(home) and "My roles" not in headers(home)


def test_a_request_past_its_expiry_on_the_databases_clock_no_longer_waits_for_anyone(
        db: Database, env: dict[str, str], fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    with in_process_bot(env, sweeper=False) as bot:
        slack = SlackDriver(bot.url, fake_slack)
        request_id = slack.request(REQUESTER)
        assert request_id in text(section(open_home(slack, APPROVER), "Waiting for my approval"))

        bot.runtime.core.lifecycle.clock = lambda session: database_now(session) + timedelta(hours=2)  # unswept

        assert request_id not in text(section(open_home(slack, APPROVER), "Waiting for my approval"))
        slack.close()
