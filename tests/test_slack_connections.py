"""Slack calls on kept-alive connections (bot.slack.connections), counted by the fake Slack.

A call on a connection Slack closed while idle goes on a new one, once; a call whose connection
breaks after it was written is never sent again by the client, and the bot's handling of a
Slack failure takes over as before.
"""

from __future__ import annotations

import inspect
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from urllib.error import URLError

import pytest
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.web.base_client import BaseClient

from bot.ops.config import Settings, load_settings
from bot.slack.client import Unreachable, token_status, web_client
from bot.slack.connections import CallInterrupted, PooledWebClient
from bot.slack.submission import NO_ANSWER
from tests.fakes import FakeSlack
from tests.harness import CODE, Database, SlackDriver, free_port

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"
FORM = {"message_name": "Spring Sale", "sender_code": CODE, "campaign_name": "Spring 2026",
        "description": None, "group_name": "*"}


def settings(api_url: str) -> Settings:
    return load_settings({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": api_url},
                         whatcounts=False)


def slack_calls(fake_slack: FakeSlack) -> int:
    return sum(1 for r in list(fake_slack.received) if r.path.startswith("/api/"))


def test_the_internal_the_pool_replaces_has_the_shape_it_was_written_for() -> None:
    """PooledWebClient overrides one slack_sdk internal; a slack_sdk that reshapes it must fail here first."""
    internal = BaseClient._perform_urllib_http_request_internal
    assert list(inspect.signature(internal).parameters) == ["self", "url", "req"]
    # ...and the retry loop (rate limits, retry handlers) still makes each try through it
    assert "self._perform_urllib_http_request_internal(url, req)" in inspect.getsource(
        BaseClient._perform_urllib_http_request)


def test_a_person_opening_the_form_again_and_again_costs_one_connection(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    for _ in range(4):
        slack.open_form(REQUESTER)  # views.open by the client Bolt hands the listener
    assert len(fake_slack.calls("views.open")) == 4
    assert fake_slack.connections == 1


def test_a_request_from_form_to_outcome_reuses_its_connections(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)  # views.open, then the card on the card client
    slack.click(APPROVER, "approve", request_id)  # the card's update and the outcome on the bot's client
    slack.wait_outcome("submitted to WhatCounts")
    slack.settle()
    # calls made at once (a card's update, its outcome, a Home tab) take a connection each; the rest reuse them
    assert slack_calls(fake_slack) >= 10 and fake_slack.connections <= 4


def test_a_connection_slack_closed_while_idle_is_replaced_and_the_call_sent_once(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    slack.open_form(REQUESTER)
    fake_slack.close_idle_connections()
    slack.open_form(REQUESTER)
    assert len(fake_slack.calls("views.open")) == 2
    assert fake_slack.connections == 2
    assert slack.bot is not None and "Failed to send" not in slack.bot.log()


def test_a_card_post_cut_off_after_it_reached_slack_is_not_sent_again_and_the_form_says_so(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    view = slack.open_form(REQUESTER)
    fake_slack.drop("chat.postMessage", times=1)
    response = slack.submit(REQUESTER, view, **FORM)
    assert response.json() == {"response_action": "errors", "errors": {"message_name": NO_ANSWER}}
    assert len(fake_slack.calls("chat.postMessage")) == 1
    assert db.requests() == []
    slack.open_form(REQUESTER)  # and the next call goes on a new connection
    assert fake_slack.connections == 2


def test_an_outcome_post_cut_off_after_it_reached_slack_is_posted_again_by_the_sweeper_only(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    fake_slack.drop("chat.postMessage", times=1, when=lambda p: bool(p.get("thread_ts")))
    slack.click(APPROVER, "approve", request_id)
    slack.wait_outcome("submitted to WhatCounts")
    fake_slack.wait_until(lambda: db.request(request_id).outcome_posted, what="the outcome recorded as posted")
    assert len([p for p in fake_slack.calls("chat.postMessage") if p.get("thread_ts")]) == 2
    assert slack.bot is not None and "outcome post failed, will retry: CallInterrupted" in slack.bot.log()


@pytest.fixture
def client(fake_slack: FakeSlack) -> PooledWebClient:
    """slack_sdk's default retry handlers: ConnectionErrorRetryHandler among them."""
    return PooledWebClient(token="xoxb-test", base_url=fake_slack.api_url, timeout=5)


def test_even_slack_sdks_connection_retry_never_resends_a_call_that_reached_slack(
        client: PooledWebClient, fake_slack: FakeSlack) -> None:
    assert any(isinstance(h, ConnectionErrorRetryHandler) for h in client.retry_handlers)
    fake_slack.drop("chat.postMessage", times=1)
    with pytest.raises(CallInterrupted) as raised:
        client.chat_postMessage(channel="C1", text="once")
    assert isinstance(raised.value, OSError)  # the bot's handlers catch it as they caught urllib's
    assert len(fake_slack.calls("chat.postMessage")) == 1


def test_a_call_that_could_not_connect_fails_as_urllib_did() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/api/"
    client = PooledWebClient(token="xoxb-test", base_url=nowhere, timeout=5, retry_handlers=[])
    with pytest.raises(URLError):
        client.auth_test()
    assert token_status(settings(nowhere)) == Unreachable("URLError")  # `sms-bot check` says as before


def test_rate_limits_are_still_waited_out_on_the_pool(fake_slack: FakeSlack) -> None:
    retrying = web_client(settings(fake_slack.api_url))
    fake_slack.fail("chat.update", "ratelimited", times=1, status=429, headers={"Retry-After": "0"})
    assert retrying.chat_update(channel="C1", ts="1.2", text="x")["ok"]
    assert len(fake_slack.calls("chat.update")) == 2 and fake_slack.connections == 1


def test_a_forked_child_never_writes_on_its_parents_connections(
        client: PooledWebClient, fake_slack: FakeSlack) -> None:
    client.auth_test()  # the parent's connection, kept alive
    child = os.fork()
    if child == 0:  # the child (a gunicorn worker): its own connection
        status = 1
        try:
            status = 0 if client.auth_test()["ok"] else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fake_slack.connections == 2
    client.auth_test()  # the parent's connection is still its own, and still alive
    assert fake_slack.connections == 2 and len(fake_slack.calls("auth.test")) == 3


def test_a_proxy_is_still_honoured_through_slack_sdks_own_path(fake_slack: FakeSlack) -> None:
    """With a proxy (given, or HTTPS_PROXY), slack_sdk's urllib makes the call as before: unpooled."""
    proxied = PooledWebClient(token="xoxb-test", base_url="http://slack.invalid/api/", proxy=fake_slack.url)
    assert proxied.auth_test()["ok"] and proxied.auth_test()["ok"]
    assert [r.raw_path for r in fake_slack.received] == ["http://slack.invalid/api/auth.test"] * 2
    assert fake_slack.connections == 2


@pytest.fixture
def tls_slack(fake_slack: FakeSlack, tmp_path: Path) -> tuple[str, Path]:
    """The fake Slack over TLS with a certificate made for the test: (its API URL, the certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    fake_slack.server.socket = serving.wrap_socket(fake_slack.server.socket, server_side=True)
    return fake_slack.api_url.replace("http://", "https://"), cert


def test_over_tls_slack_is_verified_and_one_handshake_serves_many_calls(
        tls_slack: tuple[str, Path], fake_slack: FakeSlack) -> None:
    url, cert = tls_slack
    with pytest.raises(URLError, match="CERTIFICATE_VERIFY_FAILED"):  # not among the system's certificates
        PooledWebClient(token="xoxb-test", base_url=url, retry_handlers=[]).auth_test()
    trusting = PooledWebClient(token="xoxb-test", base_url=url, ssl=ssl.create_default_context(cafile=cert))
    assert all(trusting.auth_test()["ok"] for _ in range(3))
    assert fake_slack.connections == 1 and len(fake_slack.calls("auth.test")) == 3
