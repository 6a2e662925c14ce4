"""The WhatCounts REST client and its typed outcomes.

Only a request that certainly never reached WhatCounts (the connection was refused or
could not be made) is tried again. Anything after the request may have been written is
reported as `Unknown` and never retried: a send costs money and cannot be recalled.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Self
from urllib.parse import quote, urlencode

import httpx

log = logging.getLogger(__name__)

SEND_PATH = "/rest/sms/sendMessageToSenderCode"
PHONE_PATH = "/rest/sms/sendMessageToPhone"  # a one-off test send of a text to one phone
ACCEPT = "application/vnd.whatcounts-v1+json"


@dataclass(frozen=True)
class Sent:
    id: str
    status: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """WhatCounts answered with an error: nothing more is known than what it said."""

    http_status: int
    error: str


@dataclass(frozen=True)
class NotSent:
    """The request never reached WhatCounts."""

    reason: str


@dataclass(frozen=True)
class Unknown:
    """The request may have reached WhatCounts, but no answer from WhatCounts itself came back.

    `http_status`: what answered instead, if anything did (a gateway's page, a redirect).
    """

    reason: str
    http_status: int | None = None


Outcome = Sent | Rejected | NotSent | Unknown


def path_segment(text: str) -> str:
    """One path segment that decodes to `text` whether the server reads `+` as a space or not.

    Everything outside the unreserved characters is percent-encoded (space as %20, `+` as
    %2B); dots too, so "." and ".." can never be read as relative path steps.
    """
    return quote(text, safe="").replace(".", "%2E")


def send_url(base_url: str, message: str, sender_code: str, campaign: str,
             description: str | None = None, group_name: str | None = None) -> str:
    path = "/".join(path_segment(part) for part in (message, sender_code, campaign))
    query = {name: value for name, value in (("description", description), ("groupName", group_name)) if value}
    url = f"{base_url.rstrip('/')}{SEND_PATH}/{path}"
    return f"{url}?{urlencode(query, quote_via=quote, safe='')}" if query else url


def phone_send_url(base_url: str, text: str, phone: str, sender_code: str) -> str:
    """`sendMessageToPhone/{text}/{phone}/{senderCode}`, each part one segment (see `path_segment`)."""
    path = "/".join(path_segment(part) for part in (text, phone, sender_code))
    return f"{base_url.rstrip('/')}{PHONE_PATH}/{path}"


def basic_auth(realm: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{realm}:{password}".encode()).decode("ascii")


class _Unfinished(Exception):
    """The answer did not arrive complete within the call's limits."""


class _Overdue(_Unfinished):
    pass


class _TooLarge(_Unfinished):
    pass


class _Watchdog:
    """Ends one HTTP exchange at a wall-clock deadline, however the server trickles its answer.

    httpx's timeouts apply to each connect, read and write; a server that sends a byte a
    second never trips them. httpcore's `trace` extension hands over each new connection's
    stream, and when the timer fires its socket is shut down, which wakes the blocked read
    with an error. (The client keeps no idle connections, so every exchange connects anew
    and is traced.)
    """

    _CONNECTED = (".connect_tcp.complete", ".start_tls.complete", ".connect_unix_socket.complete")

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        stream = info.get("return_value") if event.endswith(self._CONNECTED) else None
        if stream is None:
            return
        sock = stream.get_extra_info("socket")
        with self._lock:
            self._socket = sock
            fired = self.fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._socket
        _shut(sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    # the plain socket's shutdown, also under TLS: it wakes a blocked read on every platform
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# Upper bounds on what is read of an answer: a send's answer is a small JSON object.
SEND_ANSWER_LIMIT = 64 * 1024
LISTING_ANSWER_LIMIT = 16 * 1024 * 1024


class WhatCountsClient:
    """One per process; thread-safe (httpx.Client is).

    Every call is bounded by `timeout` seconds of wall clock in all, from the first connect
    to the last byte of the answer (see `_Watchdog`).
    """

    CONNECT_ATTEMPTS = 3

    def __init__(self, base_url: str, realm: str, password: str, timeout: float = 30.0, *,
                 transport: httpx.BaseTransport | None = None, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep,
                 observer: Callable[[Outcome, float], None] | None = None) -> None:
        """`observer(outcome, seconds)` is told of every send's outcome and duration; it must not raise."""
        self.base_url = base_url.rstrip("/")
        self._observer = observer
        self.timeout = timeout
        self.connect_timeout = min(timeout, 10.0)
        self._backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=self.connect_timeout),
            headers={
                "Authorization": basic_auth(realm, password),
                "Content-Type": "application/json",
                "Accept": ACCEPT,
            },
            transport=transport,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),  # a fresh, traced connection per call
        )

    def max_duration(self) -> float:
        """An upper bound on sending one request: checking its message, then the POST, each
        bounded by `timeout` (see `SendRequest.sending_deadline`)."""
        return 2 * self.timeout

    def _exchange(self, method: str, url: str, seconds: float, limit: int, params: dict[str, Any] | None = None,
                  written: Callable[[], None] | None = None) -> tuple[httpx.Response, bytes]:
        """One request and its whole answer (at most `limit` bytes) within `seconds`, or an exception.
        `written` is called once the whole request is written, as its answer is awaited."""
        deadline = time.monotonic() + seconds
        timeout = httpx.Timeout(seconds, connect=min(self.connect_timeout, seconds))
        with _Watchdog(seconds) as watchdog:
            def trace(event: str, info: dict[str, Any]) -> None:
                watchdog.trace(event, info)
                if written is not None and event.endswith(".send_request_body.complete"):
                    try:
                        written()
                    except Exception:  # the request is out: its answer is what counts now
                        log.exception("the call made once a request to WhatCounts was written failed")
            try:
                with self._client.stream(method, url, params=params, timeout=timeout,
                                         extensions={"trace": trace}) as response:
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise _TooLarge
                        if time.monotonic() > deadline:
                            raise _Overdue
                    if watchdog.fired:
                        raise _Overdue
                    return response, bytes(body)
            except (httpx.TransportError, OSError):
                if watchdog.fired and not _never_connected(sys.exc_info()[1]):
                    raise _Overdue from None
                raise

    def send(self, message: str, sender_code: str, campaign: str,
             description: str | None = None, group_name: str | None = None, *,
             budget: float | None = None, written: Callable[[], None] | None = None) -> Outcome:
        """POST the send once, within `timeout` seconds (or `budget`, if less) of wall clock in all;
        `written()` once the POST is out (never if it could not be written)."""
        url = send_url(self.base_url, message, sender_code, campaign, description, group_name)
        return self._post(url, budget, observe=True, written=written)

    def send_to_phone(self, text: str, phone: str, sender_code: str, *, budget: float | None = None) -> Outcome:
        """POST `text` to one phone through `sender_code`, once, bounded as `send` is.

        WhatCounts documents no body for its answer: any JSON object with a 200 is taken as
        accepted (`Sent.id` is its `id`, or empty). Not counted in the campaign sends' metrics.
        """
        return self._post(phone_send_url(self.base_url, text, phone, sender_code), budget, observe=False,
                          needs_id=False)

    def _post(self, url: str, budget: float | None, *, observe: bool, needs_id: bool = True,
              written: Callable[[], None] | None = None) -> Outcome:
        """One POST that may cost money: tried again only while it certainly never reached WhatCounts."""
        seconds = self.timeout if budget is None else max(0.0, min(self.timeout, budget))
        started = time.monotonic()
        deadline = started + seconds
        outcome: Outcome | None = None
        attempts, last_error = 0, "there was no time left to connect to WhatCounts"
        while attempts < self.CONNECT_ATTEMPTS:
            if attempts:
                self._sleep(max(0.0, min(self._backoff * 2 ** (attempts - 1), deadline - time.monotonic())))
            left = deadline - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            try:
                response, body = self._exchange("POST", url, left, SEND_ANSWER_LIMIT, written=written)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last_error = f"could not connect to WhatCounts ({type(exc).__name__})"
                continue
            except _Overdue:
                outcome = Unknown(f"WhatCounts did not finish answering within {seconds:g} s")
            except _TooLarge:
                outcome = Unknown("WhatCounts' answer was far larger than any answer to a send")
            except httpx.TimeoutException as exc:
                outcome = Unknown(f"no answer from WhatCounts within {seconds:g} s ({type(exc).__name__})")
            except (httpx.HTTPError, OSError) as exc:
                outcome = Unknown(f"the connection to WhatCounts broke before it answered ({type(exc).__name__})")
            else:
                outcome = _read_response(response.status_code, response.reason_phrase, body, needs_id=needs_id)
            break
        if outcome is None:
            outcome = NotSent(f"{last_error} after {attempts} attempt{'s' if attempts != 1 else ''}")
        if observe and self._observer is not None:
            self._observer(outcome, time.monotonic() - started)
        return outcome

    def list_messages(self, budget: float | None = None) -> list[SmsMessage] | None:
        """The realm's SMS messages (`GET /rest/sms?skip=N`, 500 a page, until a short page).

        None when WhatCounts cannot be reached, is slow (a short timeout: this feeds a form),
        answers an error or anything but a list, or pages in a way that cannot be trusted.
        `budget`: seconds of wall clock for the whole listing; without it, each page gets its own.
        Only reads, so a caller may simply ask again later.
        """
        deadline = None if budget is None else time.monotonic() + budget
        messages: dict[str, SmsMessage] = {}
        for page in range(MESSAGES_MAX_PAGES):
            seconds = min(self.timeout, MESSAGES_TIMEOUT)
            if deadline is not None:
                seconds = min(seconds, deadline - time.monotonic())
                if seconds <= 0:
                    return None
            try:
                response, raw = self._exchange("GET", f"{self.base_url}{MESSAGES_PATH}", seconds,
                                               LISTING_ANSWER_LIMIT, params={"skip": page * MESSAGES_PAGE})
                body = json.loads(raw) if response.status_code == 200 else None
            except (httpx.HTTPError, OSError, ValueError, _Unfinished):
                return None
            if not isinstance(body, list):
                return None
            batch = [m for m in map(SmsMessage.from_json, body) if m is not None]
            if batch and batch[0].id in messages:  # the server ignored `skip`
                return None
            messages.update((m.id, m) for m in batch)
            if len(body) < MESSAGES_PAGE:
                return list(messages.values())
        return None

    def close(self) -> None:
        self._client.close()


def _never_connected(exc: BaseException | None) -> bool:
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _read_response(status: int, reason_phrase: str, body: bytes, *, needs_id: bool = True) -> Outcome:
    """Only WhatCounts' own error JSON is a refusal. A gateway's page, a redirect or any other
    body may stand in front of a send that went out, so it is `Unknown`. `needs_id`: a success
    must carry a send id (a campaign's does; a test send's answer is not documented)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status == 200:
        if isinstance(data, dict) and (data.get("id") is not None or not needs_id):
            wc_id = "" if data.get("id") is None else str(data["id"])
            return Sent(id=wc_id, status=str(data.get("status", "")), body=data)
        if needs_id:
            return Unknown("WhatCounts answered 200 but without a send id", http_status=200)
        return Unknown("WhatCounts answered 200 but not with JSON", http_status=200)
    if 400 <= status < 600 and is_whatcounts_error(data):
        return Rejected(status, data["error"])
    kind = "a redirect" if 300 <= status < 400 else "an answer that is not WhatCounts' own error"
    return Unknown(f"HTTP {status} {reason_phrase}: {kind}, as a proxy or gateway in front of WhatCounts "
                   "gives; the send may have reached WhatCounts", http_status=status)


def is_whatcounts_error(data: Any) -> bool:
    """WhatCounts' error body: `{"error": "<text>", "status": "<reason phrase>", "statusCode": <int>}`."""
    return (isinstance(data, dict) and isinstance(data.get("error"), str) and bool(data["error"].strip())
            and isinstance(data.get("statusCode"), int) and not isinstance(data["statusCode"], bool))


class RejectionCause(Enum):
    """What an error from WhatCounts means, as far as its status and words tell."""

    CREDENTIALS = "credentials"  # 401: the bot's realm or password is wrong; nothing was sent
    NO_ACCESS = "no access"  # 403: the account may not make this call
    NO_SUCH_MESSAGE = "no such message"
    NO_SUCH_SENDER = "no such sender"
    NAME_TAKEN = "name taken"  # e.g. the campaign name
    UNCLEAR = "unclear"  # part of the send may still have gone out


_CAUSES: tuple[tuple[re.Pattern[str], RejectionCause], ...] = (
    (re.compile(r"message.*(not found|does not exist|no such)", re.IGNORECASE | re.DOTALL),
     RejectionCause.NO_SUCH_MESSAGE),
    (re.compile(r"sender", re.IGNORECASE), RejectionCause.NO_SUCH_SENDER),
    (re.compile(r"already exists", re.IGNORECASE), RejectionCause.NAME_TAKEN),
)


def rejection_cause(http_status: int, error: str) -> RejectionCause:
    """Why WhatCounts refused a send, from its HTTP status and its error text."""
    if http_status == 401:
        return RejectionCause.CREDENTIALS
    if http_status == 403:
        return RejectionCause.NO_ACCESS
    return next((cause for pattern, cause in _CAUSES if pattern.search(error)), RejectionCause.UNCLEAR)


MESSAGES_PATH = "/rest/sms"
MESSAGES_PAGE = 500
MESSAGES_TIMEOUT = 5.0
MESSAGES_MAX_PAGES = 200  # 100,000 messages; more means the paging cannot be trusted


@dataclass(frozen=True)
class SmsMessage:
    """One SMS message as WhatCounts lists it. `text` is what recipients receive."""

    id: str
    name: str
    text: str
    label: str = ""
    total_parts: int | None = None  # WhatCounts' own segment count
    created: str | None = None  # as WhatCounts writes it, e.g. "Dec 19, 2017 6:10:19 PM" (no time zone)
    updated: str | None = None

    @classmethod
    def from_json(cls, item: Any) -> SmsMessage | None:
        """None for an entry without an id and a name (it could not be sent by name anyway)."""
        if not isinstance(item, dict) or item.get("id") is None or not isinstance(item.get("name"), str):
            return None
        parts = item.get("totalParts")
        return cls(id=str(item["id"]), name=item["name"], text=str(item.get("messageText") or ""),
                   label=str(item.get("label") or ""),
                   total_parts=parts if isinstance(parts, int) and not isinstance(parts, bool) else None,
                   created=_optional_text(item.get("createdDate")), updated=_optional_text(item.get("updatedDate")))


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)
