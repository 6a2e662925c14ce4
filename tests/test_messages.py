"""Listing WhatCounts SMS messages, and the cached catalogue behind the type-ahead and the send check."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

from bot.whatcounts.catalog import MessageCatalog, MessageSearch, Unverifiable
from bot.whatcounts.client import SmsMessage, WhatCountsClient, basic_auth
from tests.fakes import FakeWhatCounts, WhatCountsReply
from tests.harness import WHATCOUNTS_PASSWORD, WHATCOUNTS_REALM


def message_json(i: int, name: str | None = None) -> dict[str, Any]:
    return {"id": 1000 + i, "realmId": 10, "totalParts": 1, "name": name or f"Message {i:04d}",
            "messageText": f"Text {i}", "label": "sms", "createdDate": "Dec 19, 2017 6:10:19 PM",
            "updatedDate": "Dec 19, 2017 6:13:59 PM"}


def paged(messages: list[dict[str, Any]], seen: list[httpx.Request]) -> httpx.MockTransport:
    """WhatCounts' paging: 500 a page from ?skip=N."""
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        skip = int(request.url.params.get("skip", "0"))
        return httpx.Response(200, json=messages[skip:skip + 500])
    return httpx.MockTransport(handler)


def client(transport: httpx.BaseTransport, timeout: float = 30.0) -> WhatCountsClient:
    return WhatCountsClient("https://wc.example", "acme", "pw", timeout, transport=transport)


# --- WhatCountsClient.list_messages ------------------------------------------------------

def test_pages_until_a_short_page() -> None:
    seen: list[httpx.Request] = []
    listed = client(paged([message_json(i) for i in range(1234)], seen)).list_messages()
    assert listed is not None and len(listed) == 1234
    assert [(r.method, r.url.path, r.url.params["skip"]) for r in seen] == [
        ("GET", "/rest/sms", "0"), ("GET", "/rest/sms", "500"), ("GET", "/rest/sms", "1000")]
    assert seen[0].headers["authorization"] == basic_auth("acme", "pw")
    assert seen[0].headers["accept"] == "application/vnd.whatcounts-v1+json"
    assert listed[0] == SmsMessage(id="1000", name="Message 0000", text="Text 0", label="sms", total_parts=1,
                                   created="Dec 19, 2017 6:10:19 PM", updated="Dec 19, 2017 6:13:59 PM")
    assert listed[-1].name == "Message 1233"


def test_a_full_last_page_is_followed_by_an_empty_one() -> None:
    seen: list[httpx.Request] = []
    listed = client(paged([message_json(i) for i in range(500)], seen)).list_messages()
    assert listed is not None and len(listed) == 500
    assert [r.url.params["skip"] for r in seen] == ["0", "500"]


def test_no_messages() -> None:
    assert client(paged([], [])).list_messages() == []


def test_uses_a_short_timeout() -> None:
    seen: list[httpx.Request] = []
    client(paged([], seen), timeout=30).list_messages()
    assert all(value <= 5 for value in seen[0].extensions["timeout"].values())


def test_entries_without_id_or_name_are_skipped() -> None:
    body = [message_json(1), {"id": 7}, {"name": "No id"}, "junk", {**message_json(2), "totalParts": "x",
                                                                    "messageText": None, "label": None}]
    listed = client(httpx.MockTransport(lambda r: httpx.Response(200, json=body))).list_messages()
    assert listed is not None
    assert [(m.name, m.text, m.label, m.total_parts) for m in listed] == [
        ("Message 0001", "Text 1", "sms", 1), ("Message 0002", "", "", None)]


@pytest.mark.parametrize("response", [
    httpx.Response(401, json={"error": "Unauthorized", "status": "Unauthorized", "statusCode": 401}),
    httpx.Response(500, json={"error": "Internal Server Error", "statusCode": 500}),
    httpx.Response(200, text="<html>maintenance</html>"),
    httpx.Response(200, json={"error": "something"}),
    httpx.Response(302, headers={"Location": "https://login.example"}),
])
def test_an_error_answer_is_none(response: httpx.Response) -> None:
    assert client(httpx.MockTransport(lambda r: response)).list_messages() is None


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.RemoteProtocolError("dropped")])
def test_unreachable_is_none(error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error
    assert client(httpx.MockTransport(handler)).list_messages() is None


def test_a_server_that_ignores_skip_is_not_trusted() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[message_json(i) for i in range(500)])
    assert client(httpx.MockTransport(handler)).list_messages() is None
    assert len(seen) == 2


def test_against_the_loopback_fake() -> None:
    fake = FakeWhatCounts()
    try:
        fake.messages = [message_json(i) for i in range(600)] + [message_json(600, "Spring Sale")]
        wc = WhatCountsClient(fake.url, WHATCOUNTS_REALM, WHATCOUNTS_PASSWORD, timeout=2)
        catalog = MessageCatalog(wc)
        found = catalog.get("Spring Sale")
        assert isinstance(found, SmsMessage) and found.id == "1600"
        assert [m.name for m in catalog.search("spring").messages] == ["Spring Sale"]
        assert catalog.get("Autumn Sale") is None
        gets = [r for r in fake.received if r.method == "GET"]
        assert [r.raw_path for r in gets] == ["/rest/sms?skip=0", "/rest/sms?skip=500"]
        assert gets[0].headers["authorization"] == basic_auth(WHATCOUNTS_REALM, WHATCOUNTS_PASSWORD)
        assert fake.posts() == []
        wc.close()
    finally:
        fake.close()


def test_unreachable_loopback_is_unverifiable() -> None:
    fake = FakeWhatCounts()
    url = fake.url
    fake.close()  # nothing listens there any more: connection refused
    catalog = MessageCatalog(WhatCountsClient(url, "acme", "pw", timeout=2))
    assert isinstance(catalog.get("Spring Sale"), Unverifiable)
    assert catalog.search("spring") == MessageSearch([], listed=False)


# --- MessageCatalog ----------------------------------------------------------------------

class Source:
    """A WhatCounts stand-in whose listing can change or fail; counts how often it is asked."""

    def __init__(self, names: list[str], delay: float = 0.0) -> None:
        self.names: list[str] | None = names
        self.delay = delay
        self.calls = 0

    def list_messages(self) -> list[SmsMessage] | None:
        self.calls += 1
        time.sleep(self.delay)
        if self.names is None:
            return None
        return [SmsMessage(id=str(i), name=name, text=f"text of {name}") for i, name in enumerate(self.names)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_together(target: Callable[[], None], count: int) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)


NAMES = ["Spring Sale", "Summer sale", "Pre-spring teaser", "Welcome", "SPRING 2026", "Price Drop"]


def test_search_is_case_insensitive_prefix_first_and_limited() -> None:
    catalog = MessageCatalog(Source(NAMES))
    assert [m.name for m in catalog.search("spring").messages] == ["SPRING 2026", "Spring Sale", "Pre-spring teaser"]
    assert [m.name for m in catalog.search("SALE").messages] == ["Spring Sale", "Summer sale"]
    assert [m.name for m in catalog.search("").messages] == sorted(NAMES, key=str.casefold)
    assert len(catalog.search("", limit=2).messages) == 2
    assert catalog.search("nothing like it") == MessageSearch([], listed=True)


def test_listing_is_reused_within_the_ttl() -> None:
    source, clock = Source(NAMES), Clock()
    catalog = MessageCatalog(source, ttl_seconds=60, clock=clock)
    catalog.search("s")
    clock.now += 59
    catalog.search("s")
    assert isinstance(catalog.get("Welcome"), SmsMessage)
    assert source.calls == 1
    source.names = [*NAMES, "Autumn"]
    clock.now += 2
    assert [m.name for m in catalog.search("autumn").messages] == ["Autumn"]
    assert source.calls == 2


def test_get_tells_found_not_found_and_unverifiable_apart() -> None:
    source, clock = Source(NAMES), Clock()
    catalog = MessageCatalog(source, clock=clock)
    found = catalog.get("Spring Sale")
    assert isinstance(found, SmsMessage) and found.text == "text of Spring Sale"
    assert catalog.get("spring sale") is None  # names are case-sensitive in WhatCounts
    assert catalog.get("Autumn") is None
    source.names = None
    clock.now += 61
    assert isinstance(catalog.get("Autumn"), Unverifiable)
    # A message seen in the last listing is still reported while WhatCounts is away.
    assert isinstance(catalog.get("Spring Sale"), SmsMessage)
    assert MessageCatalog(Source([])).get("x") is None
    down = Source([])
    down.names = None
    assert isinstance(MessageCatalog(down).get("x"), Unverifiable)


def test_a_miss_is_checked_against_a_fresh_listing() -> None:
    source, clock = Source(NAMES), Clock()
    catalog = MessageCatalog(source, ttl_seconds=60, recheck_seconds=5, clock=clock)
    assert catalog.get("Autumn") is None
    source.names = [*NAMES, "Autumn"]  # created in WhatCounts a moment later
    clock.now += 3
    assert catalog.get("Autumn") is None  # the listing is only 3 s old: not asked again yet
    clock.now += 3
    assert isinstance(catalog.get("Autumn"), SmsMessage)
    assert source.calls == 2


def test_after_a_failure_whatcounts_is_not_asked_at_every_keystroke() -> None:
    source, clock = Source(NAMES), Clock()
    source.names = None
    catalog = MessageCatalog(source, retry_seconds=10, clock=clock)
    for _ in range(5):
        assert catalog.search("s") == MessageSearch([], listed=False)
        assert isinstance(catalog.get("Welcome"), Unverifiable)
    assert source.calls == 1
    source.names = NAMES
    clock.now += 10
    assert isinstance(catalog.get("Welcome"), SmsMessage)
    assert source.calls == 2


def test_a_listing_that_raises_counts_as_a_failure() -> None:
    class Broken(Source):
        def list_messages(self) -> list[SmsMessage] | None:
            self.calls += 1
            raise RuntimeError("a bug in the client")

    source, clock = Broken(NAMES), Clock()
    catalog = MessageCatalog(source, retry_seconds=10, clock=clock)
    assert catalog.search("s") == MessageSearch([], listed=False)
    clock.now += 10
    assert isinstance(catalog.get("Welcome"), Unverifiable)
    assert source.calls == 2  # the catalogue is not stuck waiting on the fetch that raised


def test_concurrent_callers_share_one_listing() -> None:
    source = Source(NAMES, delay=0.2)
    catalog = MessageCatalog(source)
    results: list[list[str]] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append([m.name for m in catalog.search("sale").messages])

    run_together(worker, 8)
    assert results == [["Spring Sale", "Summer sale"]] * 8
    assert source.calls == 1


# --- MessageCatalog against a slow or down WhatCounts on loopback -------------------------

T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    return call(), time.monotonic() - started


@pytest.fixture
def fake(fake_whatcounts: FakeWhatCounts) -> FakeWhatCounts:
    fake_whatcounts.messages = None  # GET /rest/sms is answered by `reply` unless a test lists messages
    return fake_whatcounts


def loopback_catalog(fake: FakeWhatCounts, **options: Any) -> MessageCatalog:
    return MessageCatalog(WhatCountsClient(fake.url, WHATCOUNTS_REALM, WHATCOUNTS_PASSWORD, timeout=5), **options)


# The `took < 2` bounds check Slack's 3 s deadline, generously; they do not measure speed.

def test_a_slow_whatcounts_does_not_hold_callers_past_their_wait(fake: FakeWhatCounts) -> None:
    fake.reply = WhatCountsReply(200, [message_json(1, "Spring Sale")], held=True)  # slow: until released
    catalog = loopback_catalog(fake)
    assert timed(catalog.warm)[1] < 2  # the form opens
    answers: list[tuple[MessageSearch, float]] = []

    def keystroke() -> None:
        answers.append(timed(lambda: catalog.search("spring", wait=0.5)))

    run_together(keystroke, 5)
    assert [answer for answer, _ in answers] == [MessageSearch([], listed=False)] * 5
    assert all(took < 2 for _, took in answers)
    answer, took = timed(lambda: catalog.get("Spring Sale", wait=0.5))
    assert isinstance(answer, Unverifiable) and took < 2
    # The fetch carried on: once WhatCounts answers, a caller that can wait gets its listing,
    # and later ones answer from the cache.
    fake.release()
    assert [m.name for m in catalog.search("spring", wait=5).messages] == ["Spring Sale"]
    assert [m.name for m in catalog.search("sale", wait=0).messages] == ["Spring Sale"]
    assert isinstance(catalog.get("Spring Sale", wait=0), SmsMessage)
    assert [r.raw_path for r in fake.received] == ["/rest/sms?skip=0"]  # one fetch served every caller


def test_a_down_whatcounts_is_asked_once_per_retry_period(fake: FakeWhatCounts) -> None:
    fake.reply = WhatCountsReply(500, {"error": "Internal Server Error", "status": "Internal Server Error",
                                       "statusCode": 500})
    clock = Clock()
    catalog = loopback_catalog(fake, retry_seconds=10, clock=clock)
    for _ in range(5):  # forms opening, keystrokes and submissions while WhatCounts is down
        catalog.warm()
        assert catalog.search("sale") == MessageSearch([], listed=False)
        assert isinstance(catalog.get("Spring Sale"), Unverifiable)
        clock.now += 1.5
    assert len(fake.received) == 1
    fake.messages = [message_json(1, "Spring Sale")]
    clock.now += 2.5  # 10 s after the failure
    assert [m.name for m in catalog.search("sale").messages] == ["Spring Sale"]
    assert len(fake.received) == 2


def test_get_answers_within_its_wait(fake: FakeWhatCounts) -> None:
    fake.messages = [message_json(1, "Spring Sale")]
    clock = Clock()
    catalog = loopback_catalog(fake, ttl_seconds=60, recheck_seconds=5, clock=clock)
    found, took = timed(lambda: catalog.get("Spring Sale", wait=1))
    assert isinstance(found, SmsMessage) and found.id == "1001" and took < 2
    missing, took = timed(lambda: catalog.get("Autumn", wait=1))
    assert missing is None and took < 2
    # WhatCounts turns slow, and "Autumn" is created there.
    fake.messages = None
    fake.reply = WhatCountsReply(200, [message_json(1, "Spring Sale"), message_json(2, "Autumn")], delay=0.6)
    clock.now += 6  # the listing is older than recheck_seconds: a miss must be checked again
    unknown, took = timed(lambda: catalog.get("Autumn", wait=0.1))
    assert isinstance(unknown, Unverifiable) and took < 2
    assert catalog.get("Spring Sale", wait=0.1) == found  # in the last listing, which is within the TTL
    clock.now += 60  # past the TTL too: the old listing still answers, as a listing
    assert catalog.search("spring", wait=0.1) == MessageSearch([found], listed=True)
    assert isinstance(catalog.get("Autumn", wait=3), SmsMessage)  # the slow fetch ends within this wait
    assert len(fake.received) == 2
