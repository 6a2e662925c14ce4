"""Slack on a bad day: a slow or rate-limited Slack at submit, a crash mid outcome post, cards Slack will not take.

Signed requests into the real server; Slack and WhatCounts faked at the network edge.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text, update

from bot.requests.outbox import MAX_CARD_ATTEMPTS, Outbox, card_backoff
from bot.slack import blocks, client, views
from bot.store import schema
from bot.store.engine import make_engine, utcnow
from bot.store.models import SendRequest, State
from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import (
    CHANNEL,
    CODE,
    BotProcess,
    Database,
    InProcessBot,
    SlackDriver,
    bot_with,
    home_opened,
    request_id_of,
    running_bot,
)

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"
FORM = {"message_name": "Spring Sale", "sender_code": CODE, "campaign_name": "Spring 2026",
        "description": None, "group_name": "*"}
SLACK_ACK_LIMIT = 3.0  # Slack's hard contract for answering an interaction


def submit_timed(slack: SlackDriver, view: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = slack.submit(REQUESTER, view, **FORM)
    return response, time.monotonic() - started


def modal_text(view: dict[str, Any]) -> str:
    return " ".join(block.get("text", {}).get("text", "") for block in view["blocks"])


@pytest.fixture
def short_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The submission's wait for its card inside the ack (`views.SUBMIT_BUDGET`, 2 s, read at each
    submission) cut to a fraction of a second, for tests of what follows "Posting your request…".
    The first test below keeps the real budget: Slack's 3 s are met with it."""
    monkeypatch.setattr(views, "SUBMIT_BUDGET", 0.3)


def form_updated(fake_slack: FakeSlack, contains: str) -> str:
    call = fake_slack.wait_for("views.update", lambda p: contains in modal_text(p["view"]), timeout=20)
    return modal_text(call["view"])


# --- 1. a slow or rate-limited Slack at submit ------------------------------------------


def test_a_slow_slack_at_submit_is_answered_in_time_and_the_form_then_says_the_request_is_posted(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.hold("chat.postMessage")  # Slack takes longer than the ack may: answered only once released
    response, took = submit_timed(slack, view)
    assert took < SLACK_ACK_LIMIT
    answer = response.json()
    assert answer["response_action"] == "update" and "Posting your request" in modal_text(answer["view"])
    fake_slack.release("chat.postMessage")

    told = form_updated(fake_slack, "is posted")
    [request] = db.requests()
    assert f"`{request.id}`" in told and request.view_id == view["id"]
    assert request_id_of(fake_slack.calls("chat.postMessage")[0]) == request.id

    # Submitting the same form again (Slack retrying, a second click) makes nothing more.
    again, took = submit_timed(slack, view)
    assert took < SLACK_ACK_LIMIT and again.status_code == 200 and again.text == ""
    assert len(fake_slack.calls("chat.postMessage")) == 1
    assert [r.id for r in db.requests()] == [request.id]


def test_a_rate_limited_slack_at_submit_is_waited_out_off_the_ack_path(
        short_budget: None, db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.hold("chat.postMessage")  # the 429, and the wait it asks for, come after the ack
    fake_slack.fail("chat.postMessage", "ratelimited", times=1, status=429, headers={"Retry-After": "1"})
    response, took = submit_timed(slack, view)
    assert took < SLACK_ACK_LIMIT and response.json()["response_action"] == "update"
    fake_slack.release("chat.postMessage")
    form_updated(fake_slack, "is posted")
    assert len(db.requests()) == 1
    assert len(fake_slack.calls("chat.postMessage")) == 2  # the refused try, and the card


def test_a_slow_slack_that_then_refuses_the_card_saves_nothing_and_says_why(
        short_budget: None, db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.hold("chat.postMessage")
    fake_slack.fail("chat.postMessage", "not_in_channel")
    response, took = submit_timed(slack, view)
    assert took < SLACK_ACK_LIMIT and response.json()["response_action"] == "update"
    fake_slack.release("chat.postMessage")
    told = form_updated(fake_slack, "not posted")
    assert "/invite @SMS Send" in told
    assert db.requests() == [] and "requested" not in db.events()


def test_a_person_who_closed_the_posting_form_is_told_in_the_channel_when_the_card_fails(
        short_budget: None, db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.hold("chat.postMessage")
    fake_slack.fail("chat.postMessage", "is_archived")
    fake_slack.fail("views.update", "not_found")  # the person closed the "posting…" form
    response, took = submit_timed(slack, view)
    assert took < SLACK_ACK_LIMIT and response.json()["response_action"] == "update"
    fake_slack.release("chat.postMessage")
    told = slack.wait_ephemeral(REQUESTER, "not posted")
    assert "archived" in told
    assert db.requests() == []


def test_a_slack_that_never_answers_the_card_post_saves_nothing_and_says_so(
        short_budget: None, db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The bot's bound on the call (CARD_POST_TIMEOUT, 10 s, read when a bot is built), cut for the bot
    # built below: reached in a second, still past the submission's budget.
    monkeypatch.setattr(client, "CARD_POST_TIMEOUT", 1)
    db.allow_sends(REQUESTER, APPROVER)
    with bot_with(env, tmp_path, fake_slack) as (_bot, slack):
        view = slack.open_form(REQUESTER)
        fake_slack.hold("chat.postMessage")  # never answered while the bot waits
        response, took = submit_timed(slack, view)
        assert took < SLACK_ACK_LIMIT and response.json()["response_action"] == "update"
        told = form_updated(fake_slack, "not posted")
        assert "did not confirm" in told and "its buttons do nothing" in told
        assert db.requests() == [] and "requested" not in db.events()


def test_a_card_posted_slowly_for_a_request_that_cannot_be_stored_is_taken_back(
        short_budget: None, db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.hold("chat.postMessage")
    response, took = submit_timed(slack, view)
    assert took < SLACK_ACK_LIMIT and response.json()["response_action"] == "update"
    fake_slack.wait_for("chat.postMessage")
    db.revoke(REQUESTER, "requester")  # while the card is on its way
    fake_slack.release("chat.postMessage")
    told = form_updated(fake_slack, "not posted")
    assert "no grant" in told
    posted = fake_slack.calls("chat.postMessage")
    assert len(posted) == 1
    deleted = fake_slack.wait_for("chat.delete")
    assert deleted["channel"] == CHANNEL and deleted["ts"].startswith("1700000000.")
    assert db.requests() == [] and "requested" not in db.events()


def test_the_same_form_submitted_twice_at_once_makes_one_request_and_leaves_one_card(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.slow("chat.postMessage", 1)
    answers: list[tuple[httpx.Response, float]] = []
    clicks = [threading.Thread(target=lambda: answers.append(submit_timed(slack, view))) for _ in range(2)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert [r.status_code for r, _ in answers] == [200, 200]
    assert all(took < SLACK_ACK_LIMIT for _, took in answers)
    assert len(db.requests()) == 1
    posted = len(fake_slack.calls("chat.postMessage"))
    if posted == 2:  # both got past the first check: the one that lost is taken back
        fake_slack.wait_for("chat.delete")
    assert posted - len(fake_slack.calls("chat.delete")) == 1
    assert db.events().count("requested") == 1


@pytest.mark.parametrize("how", ["approve", "approve with note"])
def test_a_slow_card_update_does_not_hold_up_the_send_and_the_outcome_is_the_card_slack_keeps(
        how: str, db: Database, slack: SlackDriver, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_slack.hold("chat.update")  # Slack far away: the "sending" card is slow to arrive
    if how == "approve":
        slack.click(APPROVER, "approve", request_id)
    else:
        modal = slack.open_modal(APPROVER, "approve_with_note", request_id)
        assert slack.submit(APPROVER, modal, note="Checked the link.").status_code == 200
    # The POST reaches WhatCounts while that card update is still on its way (held until released).
    fake_whatcounts.wait_until(lambda: fake_whatcounts.posts() or None, timeout=3, what="the send")
    # And the outcome is told in the thread without waiting for the card either.
    fake_slack.wait_for("chat.postMessage", lambda p: bool(p.get("thread_ts")) and "4711" in p.get("text", ""),
                        timeout=3)
    fake_slack.release("chat.update")
    slack.wait_outcome("4711")  # WhatCounts' id of the send
    updates = fake_slack.calls("chat.update")
    assert len(updates) >= 2 and "4711" in json.dumps(updates[-1]["blocks"])  # the outcome's card, last
    assert db.request(request_id).card_version == db.request(request_id).version


# --- 2. an outcome post lost to a crash -------------------------------------------------


def thread_posts(fake_slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in fake_slack.calls("chat.postMessage") if p.get("thread_ts")]


def test_an_outcome_post_cut_off_by_a_crash_is_posted_once_after_its_lease_lapses(
        db: Database, env: dict[str, str], tmp_path: Path, bot: BotProcess, slack: SlackDriver,
        fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_slack.slow("chat.postMessage", 60)  # the outcome post never gets through...
    slack.click(APPROVER, "approve", request_id)
    fake_slack.wait_until(lambda: thread_posts(fake_slack), what="the outcome post")
    bot.kill()  # ...because the bot dies while making it
    fake_slack.slow("chat.postMessage", 0)
    stuck = db.request(request_id)
    assert stuck.state == State.SENT and not stuck.outcome_posted and stuck.outcome_claimed_until is not None

    with running_bot({**env, "SWEEP_INTERVAL_SECONDS": "0.1"}, tmp_path):
        time.sleep(0.5)  # several sweeps: the dead process's lease still holds
        assert len(thread_posts(fake_slack)) == 1
        with db.sessions.begin() as session:  # two minutes pass: the lease lapses
            session.execute(update(SendRequest).where(SendRequest.id == request_id)
                            .values(outcome_claimed_until=utcnow() - timedelta(seconds=1)))
        slack.wait_outcome("submitted to WhatCounts")
        fake_slack.wait_until(lambda: len(thread_posts(fake_slack)) == 2, what="the outcome posted again")
        time.sleep(0.4)  # more sweeps post nothing more
    assert len(thread_posts(fake_slack)) == 2
    posted = db.request(request_id)
    assert posted.outcome_posted and posted.outcome_claimed_until is None


# --- 3. one bad card stops the others --------------------------------------------------


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


def test_a_card_shows_whatever_whatcounts_says_however_long(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.messages = [{**SPRING_SALE, "messageText": "Sale <b> & more " * 200}]  # 3,200 characters
    error = ("Invalid <request> & refused: " * 110)[:3000]
    fake_whatcounts.reply = WhatCountsReply(400, {"error": error, "status": "Bad Request", "statusCode": 400})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    card = slack.wait_card(request_id, "SMS send failed")
    texts = section_texts(card["blocks"])
    assert all(len(t) <= 3000 for t in texts)
    [outcome] = [t for t in texts if "WhatCounts refused the send" in t]
    assert "“Invalid &lt;request&gt; &amp; refused: Invalid" in outcome and "…”" in outcome
    quoted = [part["text"] for block in card["blocks"] if block["type"] == "rich_text"
              for element in block["elements"] if element["type"] == "rich_text_quote"
              for part in element["elements"]]
    assert quoted and quoted[0].startswith("Sale <b> & more") and quoted[0].endswith("…")  # literal, clipped
    assert len(quoted[0]) <= 3000
    posted = slack.wait_outcome("refused the send")
    assert "Invalid &lt;request&gt;" in posted["text"]
    request = db.request(request_id)
    assert request.error_text == error and request.card_version == request.version


def stale_request(n: int, **values: Any) -> SendRequest:
    """A rejected request an hour old whose card never caught up (Slack refused the update)."""
    at = utcnow() - timedelta(hours=1, seconds=-n)
    return SendRequest(
        id=f"stale{n:04d}", state=State.REJECTED, requester_id=REQUESTER, team_id="T1", channel_id=CHANNEL,
        card_ts=f"9000000000.{n:06d}", message_name="Spring Sale", sender_code=CODE, campaign_name="Old",
        approvals_required=1, created_at=at, expires_at=at + timedelta(hours=1), finished_at=at,
        closed_by=APPROVER, version=2, card_version=1, outcome_posted=True, **values)


def tries_allowed(seconds: float) -> int:
    """How often one failing card may be tried in `seconds`: once, then once per back-off that has run out."""
    tries, waited = 1, card_backoff(1).total_seconds()
    while waited <= seconds:
        tries += 1
        waited += card_backoff(tries).total_seconds()
    return tries


def test_a_card_slack_will_not_take_does_not_hold_up_the_others(
        db: Database, bot_app: InProcessBot, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    seeded = time.monotonic()
    with db.sessions.begin() as session:
        session.add_all([stale_request(n) for n in range(60)])
        session.add(stale_request(60, card_attempts=MAX_CARD_ATTEMPTS - 1))  # one try left
    fake_slack.fail("chat.update", "invalid_blocks", when=lambda p: p.get("ts", "").startswith("9000000000."))

    request_id = slack.request(REQUESTER)
    card_ts = db.request(request_id).card_ts
    fake_slack.fail("chat.update", "internal_error", times=1, when=lambda p: p.get("ts") == card_ts)
    assert slack.reject(APPROVER, request_id, "Not this week").text == ""
    # Its first update fails, and it waits its back-off...
    fake_slack.wait_until(lambda: db.request(request_id).card_retry_at is not None, what="the card to back off")
    with db.sessions.begin() as session:  # ...which runs out (five seconds pass)
        session.execute(update(SendRequest).where(SendRequest.id == request_id)
                        .values(card_retry_at=utcnow() - timedelta(seconds=1)))
    # A sweep catches it up although 61 older cards fail every time.
    fake_slack.wait_until(lambda: (r := db.request(request_id)).state == State.REJECTED
                          and r.card_version == r.version, timeout=30,
                          what="the rejected card to catch up")
    assert sum(1 for c in slack.card_updates(request_id) if "SMS send rejected" in json.dumps(c["blocks"])) == 2

    def tries() -> dict[str, int]:
        tally: dict[str, int] = {}
        for call in fake_slack.calls("chat.update"):
            if call["ts"].startswith("9000000000."):
                tally[call["ts"]] = tally.get(call["ts"], 0) + 1
        return tally

    fake_slack.wait_until(lambda: len(tries()) == 61, what="every failing card to have its turn")
    assert max(tries().values()) <= tries_allowed(time.monotonic() - seeded)  # backing off, not every sweep
    last = db.request("stale0060")
    assert last.card_attempts == MAX_CARD_ATTEMPTS and last.card_version == 1
    assert tries()[last.card_ts] == 1  # given up: never tried again
    assert f"request stale0060: card update failed {MAX_CARD_ATTEMPTS} times; giving up" in bot_app.log()


# --- the migration that holds it (0005), with requests already in the database ----------


def test_migration_keeps_existing_requests_and_lets_their_outcomes_and_cards_catch_up(database_url: str) -> None:
    schema.upgrade(database_url, "0004")
    engine = make_engine(database_url)
    columns = ("id, state, requester_id, team_id, channel_id, card_ts, message_name, sender_code, campaign_name, "
               "approvals_required, allow_self_approval, created_at, expires_at, version, card_version, "
               "outcome_posted, message_verified, sender_label, dry_run")
    with engine.begin() as connection:
        for request_id, state, card_version, posted in (("old-sent", "sent", 3, False),
                                                         ("old-open", "pending", 1, True)):
            connection.execute(text(f"INSERT INTO send_requests ({columns}) VALUES (:id, :state, 'U1', 'T1', 'C1', "
                                    "'1.1', 'Spring Sale', :code, 'Old', 1, false, :at, :at, 3, :cv, :posted, "
                                    "false, '', false)"),
                               {"id": request_id, "state": state, "code": CODE, "at": utcnow(), "cv": card_version,
                                "posted": posted})
        connection.execute(text("INSERT INTO approvals (request_id, approver_id, approved_at) "
                                "VALUES ('old-sent', 'U2', :at)"), {"at": utcnow()})
    db = Database(database_url, engine)
    for _ in range(2):  # up, and down and up again
        schema.upgrade(database_url)
        outbox = Outbox(db.sessions)
        assert [v.request.id for v in outbox.outcomes_unposted()] == ["old-sent"]
        assert [v.request.id for v in outbox.cards_behind()] == ["old-open"]
        old = db.request("old-sent")
        assert (old.view_id, old.outcome_claimed_until, old.card_attempts, old.card_retry_at) == (None, None, 0, None)
        assert outbox.claim_outcome_post("old-sent", 3) and not outbox.claim_outcome_post("old-sent", 3)
        outbox.release_outcome_post("old-sent")
        command.downgrade(schema.alembic_config(database_url), "0004")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM approvals")).scalar() == 1
    engine.dispose()


def _command(slack: SlackDriver, _request_id: str, _form: dict[str, Any]) -> httpx.Response:
    return slack.command(REQUESTER)


def _decision_modal(slack: SlackDriver, request_id: str, _form: dict[str, Any]) -> httpx.Response:
    return slack.click(APPROVER, blocks.REJECT, request_id)


def _form_choice(slack: SlackDriver, _request_id: str, form: dict[str, Any]) -> httpx.Response:
    code = {"type": "static_select", "action_id": blocks.SENDER_CODE_ACTION,
            "selected_option": {"text": {"type": "plain_text", "text": CODE}, "value": CODE}}
    return slack.post(slack.form_action_body(REQUESTER, form, code, {}))


def _home_tab(slack: SlackDriver, _request_id: str, _form: dict[str, Any]) -> httpx.Response:
    return slack.post(json.dumps(home_opened(APPROVER)), "application/json")


@pytest.mark.parametrize(("method", "act"), [
    ("views.open", _command), ("views.open", _decision_modal), ("views.update", _form_choice),
    ("views.publish", _home_tab),
], ids=["command-opens-the-form", "click-opens-a-decision-modal", "choice-redraws-the-form",
        "home-tab-opened"])
def test_what_follows_an_answer_never_holds_the_answer_up(
        method: str, act: Callable[[SlackDriver, str, dict[str, Any]], httpx.Response], db: Database,
        slack: SlackDriver, fake_slack: FakeSlack) -> None:
    """Listeners run in their request's own thread, so what they do after acknowledging (a form, a modal,
    a redraw, a Home tab) is handed off: with Slack holding that call, the request is still answered."""
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    form = slack.open_form(REQUESTER)
    before = len(fake_slack.calls(method))
    fake_slack.hold(method)
    with ThreadPoolExecutor(max_workers=1) as pool:
        answered = pool.submit(act, slack, request_id, form)
        try:
            assert answered.result(timeout=5).status_code == 200
        finally:
            fake_slack.release(method)
    slack.settle()
    assert len(fake_slack.calls(method)) == before + 1
