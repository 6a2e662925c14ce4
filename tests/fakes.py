"""Slack's Web API and WhatCounts as real HTTP servers on loopback that record what they receive."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")


@dataclass
class Received:
    method: str
    raw_path: str  # exactly as sent, percent-encoding and query included
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.raw_path).path

    @property
    def query(self) -> str:
        return urlsplit(self.raw_path).query

    def params(self) -> dict[str, Any]:
        if self.headers.get("content-type", "").startswith("application/json"):
            params: dict[str, Any] = json.loads(self.body or b"{}")
            return params
        return dict(parse_qsl(self.body.decode()))


# How a fake answers: (status, headers, body), or with how to send it (see `_LoopbackServer.answer`); None: hang up.
Answer = tuple[int, dict[str, str], bytes] | tuple[int, dict[str, str], bytes, float, int] | None


class _BurstServer(ThreadingHTTPServer):
    """Takes a burst of connections at once, as Slack and WhatCounts do: the standard library's
    listen backlog of 5 refuses the sixth, and a refused Slack call loses what it carried.

    Counts the TCP connections it accepted, and keeps the open ones, to close them as a server does.
    """

    request_queue_size = 128

    def server_activate(self) -> None:
        self.accepted = 0
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().server_activate()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self.connections_lock:
            self.accepted += 1
            self.open_connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open connection (a kept-alive one waiting for its next request, say)."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # closed by the client meanwhile
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # not a client that hung up, or a connection closed here
            super().handle_error(request, client_address)


class _LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 whose handler is `self.answer(received)`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # An answer is two writes (head, body): with Nagle's algorithm the body would wait for the
            # client's delayed ACK of the head on a kept-alive connection, 40 ms a call; servers send at once.
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(length))
                with outer._lock:
                    outer.received.append(received)
                answer = outer.answer(received)
                if answer is None:  # drop the connection without a word
                    self.close_connection = True
                    return
                status, headers, body, *how = answer
                drip, cut = (float(how[0]), int(how[1])) if how else (0.0, 0)
                if drip or cut:
                    self._drip(status, headers, body, drip, cut)
                    return
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, status: int, headers: dict[str, str], body: bytes, interval: float, cut: int) -> None:
                """The whole answer, status line included, one byte every `interval` seconds; with `cut`, only
                its first `cut` bytes, and then the connection closes, as a server crashing mid-answer does."""
                lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                         *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}", "", ""]
                self.close_connection = True
                raw = "\r\n".join(lines).encode() + body
                try:
                    for byte in raw[:cut] if cut else raw:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(interval)
                except OSError:  # the client hung up
                    pass

            do_GET = do_POST = _handle

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = _BurstServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: `close()` waits for the serving loop to notice, once per test.
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def answer(self, received: Received) -> Answer:
        """(status, headers, body), or with two more items: seconds between the bytes of a dripped answer,
        and how many of its bytes to send before hanging up (0: all)."""
        raise NotImplementedError

    @property
    def connections(self) -> int:
        """TCP connections accepted so far: a client that keeps its connections alive opens few."""
        return self.server.accepted

    def close_idle_connections(self) -> None:
        """Close the open connections as a server does with idle ones, once their handlers have
        seen it: call it between calls, when every connection is waiting for its next request."""
        self.server.close_connections()
        self.wait_until(lambda: not self.server.open_connections, what="the connections to close")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()  # clients keep connections alive: let go of them and their threads

    def wait_until(self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := predicate():
                return result
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; received: "
                             f"{[r.raw_path for r in self.received]}")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


@dataclass
class SlackFailure:
    method: str
    error: str
    times: int | None = None  # None: every time
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    when: Callable[[dict[str, Any]], bool] | None = None  # only calls whose parameters match; None: all
    drop: bool = False  # close the connection without an answer instead


class FakeSlack(_LoopbackServer):
    """Slack's Web API (`/api/<method>`) and response URLs (`/response/...`)."""

    def __init__(self) -> None:
        self._ts = itertools.count(1)
        self.failures: list[SlackFailure] = []
        self.delays: dict[str, float] = {}  # seconds a method takes to answer (after being recorded)
        self.holds: dict[str, threading.Event] = {}  # methods answered only once released (see `hold`)
        self.socket_mode_url = ""  # where apps.connections.open sends Socket Mode clients
        super().__init__()

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def fail(self, method: str, error: str, times: int | None = None, status: int = 200,
             headers: dict[str, str] | None = None, when: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.failures.append(SlackFailure(method, error, times, status, headers or {}, when))

    def drop(self, method: str, times: int | None = None,
             when: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Read a `method` call, then close its connection without a word, as a Slack that crashed
        after taking it would: the call may have been carried out."""
        self.failures.append(SlackFailure(method, "", times, when=when, drop=True))

    def slow(self, method: str, seconds: float) -> None:
        """Answer `method` only after `seconds` (0: at once again), as a slow Slack does."""
        self.delays[method] = seconds

    def hold(self, method: str) -> None:
        """Answer `method` only once the test calls `release(method)` (or closes the fake): a Slack slower
        than anything the bot may wait for, without the test waiting out a fixed delay."""
        self.holds.setdefault(method, threading.Event())

    def release(self, method: str) -> None:
        """Let `method`'s held calls be answered, now and from now on."""
        if (held := self.holds.pop(method, None)) is not None:
            held.set()

    def close(self) -> None:
        for method in list(self.holds):
            self.release(method)
        super().close()

    def answer(self, received: Received) -> tuple[int, dict[str, str], bytes] | None:
        if not received.path.startswith("/api/"):
            return _json(200, {"ok": True})
        method = received.path.removeprefix("/api/")
        if (held := self.holds.get(method)) is not None:
            held.wait(60)
        if delay := self.delays.get(method):
            time.sleep(delay)
        params = received.params()
        for failure in self.failures:
            if failure.method == method and failure.times != 0 and (failure.when is None or failure.when(params)):
                if failure.times is not None:
                    failure.times -= 1
                if failure.drop:
                    return None
                return _json(failure.status, {"ok": False, "error": failure.error}, failure.headers)
        if method == "apps.connections.open" and self.socket_mode_url:
            return _json(200, {"ok": True, "url": self.socket_mode_url})
        if method == "auth.test":
            return _json(200, {"ok": True, "user_id": "UBOT", "team_id": "T1", "bot_id": "BBOT"})
        if method == "chat.postMessage":
            return _json(200, {"ok": True, "channel": params.get("channel"), "ts": f"1700000000.{next(self._ts):06d}"})
        if method == "views.open":
            return _json(200, {"ok": True, "view": {"id": "V1", **params.get("view", {})}})
        return _json(200, {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")})

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r.params() for r in list(self.received) if r.path == f"/api/{method}"]

    def responses(self) -> list[dict[str, Any]]:
        return [r.params() for r in list(self.received) if r.path.startswith("/response/")]

    def wait_for(self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda _p: True,
                 timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_until(lambda: next((p for p in self.calls(method) if predicate(p)), None),
                               timeout, f"a {method} call")


@dataclass
class WhatCountsReply:
    """How the fake answers. A `body` that is str or bytes is sent as it is, as `content_type`."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    held: bool = False  # answer only once the test calls `FakeWhatCounts.release()` (or closes the fake)
    drip: float = 0.0  # > 0: the whole answer, a byte at a time, this many seconds apart
    cut: int = 0  # > 0: only the answer's first `cut` bytes (status line included), then the connection closes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"

    def render(self) -> tuple[int, dict[str, str], bytes, float, int]:
        if isinstance(self.body, (str, bytes)):
            raw = self.body.encode() if isinstance(self.body, str) else self.body
            return self.status, {"Content-Type": self.content_type, **self.headers}, raw, self.drip, self.cut
        status, headers, raw = _json(self.status, self.body, self.headers)
        return status, headers, raw, self.drip, self.cut


SUCCESS_BODY = {
    "id": 4711, "realmId": 123, "smsMessageId": 55, "smsSenderId": 7, "smsSubscriberCount": 0,
    "campaignId": 99, "name": "Spring Sale", "status": "submitted",
    "createdDate": "Mar 16, 2018 09:10:50 AM", "updatedDate": "Mar 16, 2018 09:10:50 AM",
}


SPRING_SALE = {"id": 55, "name": "Spring Sale", "label": "spring",
               "messageText": "Spring sale: 20% off everything until Sunday. Reply STOP to opt out.",
               "totalParts": 1, "createdDate": "Mar 16, 2018 09:10:50 AM"}


PHONE_PATH = "/rest/sms/sendMessageToPhone/"
# WhatCounts documents no answer for sendMessageToPhone; this is the shape of its other answers.
PHONE_SUCCESS_BODY = {"id": 8123, "status": "sent"}


class FakeWhatCounts(_LoopbackServer):
    def __init__(self) -> None:
        self.reply = WhatCountsReply(200, SUCCESS_BODY)
        # How POST sendMessageToPhone/{text}/{phone}/{senderCode} is answered (test sends).
        self.phone_reply = WhatCountsReply(200, PHONE_SUCCESS_BODY)
        # When set, GET /rest/sms lists these, 500 a page (?skip=N); None: `reply` answers as before.
        self.messages: list[dict[str, Any]] | None = None
        # When set, GET /rest/sms is answered this way although `messages` is set: the listing fails.
        self.listing_fault: WhatCountsReply | None = None
        self._released = threading.Event()
        super().__init__()

    def release(self) -> None:
        """Let every held answer go, now and from now on."""
        self._released.set()

    def close(self) -> None:
        self.release()
        super().close()

    def answer(self, received: Received) -> Answer:
        listing = received.method == "GET" and received.path == "/rest/sms"
        reply = self.phone_reply if received.path.startswith(PHONE_PATH) else self.reply
        if listing and self.listing_fault is not None:
            reply = self.listing_fault
        elif listing and self.messages is not None:
            return self._list_messages(received)
        if reply.held:
            self._released.wait(60)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            return None
        return reply.render()

    def posts(self) -> list[Received]:
        return [r for r in list(self.received) if r.method == "POST"]

    def phone_posts(self) -> list[Received]:
        """The test sends received: POST sendMessageToPhone."""
        return [r for r in self.posts() if r.path.startswith(PHONE_PATH)]

    def _list_messages(self, received: Received) -> tuple[int, dict[str, str], bytes]:
        skip = dict(parse_qsl(received.query)).get("skip", "0")
        if not skip.isdigit():
            return _json(400, {"error": "Bad Request", "status": "Bad Request", "statusCode": 400})
        assert self.messages is not None
        return _json(200, self.messages[int(skip):int(skip) + 500])
