"""Operations: health, readiness and metrics endpoints, JSON logs, `sms-bot check`, Slack rate limits,
the sweeper catching up on cards, and a graceful shutdown that lets a send in flight finish."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bot.store.engine import database_now
from tests.fakes import SUCCESS_BODY, FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import (
    SECRETS,
    WHATCOUNTS_PASSWORD,
    BotProcess,
    Database,
    SlackDriver,
    bot_with,
    process_with,
    run_cli,
)

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"


def samples(bot_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(bot_url + "/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def test_health_readiness_metrics_and_json_logs(db: Database, env: dict[str, str], tmp_path: Path,
                                                 fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    with process_with(env, tmp_path, fake_slack, workers=2, LOG_FORMAT="json") as (bot, slack):
        ready = httpx.get(bot.url + "/readyz")
        assert (ready.status_code, ready.text.strip()) == (200, "ok")

        for _ in range(6):
            assert slack.command(REQUESTER, "help").status_code == 200
        request_id = slack.request(REQUESTER)  # one more command, one view_submission
        slack.click(APPROVER, "approve", request_id)
        slack.wait_outcome("4711")
        slack.slack.wait_until(lambda: db.request(request_id).state == "sent", what="the send to be recorded")

        # Two workers answered these; whichever one serves /metrics reports all of them.
        found = samples(bot.url)
        assert found[("slack_requests_total", (("kind", "command"), ("outcome", "2xx")))] == 7
        assert found[("slack_requests_total", (("kind", "view_submission"), ("outcome", "2xx")))] == 1
        assert found[("slack_requests_total", (("kind", "block_actions"), ("outcome", "2xx")))] == 1
        assert found[("slack_ack_seconds_count", (("kind", "command"),))] == 7
        assert found[("sms_sends_total", (("outcome", "sent"),))] == 1
        assert found[("whatcounts_send_seconds_count", ())] == 1

        with db.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
        not_ready = httpx.get(bot.url + "/readyz")
        assert not_ready.status_code == 503 and "0000_older" in not_ready.text

    log = bot.log()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON event
    assert any(e.get("request_id") == request_id and e.get("outcome") == "sent" for e in lines), log
    assert any(e.get("request_id") == request_id and e.get("kind") == "block_actions" for e in lines), log
    for secret in SECRETS:
        assert secret not in log


def test_rate_limited_card_update_is_retried_by_the_sdk(db: Database, env: dict[str, str], tmp_path: Path,
                                                        fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    # No sweeps: only the SDK's rate-limit retry can bring this card up to date.
    with bot_with(env, tmp_path, fake_slack, SWEEP_INTERVAL_SECONDS="3600") as (_bot, slack):
        request_id = slack.request(REQUESTER)
        fake_slack.fail("chat.update", "ratelimited", times=1, status=429, headers={"Retry-After": "0"})
        slack.click(APPROVER, "approve", request_id)
        slack.wait_outcome("4711")
        slack.settle()
        request = db.request(request_id)
        assert request.card_version == request.version  # the card shows the request's latest state
    updates = slack.card_updates(request_id)
    assert fake_slack.failures[0].times == 0
    assert updates[0]["blocks"] == updates[1]["blocks"]  # answered 429, then sent again after Retry-After
    assert "4711" in json.dumps(updates[-1]["blocks"])


def test_card_update_failing_past_the_sdk_retries_is_caught_up_by_the_sweeper(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    with bot_with(env, tmp_path, fake_slack, SWEEP_INTERVAL_SECONDS="3600") as (bot, slack):  # we sweep
        request_id = slack.request(REQUESTER)
        fake_slack.fail("chat.update", "ratelimited", status=429, headers={"Retry-After": "0"})  # every time
        slack.click(APPROVER, "approve", request_id)
        slack.wait_outcome("4711")
        slack.settle()
        request = db.request(request_id)
        assert request.state == "sent" and request.card_version < request.version  # the SDK gave up
        attempts = len(slack.card_updates(request_id))
        assert attempts >= 3

        fake_slack.failures.clear()
        outbox = bot.runtime.core.outbox
        outbox.clock = lambda session: database_now(session) + timedelta(minutes=11)  # past the back-off
        bot.sweep()
    request = db.request(request_id)
    assert request.card_version == request.version
    updates = slack.card_updates(request_id)
    assert len(updates) > attempts and "4711" in json.dumps(updates[-1]["blocks"])


def test_sigterm_lets_a_send_in_flight_finish_and_be_recorded(db: Database, bot_process: BotProcess,
                                                              slack: SlackDriver,
                                                              fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, delay=1.5)
    slack.click(APPROVER, "approve", request_id)
    fake_whatcounts.wait_until(fake_whatcounts.posts, what="the POST to WhatCounts")

    assert bot_process.terminate() == 0  # the master only, as `docker stop` does; it stops its workers
    request = db.request(request_id)
    assert (request.state, request.whatcounts_id) == ("sent", "4711")
    assert db.events(request_id)[-1] == "sent"


def test_check_command(db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
                       fake_whatcounts: FakeWhatCounts) -> None:
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["ok", "configuration:"], ["ok", "database:"], ["ok", "slack:"], ["ok", "whatcounts:"]]
    [get] = [r for r in fake_whatcounts.received if r.method == "GET"]
    assert (get.path, get.query) == ("/rest/sms", "skip=0")
    assert get.headers["authorization"].startswith("Basic ")
    assert fake_whatcounts.posts() == []

    fake_whatcounts.messages = None  # so `reply` answers the listing too
    fake_whatcounts.reply = WhatCountsReply(401, {"error": "Unauthorized"})
    fake_slack.fail("auth.test", "invalid_auth")
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok")
    assert lines[1].startswith("FAIL  database:") and "sms-bot db upgrade" in lines[1]
    assert lines[2].startswith("FAIL  slack:") and "invalid_auth" in lines[2]
    assert lines[3].startswith("FAIL  whatcounts:") and "credentials refused" in lines[3]
    assert WHATCOUNTS_PASSWORD not in result.stdout + result.stderr
