"""Slack Web API calls on kept-alive connections: one bounded httpx pool per process.

slack_sdk's `WebClient` opens a connection (TCP, and TLS against the real Slack) for every
call. `PooledWebClient` replaces only the one HTTP exchange of slack_sdk's urllib path,
`BaseClient._perform_urllib_http_request_internal` (a urllib `Request` in, urllib's answer out:
a dict for a 2xx, `HTTPError` otherwise), so slack_sdk's retry loop around it, its retry
handlers and its rate-limit handling work as before. Pinned: slack-sdk's version bounds in
pyproject.toml, and tests/test_slack_connections.py checks that internal's shape.

What a broken connection does:
- an idle connection Slack closed is discarded before reuse (httpcore sees it readable), and
  the call goes on a new one: the call is sent once;
- a call that could not connect, or waited in vain for a free connection, was never sent:
  `URLError`, as urllib raises (slack_sdk's `ConnectionErrorRetryHandler` would retry it, safely);
- a call whose connection broke, or whose answer did not come in time, once it was written may
  have reached Slack: `CallInterrupted` (no answer) or `TimeoutError` (too slow), neither of which
  slack_sdk's `ConnectionErrorRetryHandler` resends. The bot's callers see an `OSError` as with
  urllib, and handle it as before (the outbox and sweeper post a card again when it is needed).

A proxy (`proxy=`, or HTTPS_PROXY in the environment, which slack_sdk reads) sends the call
through slack_sdk's own urllib path, unpooled. TLS trusts what urllib trusts: the given `ssl`
context, else the system's certificates (SSL_CERT_FILE and SSL_CERT_DIR honoured).

A pool never crosses a fork: a forked child (a gunicorn worker) starts with none, and makes its own.
"""

from __future__ import annotations

import os
import ssl
import threading
from http.client import HTTPMessage
from io import BytesIO
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

import httpx
from slack_sdk import WebClient

MAX_CONNECTIONS = 32  # per process: above the threads that call Slack at once (listeners 10, work 16, sweeper)
MAX_IDLE_CONNECTIONS = 16  # kept alive between calls; beyond these, a finished call's connection is closed
KEEPALIVE_EXPIRY = 30.0  # seconds an idle connection is kept; Slack may close it sooner (then it is not reused)


class CallInterrupted(ConnectionError):
    """The connection broke after the call was sent, before its whole answer came: Slack may have acted on it."""


class PooledWebClient(WebClient):
    """slack_sdk's `WebClient` whose calls go over this process's kept-alive connections to Slack."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        body = req.data  # slack_sdk sends bytes, or nothing
        if self.proxy or not url.lower().startswith(("http://", "https://")) or not isinstance(body, bytes | None):
            return super()._perform_urllib_http_request_internal(url, req)
        headers = {key: str(value) for key, value in req.header_items()}
        try:
            response = _pool(self.ssl).request(req.get_method(), url, content=body, headers=headers,
                                               timeout=self.timeout)
        except httpx.ConnectTimeout as exc:
            raise URLError(TimeoutError("timed out connecting to Slack")) from exc
        except httpx.ConnectError as exc:
            raise URLError(str(exc)) from exc
        except httpx.PoolTimeout as exc:
            raise URLError(f"no free connection to Slack within {self.timeout} s") from exc
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"Slack did not answer within {self.timeout} s") from exc
        except httpx.RequestError as exc:
            raise CallInterrupted(f"the connection to Slack broke during the call ({type(exc).__name__})") from exc
        message = _urllib_headers(response.headers)
        if not 200 <= response.status_code < 300:
            raise HTTPError(url, response.status_code, response.reason_phrase, message, BytesIO(response.content))
        answer: str | bytes = response.content
        if message.get_content_type() != "application/gzip":  # a file (admin.analytics.getFile) stays bytes
            answer = response.content.decode(message.get_content_charset() or "utf-8")
        return {"status": response.status_code, "headers": message, "body": answer}


def _urllib_headers(headers: httpx.Headers) -> HTTPMessage:
    """The answer's headers as urllib gives them, so slack_sdk reads them as it always has."""
    message = HTTPMessage()
    for key, value in headers.multi_items():
        message[key] = value
    return message


_pools: dict[ssl.SSLContext | None, httpx.Client] = {}  # by the WebClient's `ssl`: one, unless a caller brings its own
_lock = threading.Lock()


def _pool(context: ssl.SSLContext | None) -> httpx.Client:
    with _lock:
        pool = _pools.get(context)
        if pool is None:
            pool = _pools[context] = httpx.Client(
                verify=context or ssl.create_default_context(), trust_env=False, follow_redirects=False,
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_IDLE_CONNECTIONS,
                                    keepalive_expiry=KEEPALIVE_EXPIRY))
        return pool


def _forget_pools_after_fork() -> None:
    """The child must never write on its parent's connections: it drops the parent's pools (leaving
    them open for the parent) and makes its own when it first calls Slack."""
    global _lock
    _pools.clear()
    _lock = threading.Lock()  # the parent may have held it at the fork


os.register_at_fork(after_in_child=_forget_pools_after_fork)
