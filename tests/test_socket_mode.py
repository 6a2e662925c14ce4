"""`sms-bot serve` with SLACK_APP_TOKEN: Socket Mode against a loopback WebSocket acting as Slack."""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CHANNEL, CODE, Database, SlackDriver

APP_TOKEN = "xapp-1-test-app-token-9c1e"


class FakeSocketModeEndpoint:
    """Slack's side of Socket Mode: says hello, then relays envelopes and collects the bot's acks."""

    def __init__(self) -> None:
        self.outgoing: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.server: Server = serve(self._session, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/link"

    def _session(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1, "debug_info": {}}))
        while True:
            try:
                envelope = self.outgoing.get(timeout=0.05)
                connection.send(json.dumps(envelope))
            except queue.Empty:
                pass
            try:
                self.acks.put(json.loads(connection.recv(timeout=0.05)))
            except TimeoutError:
                continue
            except Exception:
                return


class SocketModeDriver(SlackDriver):
    """The `slack` driver's conversation, delivered as Socket Mode envelopes instead of signed POSTs."""

    _envelopes = itertools.count(1)

    def __init__(self, endpoint: FakeSocketModeEndpoint, slack: FakeSlack) -> None:
        super().__init__("socket-mode", slack)
        self.endpoint = endpoint

    def post(self, body: str, content_type: str = "application/x-www-form-urlencoded", **_: Any) -> httpx.Response:
        fields = dict(parse_qsl(body, keep_blank_values=True))
        envelope_id = f"env-{next(self._envelopes)}"
        kind, payload = (("interactive", json.loads(fields["payload"])) if "payload" in fields
                         else ("slash_commands", fields))
        self.endpoint.outgoing.put({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                    "accepts_response_payload": True})
        while (ack := self.endpoint.acks.get(timeout=20))["envelope_id"] != envelope_id:
            pass
        answer = ack.get("payload")
        return httpx.Response(200, content=json.dumps(answer).encode() if answer else b"")


def start_socket_mode(env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], env={**env, "SLACK_APP_TOKEN": APP_TOKEN},
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest.fixture
def socket_endpoint(fake_slack: FakeSlack) -> Iterator[FakeSocketModeEndpoint]:
    endpoint = FakeSocketModeEndpoint()
    fake_slack.socket_mode_url = endpoint.url
    threading.Thread(target=endpoint.server.serve_forever, daemon=True).start()
    yield endpoint
    endpoint.server.shutdown()


def test_slash_command_over_socket_mode_opens_the_form(db: Database, env: dict[str, str], tmp_path: Path,
                                                        fake_slack: FakeSlack,
                                                        socket_endpoint: FakeSocketModeEndpoint) -> None:
    db.sender_code(CODE)
    db.grant("UREQUESTER", "requester")
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], env={**env, "SLACK_APP_TOKEN": APP_TOKEN},
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        socket_endpoint.outgoing.put({
            "envelope_id": "env-1", "type": "slash_commands", "accepts_response_payload": True,
            "payload": {"token": "x", "team_id": "T1", "team_domain": "acme", "channel_id": CHANNEL,
                        "channel_name": "marketing", "user_id": "UREQUESTER", "user_name": "req",
                        "command": "/sms-send", "text": "", "api_app_id": "A1", "is_enterprise_install": "false",
                        "response_url": f"{fake_slack.url}/response/1", "trigger_id": "trigger-socket"},
        })
        ack = socket_endpoint.acks.get(timeout=20)
        assert ack["envelope_id"] == "env-1"
        opened = fake_slack.wait_for("views.open", lambda p: p.get("trigger_id") == "trigger-socket")
        assert opened["view"]["callback_id"] == "sms_send_request"
        connection_open = [r for r in fake_slack.received if r.path == "/api/apps.connections.open"]
        assert connection_open[0].headers["authorization"] == f"Bearer {APP_TOKEN}"
    finally:
        process.kill()  # a graceful stop takes 3 s; test_sigterm_... stops one so, and checks its whole log
        output = process.communicate(timeout=30)[0].decode()
    assert APP_TOKEN not in output


def test_sigterm_lets_a_send_in_flight_finish_and_be_recorded(db: Database, env: dict[str, str], tmp_path: Path,
                                                               fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts,
                                                               socket_endpoint: FakeSocketModeEndpoint) -> None:
    db.allow_sends("UREQUESTER", "UAPPROVER")
    process = start_socket_mode(env, tmp_path)
    try:
        slack = SocketModeDriver(socket_endpoint, fake_slack)
        request_id = slack.request("UREQUESTER")
        fake_whatcounts.reply = WhatCountsReply(fake_whatcounts.reply.status, fake_whatcounts.reply.body,
                                                delay=1.5)  # inside WHATCOUNTS_TIMEOUT (2 s)
        slack.click("UAPPROVER", "approve", request_id)
        fake_whatcounts.wait_until(fake_whatcounts.posts, what="the send to reach WhatCounts")
        process.send_signal(signal.SIGTERM)  # as `docker stop` and Kubernetes do, while WhatCounts answers slowly
        exit_code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=30)[0].decode()
    assert exit_code == 0, output
    assert len(fake_whatcounts.posts()) == 1
    assert db.request(request_id).state == "sent", output
    assert db.events(request_id)[-1] == "sent"
    assert "finishing the events and sends in flight" in output
    assert APP_TOKEN not in output  # from start to a graceful stop
