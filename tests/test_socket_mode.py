"""`sms-bot serve` with SLACK_APP_TOKEN: Socket Mode against a loopback WebSocket acting as Slack."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes import FakeSlack
from tests.harness import CHANNEL, CODE, Database

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
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert APP_TOKEN not in output
