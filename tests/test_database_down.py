"""A dead, black-holed, slow or full database: every Slack request is still answered, in words, inside
Slack's 3 s, and the bot recovers by itself."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, text

from bot.rules.sender_codes import ALL_CONTACTS
from bot.slack.commands import ADMIN_TOO_SLOW
from bot.slack.database_down import DATABASE_DOWN
from bot.store import engine as store_engine
from bot.store.engine import normalize_url
from bot.store.models import ALL_SENDER_CODES
from tests.dbproxy import DatabaseProxy, pool_used_up
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CODE, Database, bot_with

SLACK_DEADLINE = 3.0  # seconds: Slack's hard contract for every acknowledgement


# A network black hole needs a database behind a network: PostgreSQL. SQLite's way of being
# unavailable is a file another program keeps locked (the last test).
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def proxy(db: Database) -> Iterator[DatabaseProxy]:
    server = DatabaseProxy(*_host_and_port(db))
    yield server
    server.close()


def _host_and_port(db: Database) -> tuple[str, int]:
    parts = urlsplit(db.url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def proxied_url(db: Database, proxy: DatabaseProxy) -> str:
    target = urlsplit(db.url)
    return db.url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")


@contextmanager
def sqlite_locked(db: Database) -> Iterator[None]:
    """Another program holds the SQLite file's write lock until the block ends."""
    locker = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@contextmanager
def black_holed(proxy: DatabaseProxy) -> Iterator[None]:
    proxy.black_hole()
    try:
        yield
    finally:
        proxy.restore()


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@ON_POSTGRESQL
def test_a_black_holed_database_gets_every_slack_request_an_answer_and_the_bot_recovers(
        db: Database, proxy: DatabaseProxy, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    db.allow_sends("UREQ", "UAPP")
    db.grant("UADMIN", "admin", ALL_SENDER_CODES)
    with bot_with(env, tmp_path, fake_slack, DATABASE_URL=proxied_url(db, proxy)) as (bot, slack):
        request_id = slack.request("UREQ")
        form = slack.open_form("UREQ")

        proxy.black_hole()
        ready, seconds = timed(lambda: bot.get("/readyz"))
        assert ready.status_code == 503 and seconds < 1.0, (ready.text, seconds)

        for attempt in range(3):  # again and again: no listener is left hanging, the pool is not used up
            command, seconds = timed(lambda: slack.command("UREQ"))
            assert command.status_code == 200 and seconds < SLACK_DEADLINE, (attempt, seconds)
            assert DATABASE_DOWN in command.text

            admin, seconds = timed(lambda: slack.command("UADMIN", "admin grants"))
            assert admin.status_code == 200 and seconds < SLACK_DEADLINE and DATABASE_DOWN in admin.text

            submitted, seconds = timed(lambda: slack.submit("UREQ", form, message_name="Spring Sale", sender_code=CODE,
                                                            campaign_name="Down", group_name=ALL_CONTACTS))
            assert submitted.status_code == 200 and seconds < SLACK_DEADLINE
            assert DATABASE_DOWN in submitted.json()["errors"].values()

            slack.pick_sender_code("UREQ", form, CODE)  # acknowledged at once; said beside the form
            assert slack.ephemerals("UREQ").count(DATABASE_DOWN) == attempt + 1

            helped, seconds = timed(lambda: slack.command("UREQ", "help"))
            assert helped.status_code == 200 and seconds < SLACK_DEADLINE and "/sms-send" in helped.text

        with ThreadPoolExecutor(max_workers=24) as burst:  # more at once than the bot has threads
            answers = list(burst.map(lambda n: timed(lambda: slack.command("UREQ", "help" if n % 6 == 0 else "")),
                                     range(24)))
        assert all(r.status_code == 200 and s < SLACK_DEADLINE for r, s in answers), \
            [(r.status_code, s) for r, s in answers]
        assert sum(DATABASE_DOWN in r.text for r, _ in answers) == 20

        clicked, seconds = timed(lambda: slack.click("UAPP", "approve", request_id))
        assert clicked.status_code == 200 and seconds < SLACK_DEADLINE
        slack.wait_ephemeral("UAPP", DATABASE_DOWN)

        proxy.restore()
        fake_slack.wait_until(lambda: bot.get("/readyz").status_code == 200,
                              timeout=15, what="/readyz to say ready again")
        assert slack.click("UAPP", "approve", request_id).status_code == 200
        slack.wait_outcome("4711", timeout=15)
    assert db.request(request_id).state == "sent"
    assert [r.campaign_name for r in db.requests()] == ["Spring 2026"]  # nothing was stored while it was down


@ON_POSTGRESQL
def test_a_database_that_is_gone_is_answered_in_words_and_used_again_when_it_is_back(
        db: Database, proxy: DatabaseProxy, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    db.allow_sends("UREQ", "UAPP")
    with bot_with(env, tmp_path, fake_slack, DATABASE_URL=proxied_url(db, proxy)) as (bot, slack):
        request_id = slack.request("UREQ")
        proxy.close()  # the database stops: its connections are cut and its port refuses new ones
        ready, seconds = timed(lambda: bot.get("/readyz"))
        assert ready.status_code == 503 and seconds < 1.0
        command, seconds = timed(lambda: slack.command("UREQ"))
        assert command.status_code == 200 and seconds < SLACK_DEADLINE and DATABASE_DOWN in command.text
        slack.click("UAPP", "approve", request_id)
        slack.wait_ephemeral("UAPP", DATABASE_DOWN)

        back = DatabaseProxy(*_host_and_port(db), listen_port=proxy.port)
        try:
            fake_slack.wait_until(lambda: bot.get("/readyz").status_code == 200,
                                  timeout=15, what="/readyz to say ready again")
            slack.click("UAPP", "approve", request_id)
            slack.wait_outcome("4711", timeout=15)
        finally:
            back.close()
    assert db.request(request_id).state == "sent"


@ON_SQLITE
def test_a_sqlite_file_locked_by_another_program_gets_answers_in_words_and_the_bot_carries_on_after(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    db.allow_sends("UREQ", "UAPP")
    with bot_with(env, tmp_path, fake_slack) as (_bot, slack):
        request_id = slack.request("UREQ")
        form = slack.open_form("UREQ")
        with sqlite_locked(db):  # another program holds the write lock and does not let go
            submitted, seconds = timed(lambda: slack.submit("UREQ", form, message_name="Spring Sale", sender_code=CODE,
                                                            campaign_name="Locked out", group_name=ALL_CONTACTS))
            assert submitted.status_code == 200 and seconds < SLACK_DEADLINE
            # The card went out, then the request could not be stored: the card is taken back and the
            # form says why, inline if that came in time, else in the form that said "Posting…".
            if submitted.json().get("response_action") == "errors":
                assert DATABASE_DOWN in submitted.json()["errors"].values()
            else:
                updated = fake_slack.wait_for("views.update", lambda call: DATABASE_DOWN in json.dumps(call["view"]))
                assert "not posted" in json.dumps(updated["view"])
            fake_slack.wait_for("chat.delete")
            clicked, seconds = timed(lambda: slack.click("UAPP", "approve", request_id))
            assert clicked.status_code == 200 and seconds < SLACK_DEADLINE
            slack.wait_ephemeral("UAPP", DATABASE_DOWN)
        assert slack.click("UAPP", "approve", request_id).status_code == 200
        slack.wait_outcome("4711", timeout=15)
    assert [(r.campaign_name, r.state) for r in db.requests()] == [("Spring 2026", "sent")]


@pytest.mark.slow
@ON_POSTGRESQL
def test_a_slow_database_holds_no_answer_past_slacks_3_s(
        db: Database, proxy: DatabaseProxy, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    """Each of the engine's bounds is per statement; a form's checks take several. With every round trip
    to the database at 0.4 s (the connection check at checkout still passes), they would take longer
    than Slack waits: the bot gives up waiting for them in time and says so."""
    db.allow_sends("UREQ", "UAPP")
    db.grant("UADMIN", "admin", ALL_SENDER_CODES)
    with bot_with(env, tmp_path, fake_slack, DATABASE_URL=proxied_url(db, proxy)) as (bot, slack):
        request_id = slack.request("UREQ")
        form = slack.open_form("UREQ")

        proxy.slow(0.2)
        submitted, seconds = timed(lambda: slack.submit("UREQ", form, message_name="Spring Sale", sender_code=CODE,
                                                        campaign_name="Slow", group_name=ALL_CONTACTS))
        assert submitted.status_code == 200 and seconds < SLACK_DEADLINE, (submitted.text, seconds)
        assert DATABASE_DOWN in submitted.json()["errors"].values()

        admin, seconds = timed(lambda: slack.command("UADMIN", "admin grant <@UNEW|new> requester 5551234567"))
        assert admin.status_code == 200 and seconds < SLACK_DEADLINE, (admin.text, seconds)
        assert ADMIN_TOO_SLOW in admin.text or "UNEW" in admin.text  # a change may be too slow to wait for

        proxy.slow(0.3)  # slower still: the form's grants, read once the connection is checked and replaced
        command, seconds = timed(lambda: slack.command("UREQ"))
        assert command.status_code == 200 and seconds < SLACK_DEADLINE, (command.text, seconds)
        assert DATABASE_DOWN in command.text

        clicked, seconds = timed(lambda: slack.click("UAPP", "approve", request_id))
        assert clicked.status_code == 200 and seconds < SLACK_DEADLINE

        proxy.restore()
        slack.wait_outcome("4711", timeout=15)  # the click, answered at once, went through once it could
        bot.settle()
    assert [r.campaign_name for r in db.requests()] == ["Spring 2026"]  # the form given up on saved nothing


def test_a_bot_whose_connection_pool_is_used_up_answers_in_words_in_time_and_carries_on_after(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    db.allow_sends("UREQ", "UAPP")
    with bot_with(env, tmp_path, fake_slack) as (bot, slack):
        request_id = slack.request("UREQ")
        form = slack.open_form("UREQ")
        with pool_used_up(bot.runtime.core.engine):
            command, seconds = timed(lambda: slack.command("UREQ"))
            assert command.status_code == 200 and seconds < SLACK_DEADLINE and DATABASE_DOWN in command.text
            submitted, seconds = timed(lambda: slack.submit("UREQ", form, message_name="Spring Sale",
                                                            sender_code=CODE, campaign_name="Full",
                                                            group_name=ALL_CONTACTS))
            assert submitted.status_code == 200 and seconds < SLACK_DEADLINE
            assert DATABASE_DOWN in submitted.json()["errors"].values()
            clicked, seconds = timed(lambda: slack.click("UAPP", "approve", request_id))
            assert clicked.status_code == 200 and seconds < SLACK_DEADLINE
            slack.wait_ephemeral("UAPP", DATABASE_DOWN)
        slack.click("UAPP", "approve", request_id)
        slack.wait_outcome("4711", timeout=15)
    assert [(r.campaign_name, r.state) for r in db.requests()] == [("Spring 2026", "sent")]


@ON_POSTGRESQL
def test_a_pooled_connection_slow_to_answer_its_check_is_replaced_without_failing_anyone_else(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before use, a pooled connection gets PING_SECONDS to answer a check; on a busy machine one may take longer.
    That connection is replaced; the database is not taken for down meanwhile, which would fail the threads
    recording sends WhatCounts accepted (they stayed "sending", then "Outcome unknown"). Here every check is
    too slow."""
    db.allow_sends("UREQ", "UAPP")
    with bot_with(env, tmp_path, fake_slack) as (bot, slack):
        request_ids = [slack.request("UREQ", campaign_name=f"Busy {n}") for n in range(6)]
        monkeypatch.setattr(store_engine, "PING_SECONDS", 1e-6)
        with ThreadPoolExecutor(max_workers=6) as clicks:
            assert list(clicks.map(lambda r: slack.click("UAPP", "approve", r).status_code, request_ids)) == [200] * 6
        bot.settle()  # every click's work done: its send recorded, or given up on
    assert [db.request(r).state for r in request_ids] == ["sent"] * 6
    assert DATABASE_DOWN not in slack.ephemerals("UAPP")


@ON_POSTGRESQL
def test_a_database_server_at_its_connection_limit_is_answered_in_words_in_time(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack) -> None:
    """The bot's database user may open no more connections (the server's or the role's limit):
    each new connection is refused at once, and said so."""
    db.allow_sends("UREQ", "UAPP")
    role = f"t_limited_{uuid.uuid4().hex[:8]}"
    schema_name = db.url.rsplit("search_path%3D", 1)[1]
    admin = create_engine(normalize_url(db.url.split("?")[0]), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for statement in (f'CREATE ROLE "{role}" LOGIN', f'GRANT USAGE ON SCHEMA "{schema_name}" TO "{role}"',
                          f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema_name}" TO "{role}"',
                          f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema_name}" TO "{role}"'):
            connection.execute(text(statement))
    limited = db.url.replace("postgres@", f"{role}@", 1)
    try:
        with bot_with(env, tmp_path, fake_slack, DATABASE_URL=limited) as (bot, slack):
            request_id = slack.request("UREQ")
            with admin.connect() as connection:
                connection.execute(text(f'ALTER ROLE "{role}" CONNECTION LIMIT 0'))
            bot.runtime.core.engine.dispose()  # the connections it has are let go: every request needs a new one
            for _ in range(2):
                command, seconds = timed(lambda: slack.command("UREQ"))
                assert command.status_code == 200 and seconds < SLACK_DEADLINE and DATABASE_DOWN in command.text
            clicked, seconds = timed(lambda: slack.click("UAPP", "approve", request_id))
            assert clicked.status_code == 200 and seconds < SLACK_DEADLINE
            slack.wait_ephemeral("UAPP", DATABASE_DOWN)

            with admin.connect() as connection:
                connection.execute(text(f'ALTER ROLE "{role}" CONNECTION LIMIT -1'))
            fake_slack.wait_until(lambda: bot.get("/readyz").status_code == 200,
                                  timeout=15, what="/readyz to say ready again")
            slack.click("UAPP", "approve", request_id)
            slack.wait_outcome("4711", timeout=15)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
    assert db.request(request_id).state == "sent"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_send_whatcounts_accepted_while_the_database_was_away_is_recorded_once_it_is_back(
        database_url: str, db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    """WhatCounts cannot be asked again what it answered: the outcome waits for the database, not the sweep's
    "unknown", and nothing is sent twice."""
    db.allow_sends("UREQ", "UAPP")
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 4711, "status": "submitted"}, held=True)
    with ExitStack() as stack:
        proxy = None if database_url.startswith("sqlite") else DatabaseProxy(*_host_and_port(db))
        if proxy is not None:
            stack.callback(proxy.close)
        url = env["DATABASE_URL"] if proxy is None else proxied_url(db, proxy)
        bot, slack = stack.enter_context(bot_with(env, tmp_path, fake_slack, DATABASE_URL=url))
        request_id = slack.request("UREQ")
        fake_slack.hold("chat.update")  # the "sending" card, too, is recorded while the database is away
        slack.click("UAPP", "approve", request_id)
        fake_whatcounts.wait_until(fake_whatcounts.posts, what="the POST")
        with sqlite_locked(db) if proxy is None else black_holed(proxy):
            fake_slack.release("chat.update")
            fake_whatcounts.release()  # WhatCounts accepts the send; the database does not answer
            fake_whatcounts.wait_until(lambda: "outcome sent not recorded yet" in bot.log(), timeout=15,
                                       what="the outcome tried again")
            fake_whatcounts.wait_until(lambda: "sending card was not recorded as shown" in bot.log(), timeout=15,
                                       what="the sending card's failure logged, in one line")
        slack.wait_outcome("WhatCounts accepted the send", timeout=20)
    request = db.request(request_id)
    assert (request.state, request.whatcounts_id) == ("sent", "4711")
    assert db.events(request_id) == ["requested", "approved", "sending", "sent"]
    assert len(fake_whatcounts.posts()) == 1
