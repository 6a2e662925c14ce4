"""The WhatCounts REST client and its typed outcomes.

Only a request that certainly never reached WhatCounts (the connection was refused or
could not be made) is tried again. Anything after the request may have been written is
reported as `Unknown` and never retried: a send costs money and cannot be recalled.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote, urlencode

import httpx

SEND_PATH = "/rest/sms/sendMessageToSenderCode"
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
    """The request may have reached WhatCounts, but no answer came back."""

    reason: str


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


def basic_auth(realm: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{realm}:{password}".encode()).decode("ascii")


class WhatCountsClient:
    """One per process; thread-safe (httpx.Client is)."""

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
        )

    def max_duration(self) -> float:
        """An upper bound on one `send` call, retries included (see `SendRequest.sending_deadline`)."""
        attempts = self.CONNECT_ATTEMPTS
        backoff = sum(self._backoff * 2**i for i in range(attempts - 1))
        return attempts * self.connect_timeout + backoff + 2 * self.timeout  # + writing and reading

    def send(self, message: str, sender_code: str, campaign: str,
             description: str | None = None, group_name: str | None = None) -> Outcome:
        url = send_url(self.base_url, message, sender_code, campaign, description, group_name)
        started = time.monotonic()
        outcome: Outcome
        for attempt in range(self.CONNECT_ATTEMPTS):
            if attempt:
                self._sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(url)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last_error = f"could not connect to WhatCounts ({type(exc).__name__})"
                continue
            except httpx.TimeoutException as exc:
                outcome = Unknown(f"no answer from WhatCounts within {self.timeout:g} s ({type(exc).__name__})")
            except httpx.HTTPError as exc:
                outcome = Unknown(f"the connection to WhatCounts broke before it answered ({type(exc).__name__})")
            else:
                outcome = _read_response(response)
            break
        else:
            outcome = NotSent(f"{last_error} after {self.CONNECT_ATTEMPTS} attempts")
        if self._observer is not None:
            self._observer(outcome, time.monotonic() - started)
        return outcome

    def list_messages(self) -> list[SmsMessage] | None:
        """The realm's SMS messages (`GET /rest/sms?skip=N`, 500 a page, until a short page).

        None when WhatCounts cannot be reached, is slow (a short timeout: this feeds a form),
        answers an error or anything but a list, or pages in a way that cannot be trusted.
        Only reads, so a caller may simply ask again later.
        """
        timeout = httpx.Timeout(min(self.timeout, MESSAGES_TIMEOUT))
        messages: dict[str, SmsMessage] = {}
        for page in range(MESSAGES_MAX_PAGES):
            try:
                response = self._client.get(f"{self.base_url}{MESSAGES_PATH}",
                                            params={"skip": page * MESSAGES_PAGE}, timeout=timeout)
                body = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
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


def _read_response(response: httpx.Response) -> Outcome:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200:
        if isinstance(body, dict) and body.get("id") is not None:
            return Sent(id=str(body["id"]), status=str(body.get("status", "")), body=body)
        return Unknown("WhatCounts answered 200 but without a send id")
    if isinstance(body, dict) and body.get("error"):
        return Rejected(response.status_code, str(body["error"]))
    text = response.text.strip()[:300] or response.reason_phrase
    return Rejected(response.status_code, text)


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
