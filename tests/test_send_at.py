"""Send at a time: the form's "Send at", a request approved before it and waiting as scheduled, and the
send a sweep claims at its time, once, after every check a send makes; or the reason it is not sent.

Conversations through the real server on SQLite and PostgreSQL. Time moves by giving in-process bots
a clock of the test's choosing (the life cycle's, which stands for the database's).
"""

from __future__ import annotations

import json
import time as wall
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import text, update

from bot.ops.config import ConfigError, load_settings
from bot.ops.runtime import build_core
from bot.rules.sender_codes import ALL_CONTACTS
from bot.store import schema
from bot.store.engine import database_now, make_engine
from bot.store.models import SendRequest
from tests.fakes import SPRING_SALE, SUCCESS_BODY, FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CODE, Database, SlackDriver, form_errors, in_process_bot, insert_old_request, running_bot

REQUESTER, APPROVER, ADMIN = "UREQUESTER", "UAPPROVER", "UADMIN"
BERLIN = "Europe/Berlin"


def db_now(db: Database) -> datetime:
    with db.sessions() as session:
        return database_now(session)


def unix(moment: datetime) -> str:
    """A naive UTC moment as Slack's date-and-time picker reports it: UNIX seconds."""
    return str(int(moment.replace(tzinfo=UTC).timestamp()))


def slack_date(moment: datetime) -> str:
    """The start of how the bot shows a moment to each reader in their own zone."""
    return f"<!date^{int(moment.replace(tzinfo=UTC).timestamp())}^"


def schedule(slack: SlackDriver, db: Database, send_at: datetime) -> str:
    """Request a send at `send_at` through the form, and approve it: it waits, scheduled."""
    request_id = slack.request(REQUESTER, send_at=unix(send_at))
    slack.click(APPROVER, "approve", request_id)
    slack.settle()
    assert db.request(request_id).state == "scheduled"
    return request_id


def sweep_at(env: dict[str, str], moment: datetime, times: int = 1) -> None:
    """Sweep as a bot process whose database says it is `moment`."""
    with in_process_bot(env, clock=lambda _session: moment, sweeper=False) as bot:
        for _ in range(times):
            bot.sweep()
        bot.settle()


def thread(fake_slack: FakeSlack, db: Database, request_id: str) -> list[dict[str, Any]]:
    card_ts = db.request(request_id).card_ts
    return [c for c in fake_slack.calls("chat.postMessage") if c.get("thread_ts") == card_ts]


def told(fake_slack: FakeSlack, db: Database, request_id: str, contains: str) -> dict[str, Any]:
    """The one reply in the card's thread that says `contains`."""
    said = [c for c in thread(fake_slack, db, request_id) if contains in c.get("text", "")]
    assert len(said) == 1, [c.get("text") for c in thread(fake_slack, db, request_id)]
    return said[0]


# --- the form ----------------------------------------------------------------------------------


def test_send_at_in_the_past_too_far_ahead_or_in_quiet_hours_is_refused_on_its_field(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    now = db_now(db)
    send_at = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    berlin = ZoneInfo(BERLIN)
    start, end = ((send_at + timedelta(hours=h)).replace(tzinfo=UTC).astimezone(berlin) for h in (-1, 1))
    db.allow_sends(REQUESTER, APPROVER, quiet_start=time(start.hour, start.minute),
                   quiet_end=time(end.hour, end.minute), timezone=BERLIN)
    form = slack.open_form(REQUESTER)

    def refused(moment: datetime) -> str:
        response = slack.submit(REQUESTER, form, message_name="Spring Sale", sender_code=CODE,
                                campaign_name="Later", group_name=ALL_CONTACTS, send_at=unix(moment))
        errors = form_errors(response)
        assert list(errors) == ["send_at"], errors
        return errors["send_at"]

    assert "has passed; choose a time in the future" in refused(now - timedelta(minutes=5))
    assert "at most 7 days ahead" in refused(now + timedelta(days=7, hours=1))
    quiet = refused(send_at)
    assert quiet.startswith(f"{send_at.replace(tzinfo=UTC).astimezone(berlin):%a %d %b %Y %H:%M} {BERLIN} is "
                            "inside sender code")
    assert quiet.endswith(f"The next allowed time is {end:%a %d %b %Y %H:%M} {BERLIN}.")
    assert db.requests() == [] and fake_slack.calls("chat.postMessage") == []


def test_a_send_now_refused_by_quiet_hours_offers_the_next_allowed_time(
        db: Database, slack: SlackDriver) -> None:
    now = db_now(db)
    berlin = ZoneInfo(BERLIN)
    start, end = ((now + timedelta(hours=h)).replace(tzinfo=UTC).astimezone(berlin) for h in (-1, 2))
    db.allow_sends(REQUESTER, APPROVER, quiet_start=time(start.hour, start.minute),
                   quiet_end=time(end.hour, end.minute), timezone=BERLIN)
    response = slack.submit(REQUESTER, slack.open_form(REQUESTER), message_name="Spring Sale", sender_code=CODE,
                            campaign_name="Now", group_name=ALL_CONTACTS)
    problem = form_errors(response)["sender_code"]
    assert "inside sender code" in problem
    assert f"The next allowed time is {end:%a %d %b %Y %H:%M} {BERLIN}: choose it under Send at." in problem


def test_send_at_settings_are_checked_at_start() -> None:
    settings = load_settings({"SEND_AT_MAX_DAYS": "14", "SEND_AT_GRACE_MINUTES": "5"}, slack=False, whatcounts=False)
    assert (settings.send_at_max_days, settings.send_at_grace_minutes) == (14, 5)
    with pytest.raises(ConfigError) as refused:
        load_settings({"SEND_AT_MAX_DAYS": "0", "SEND_AT_GRACE_MINUTES": "soon"}, slack=False, whatcounts=False)
    assert "SEND_AT_MAX_DAYS must be a positive number of days" in str(refused.value)
    assert "SEND_AT_GRACE_MINUTES must be a positive number of minutes" in str(refused.value)


def test_a_grace_shorter_than_two_sweeps_is_warned_of_at_start(
        env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    core = build_core(load_settings({**env, "SWEEP_INTERVAL_SECONDS": "3600"}))
    core.shutdown()
    core.engine.dispose()
    assert "SEND_AT_GRACE_MINUTES (15) is shorter than two sweeps" in caplog.text


# --- scheduled, then sent at its time ----------------------------------------------------------


def test_a_scheduled_send_outlives_its_time_to_live_and_goes_once_at_its_time(
        db: Database, slack: SlackDriver, env: dict[str, str], fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    send_at = (db_now(db) + timedelta(hours=2)).replace(microsecond=0)
    request_id = slack.request(REQUESTER, send_at=unix(send_at))
    card = fake_slack.calls("chat.postMessage")[0]
    assert "To be sent " + slack_date(send_at) in json.dumps(card["blocks"])
    assert f"{send_at:%a %d %b %Y %H:%M} UTC" in json.dumps(card["blocks"])  # the code's zone: none, so UTC
    slack.click(APPROVER, "approve", request_id)
    scheduled_card = slack.wait_card(request_id, "scheduled")
    assert "to be sent " + slack_date(send_at) in json.dumps(scheduled_card["blocks"])
    buttons = [e["action_id"] for b in scheduled_card["blocks"] if b.get("block_id") == "decision"
               for e in b["elements"]]
    assert buttons == ["cancel", "withdraw"]  # approved: it can only be stopped now
    slack.settle()
    assert "It will be sent " + slack_date(send_at) in told(fake_slack, db, request_id, "approved")["text"]
    homes = [c for c in fake_slack.calls("views.publish") if c["user_id"] == REQUESTER]
    assert "to be sent " + slack_date(send_at) in json.dumps(homes[-1]["view"])

    expires_at = db.request(request_id).expires_at
    assert expires_at < send_at
    sweep_at(env, expires_at + timedelta(minutes=1))  # its time to live is for approvals, and it has them
    assert db.request(request_id).state == "scheduled" and fake_whatcounts.posts() == []
    sweep_at(env, send_at - timedelta(seconds=1))
    assert db.request(request_id).state == "scheduled" and fake_whatcounts.posts() == []

    sweep_at(env, send_at + timedelta(seconds=20), times=2)
    request = db.request(request_id)
    assert request.state == "sent" and request.whatcounts_id == "4711"
    assert len(fake_whatcounts.posts()) == 1
    assert told(fake_slack, db, request_id, "4711")["reply_broadcast"] is True
    assert db.events(request_id) == ["requested", "approved", "scheduled", "sending", "sent"]
    [scheduled] = [e for e in db.audit_rows() if e.event == "scheduled"]
    assert scheduled.details == {"send_at": f"{send_at.isoformat()}Z"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_bot_processes_sweeping_one_database_send_a_scheduled_request_once(
        db: Database, env: dict[str, str], tmp_path: Path, slack: SlackDriver, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    """A `sms-bot serve` process sweeps every 0.1 s, this test's bot in eight threads at once, while
    WhatCounts is slow to answer: the one conditional UPDATE lets one of them send."""
    db.allow_sends(REQUESTER, APPROVER)
    request_id = schedule(slack, db, db_now(db) + timedelta(hours=1))
    with running_bot({**env, "SWEEP_INTERVAL_SECONDS": "0.1"}, tmp_path):
        fake_whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, delay=0.5)
        with db.sessions.begin() as session:  # its time comes now, on the database's clock
            session.execute(update(SendRequest).where(SendRequest.id == request_id)
                            .values(send_at=database_now(session) - timedelta(seconds=1)))
        bot = slack.bot
        assert bot is not None
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _i: bot.sweep(), range(8)))
        fake_slack.wait_until(lambda: db.request(request_id).state == "sent", what="the send")
        wall.sleep(0.35)  # the other process sweeps three more times, finding it sent
    assert len(fake_whatcounts.posts()) == 1
    assert db.events(request_id).count("sending") == 1


# --- stopped before its time -------------------------------------------------------------------


def test_a_scheduled_send_cancelled_or_withdrawn_before_its_time_is_never_sent(
        db: Database, slack: SlackDriver, env: dict[str, str], fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    db.grant(ADMIN, "admin", CODE)
    send_at = db_now(db) + timedelta(hours=1)
    cancelled, withdrawn = schedule(slack, db, send_at), schedule(slack, db, send_at)
    admin_home = json.dumps([c for c in fake_slack.calls("views.publish") if c["user_id"] == ADMIN][-1]["view"])
    assert "Scheduled sends" in admin_home and f"request `{withdrawn}`" in admin_home  # where to find it
    assert "to be sent " + slack_date(send_at) in admin_home
    slack.click(APPROVER, "reject", cancelled)  # approved already: not an approver's to reject now
    slack.click(REQUESTER, "cancel", cancelled)
    slack.click(ADMIN, "withdraw", withdrawn)
    slack.settle()
    sweep_at(env, send_at + timedelta(minutes=1))
    assert fake_whatcounts.posts() == []
    assert (db.request(cancelled).state, db.request(withdrawn).state) == ("cancelled", "cancelled")
    told(fake_slack, db, cancelled, "you cancelled this request. Nothing will be sent.")
    told(fake_slack, db, withdrawn, "withdrew this request before its time to send. Nothing will be sent.")
    assert "already approved: it waits for its time" in slack.wait_ephemeral(APPROVER, "already approved")
    assert db.events(withdrawn)[-1] == "withdrawn"
    admin_home = json.dumps([c for c in fake_slack.calls("views.publish") if c["user_id"] == ADMIN][-1]["view"])
    assert "No approved send is waiting for its time." in admin_home  # the admins' list followed


def revoke_the_approvers_grant(db: Database, _whatcounts: FakeWhatCounts, _send_at: datetime) -> None:
    db.revoke(APPROVER, "approver")


def edit_the_message_in_whatcounts(_db: Database, whatcounts: FakeWhatCounts, _send_at: datetime) -> None:
    whatcounts.messages = [{**SPRING_SALE, "messageText": "Spring sale: 90% off. Reply STOP to opt out."}]


def set_quiet_hours_around_it(db: Database, _whatcounts: FakeWhatCounts, send_at: datetime) -> None:
    start, end = send_at - timedelta(hours=1), send_at + timedelta(hours=1)
    db.sender_code(CODE, quiet_start=time(start.hour, start.minute), quiet_end=time(end.hour, end.minute),
                   timezone="UTC")


@pytest.mark.parametrize(("change", "reason"), [
    (revoke_the_approvers_grant, "Not sent: an approver's grant was revoked before the send."),
    (edit_the_message_in_whatcounts, "Not sent: the text of message “Spring Sale” was changed in WhatCounts"),
    (set_quiet_hours_around_it, "Not sent at its time: It is "),
])
def test_what_changes_before_its_time_is_checked_then_and_stops_the_send_with_its_reason_told(
        db: Database, slack: SlackDriver, env: dict[str, str], fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts, change: Callable[[Database, FakeWhatCounts, datetime], None],
        reason: str) -> None:
    """The checks a send now makes (grants, the text approvers saw, the code's rules) are made at its time."""
    db.allow_sends(REQUESTER, APPROVER)
    send_at = db_now(db) + timedelta(hours=1)
    request_id = schedule(slack, db, send_at)
    change(db, fake_whatcounts, send_at)
    sweep_at(env, send_at)
    request = db.request(request_id)
    assert request.state == "failed" and fake_whatcounts.posts() == []
    assert request.reason is not None and request.reason.startswith(reason)
    assert told(fake_slack, db, request_id, reason)["reply_broadcast"] is True


def test_a_scheduled_send_found_past_its_grace_fails_with_a_reason_and_is_told(
        db: Database, slack: SlackDriver, env: dict[str, str], fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    """Every bot process was down at its time: a quarter of an hour late it still goes; later, it does not."""
    db.allow_sends(REQUESTER, APPROVER)
    send_at = (db_now(db) + timedelta(hours=1)).replace(second=0, microsecond=0)
    request_id = schedule(slack, db, send_at)
    sweep_at(env, send_at + timedelta(minutes=16), times=2)
    request = db.request(request_id)
    assert request.state == "failed" and fake_whatcounts.posts() == []
    assert request.reason == (f"Not sent: it was to be sent at {send_at:%Y-%m-%d %H:%M} UTC, when the bot was "
                              "not running, and 16 minutes late is past the 15 minutes it may still go. "
                              "Request it again if it is still wanted.")
    told(fake_slack, db, request_id, "16 minutes late is past the 15 minutes")
    assert db.events(request_id)[-1] == "failed"


# --- 0010 --------------------------------------------------------------------------------------


def test_migration_0010_keeps_requests_and_ends_scheduled_ones_on_downgrade(database_url: str) -> None:
    schema.upgrade(database_url, "0009")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        insert_old_request(connection, "old")
    for _ in range(2):  # up, and down and up again
        schema.upgrade(database_url)
        with engine.begin() as connection:
            assert connection.execute(text("SELECT send_at FROM send_requests WHERE id = 'old'")).scalar() is None
            insert_old_request(connection, "waits", "scheduled")
        command.downgrade(schema.alembic_config(database_url), "0009")
        with engine.begin() as connection:
            rows = {row[0]: row[1] for row in connection.execute(text("SELECT id, state FROM send_requests"))}
            assert rows == {"old": "pending", "waits": "failed"}
            reason = connection.execute(text("SELECT reason FROM send_requests WHERE id = 'waits'")).scalar()
            assert "without scheduled sends" in str(reason)
            connection.execute(text("DELETE FROM send_requests WHERE id = 'waits'"))
    engine.dispose()
