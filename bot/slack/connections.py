"""Slack Web API calls on kept-alive connections: one bounded pool per process.

slack_sdk's `WebClient` opens a connection (TCP, and TLS against the real Slack) for every
call, through urllib. `PooledWebClient` replaces only the one HTTP exchange of that path,
`BaseClient._perform_urllib_http_request_internal` (a urllib `Request` in, urllib's answer out:
a dict for a 2xx, `HTTPError` otherwise), so slack_sdk's retry loop around it, its retry
handlers and its rate-limit handling work as before. Pinned: slack-sdk's version bounds in
pyproject.toml, and tests/test_slack_connections.py checks that internal's shape.

The exchange is the standard library's `http.client`, which urllib itself uses: the same
request on the wire, the same answer, the same exceptions, only the connection is kept.
(httpx and urllib3 pool too, but measured on loopback each kept-alive call of theirs cost as
much CPU as urllib's new connection, or more; `http.client` on a kept connection costs a third.)

What a broken connection does:
- an idle connection that Slack closed (or that was idle KEEPALIVE_EXPIRY seconds) is dropped
  before reuse, and the call goes on another or a new one: the call is sent once;
- a call that could not connect, or waited in vain for a free connection, was never sent:
  `URLError`, as urllib raises (slack_sdk's `ConnectionErrorRetryHandler` would retry it, safely);
- a call whose connection broke, or whose answer did not come in time, once it was being sent
  may have reached Slack: `CallInterrupted` (no answer) or `TimeoutError` (too slow), neither of
  which slack_sdk's `ConnectionErrorRetryHandler` resends. The bot's callers see an `OSError` as
  with urllib, and handle it as before (the outbox and sweeper post a card again when needed).

A proxy (`proxy=`, or HTTPS_PROXY in the environment, which slack_sdk reads) sends the call
through slack_sdk's own urllib path, unpooled. TLS trusts what urllib trusts: the given `ssl`
context, else the system's certificates (SSL_CERT_FILE and SSL_CERT_DIR honoured).

A pool never crosses a fork: a forked child (a gunicorn worker) starts with an empty one.
"""

from __future__ import annotations

import os
import select
import ssl
import threading
import time
from http.client import HTTPConnection, HTTPException, HTTPResponse, HTTPSConnection
from io import BytesIO
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient

MAX_CONNECTIONS = 32  # calls in flight per process: above the threads that call Slack (listeners 10, work 16)
MAX_IDLE_CONNECTIONS = 16  # kept alive between calls, per address; beyond these the oldest is closed
KEEPALIVE_EXPIRY = 30.0  # seconds an idle connection is kept; Slack may close it sooner (then it is not reused)


class CallInterrupted(ConnectionError):
    """The connection broke while the call was sent or answered: Slack may have acted on it."""


class PooledWebClient(WebClient):
    """slack_sdk's `WebClient` whose calls go over this process's kept-alive connections to Slack."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        body = req.data  # slack_sdk sends bytes, or nothing
        if self.proxy or not url.lower().startswith(("http://", "https://")) or not isinstance(body, bytes | None):
            return super()._perform_urllib_http_request_internal(url, req)
        response, answer = _pool.exchange(url, req.get_method(), body, dict(req.header_items()), self.ssl,
                                          self.timeout)
        if not 200 <= response.status < 300:
            raise HTTPError(url, response.status, response.reason, response.headers, BytesIO(answer))
        if response.headers.get_content_type() == "application/gzip":  # a file (admin.analytics.getFile)
            return {"status": response.status, "headers": response.headers, "body": answer}
        charset = response.headers.get_content_charset() or "utf-8"
        return {"status": response.status, "headers": response.headers, "body": answer.decode(charset)}


Address = tuple[str, str, int, ssl.SSLContext | None]  # scheme, host, port, and the TLS context asked for


class _Pool:
    """Kept-alive connections by address: thread-safe, at most MAX_CONNECTIONS in use at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Address, list[tuple[HTTPConnection, float]]] = {}  # newest last, with when it fell idle
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._default_tls: ssl.SSLContext | None = None

    def exchange(self, url: str, method: str, body: bytes | None, headers: dict[str, str],
                 context: ssl.SSLContext | None, timeout: float) -> tuple[HTTPResponse, bytes]:
        """One request and its whole answer, on an idle connection to its address or a new one."""
        parts = urlsplit(url)
        https = parts.scheme.lower() == "https"
        address = (parts.scheme.lower(), parts.hostname or "", parts.port or (443 if https else 80), context)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if not self._slots.acquire(timeout=timeout):
            raise URLError(f"no free connection to Slack within {timeout} s")
        try:
            connection = self._take(address, timeout) or self._connect(address, timeout)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except TimeoutError as exc:
                connection.close()
                raise TimeoutError(f"Slack did not answer within {timeout} s") from exc
            except (OSError, HTTPException) as exc:
                connection.close()
                raise CallInterrupted(f"the connection to Slack broke during the call ({type(exc).__name__})") from exc
            except BaseException:
                connection.close()
                raise
            self._give_back(address, connection)
            return response, answer
        finally:
            self._slots.release()

    def _take(self, address: Address, timeout: float) -> HTTPConnection | None:
        """The newest idle connection still fit to use; those expired or closed by Slack are closed."""
        now, dropped, found = time.monotonic(), [], None
        with self._lock:
            idle = self._idle.get(address, [])
            while idle and found is None:
                connection, since = idle.pop()
                if now - since < KEEPALIVE_EXPIRY and not _closed_by_peer(connection):
                    found = connection
                else:
                    dropped.append(connection)
        for connection in dropped:
            connection.close()
        if found is not None and found.sock is not None:
            found.timeout = timeout
            found.sock.settimeout(timeout)
        return found

    def _connect(self, address: Address, timeout: float) -> HTTPConnection:
        scheme, host, port, context = address
        connection: HTTPConnection
        if scheme == "https":
            connection = HTTPSConnection(host, port, timeout=timeout, context=context or self._system_tls())
        else:
            connection = HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except OSError as exc:  # nothing was sent: as urllib says it
            connection.close()
            raise URLError(exc) from exc
        return connection

    def _give_back(self, address: Address, connection: HTTPConnection) -> None:
        if connection.sock is None:  # Slack said `Connection: close`, and http.client closed it
            return
        with self._lock:
            idle = self._idle.setdefault(address, [])
            idle.append((connection, time.monotonic()))
            surplus = idle.pop(0)[0] if len(idle) > MAX_IDLE_CONNECTIONS else None
        if surplus is not None:
            surplus.close()

    def _system_tls(self) -> ssl.SSLContext:
        """What urllib uses when given no context: the system's certificates, made once."""
        with self._lock:
            if self._default_tls is None:
                self._default_tls = ssl.create_default_context()
            return self._default_tls


def _closed_by_peer(connection: HTTPConnection) -> bool:
    """An idle connection with something to read has been closed by the server (or is out of step)."""
    if connection.sock is None:
        return True
    poller = select.poll()
    poller.register(connection.sock, select.POLLIN)
    return bool(poller.poll(0))


_pool = _Pool()


def _new_pool_after_fork() -> None:
    """The child must never write on its parent's connections: it drops them (leaving them open
    for the parent) and opens its own."""
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_new_pool_after_fork)
