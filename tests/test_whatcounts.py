"""The WhatCounts client: how names are encoded, and how each HTTP outcome is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, unquote_plus, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.whatcounts.client import (
    NotSent,
    Rejected,
    Sent,
    Unknown,
    WhatCountsClient,
    phone_send_url,
    send_url,
)
from tests.fakes import SPRING_SALE, SUCCESS_BODY, FakeWhatCounts, WhatCountsReply

BASE = "https://wc.example.test"
names = st.text(min_size=1, max_size=60)


def client_for(handler: Callable[[httpx.Request], httpx.Response],
               attempts: list[httpx.Request] | None = None) -> WhatCountsClient:
    def record(request: httpx.Request) -> httpx.Response:
        if attempts is not None:
            attempts.append(request)
        return handler(request)

    return WhatCountsClient(BASE, "acme", "pw", timeout=1, transport=httpx.MockTransport(record),
                            sleep=lambda _s: None)


@given(message=names, campaign=names, description=names, group=names)
def test_any_text_is_exactly_one_segment_or_value_and_decodes_back(message: str, campaign: str,
                                                                   description: str, group: str) -> None:
    raw = httpx.Request("POST", send_url(BASE, message, "12345", campaign, description, group)).url.raw_path
    path, _, query = raw.decode("ascii").partition("?")
    segments = path.split("/")[4:]
    assert path.startswith("/rest/sms/sendMessageToSenderCode/") and len(segments) == 3
    pairs = [pair.split("=") for pair in query.split("&")]
    assert [name for name, _value in pairs] == ["description", "groupName"]
    for decode in (unquote, unquote_plus):  # whether or not the server reads "+" as a space
        assert [decode(s) for s in segments] == [message, "12345", campaign]
        assert [decode(value) for _name, value in pairs] == [description, group]


def test_dot_segments_cannot_climb_the_path() -> None:
    url = send_url(BASE, "..", "12345", ".")
    assert urlsplit(url).path == "/rest/sms/sendMessageToSenderCode/%2E%2E/12345/%2E"
    assert httpx.Request("POST", url).url.raw_path == b"/rest/sms/sendMessageToSenderCode/%2E%2E/12345/%2E"


@settings(deadline=None)  # from_regex is slow to warm up on a loaded machine; nothing here is about time
@given(text=st.text(min_size=1, max_size=200), phone=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
       code=names)
def test_a_test_sends_text_phone_and_code_are_exactly_three_segments_that_decode_back(text: str, phone: str,
                                                                                    code: str) -> None:
    raw = httpx.Request("POST", phone_send_url(BASE, text, phone, code)).url.raw_path.decode("ascii")
    assert raw.startswith("/rest/sms/sendMessageToPhone/") and "?" not in raw and "#" not in raw
    segments = raw.removeprefix("/rest/sms/sendMessageToPhone/").split("/")
    assert len(segments) == 3 and all(s not in (".", "..") for s in segments)
    for decode in (unquote, unquote_plus):  # whether or not the server reads "+" as a space
        assert [decode(s) for s in segments] == [text, phone, code]
    assert segments[1].startswith("%2B")


def test_a_test_send_encodes_its_text_as_the_campaign_encodes_a_name() -> None:
    for text in ("a b+c", "..", "50%/off?#x"):
        assert phone_send_url(BASE, text, "+1", "c").split("/")[-3] == send_url(BASE, text, "c", "x").split("/")[-3]


def test_optional_parameters_are_left_out_when_empty() -> None:
    assert "?" not in send_url(BASE, "m", "12345", "c", None, "")
    assert send_url(BASE, "m", "12345", "c", None, "g").endswith("/m/12345/c?groupName=g")


def test_success_is_read_from_the_body() -> None:
    client = client_for(lambda r: httpx.Response(200, json={"id": 7, "status": "submitted"}))
    assert client.send("m", "12345", "c") == Sent("7", "submitted", {"id": 7, "status": "submitted"})


@pytest.mark.parametrize("status, body, expected", [
    (500, {"error": "No sender with code 12345", "status": "Internal Server Error", "statusCode": 500},
     Rejected(500, "No sender with code 12345")),
    (401, {"error": "Unauthorized", "status": "Unauthorized", "statusCode": 401}, Rejected(401, "Unauthorized")),
])
def test_whatcounts_own_errors_are_rejections_in_its_words(status: int, body: object, expected: Rejected) -> None:
    assert client_for(lambda _r: httpx.Response(status, json=body)).send("m", "12345", "c") == expected


@pytest.mark.parametrize("response", [
    httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>", headers={"content-type": "text/html"}),
    httpx.Response(503, text="<html>Service Temporarily Unavailable</html>"),
    httpx.Response(504, text=""),
    httpx.Response(302, headers={"location": "https://login.example.test/"}),
    httpx.Response(301, text=""),
    httpx.Response(500, text="Internal Server Error"),
    httpx.Response(500, json={"message": "upstream failed"}),
    httpx.Response(500, json={"error": "", "statusCode": 500}),
    httpx.Response(404, json=["error"]),
    httpx.Response(201, json={"id": 1}),
], ids=lambda r: f"{r.status_code}")
def test_anything_but_whatcounts_error_json_is_unknown_not_a_refusal(response: httpx.Response) -> None:
    outcome = client_for(lambda _r: response).send("m", "12345", "c")
    assert isinstance(outcome, Unknown) and outcome.http_status == response.status_code
    assert "may have reached WhatCounts" in outcome.reason


def test_a_long_id_comes_back_whole() -> None:
    long_id = "x" * 500
    outcome = client_for(lambda _r: httpx.Response(200, json={"id": long_id, "status": "s" * 300})).send("m", "1", "c")
    assert outcome == Sent(long_id, "s" * 300, {"id": long_id, "status": "s" * 300})


def test_a_200_without_an_id_is_not_taken_for_success() -> None:
    assert isinstance(client_for(lambda r: httpx.Response(200, text="ok")).send("m", "1", "c"), Unknown)


def test_connection_failures_are_retried_then_reported_as_not_sent() -> None:
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    outcome = client_for(refuse, attempts).send("m", "12345", "c")
    assert isinstance(outcome, NotSent) and len(attempts) == WhatCountsClient.CONNECT_ATTEMPTS


def test_a_refused_connection_then_success_sends_once() -> None:
    attempts: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        if not attempts[1:]:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"id": 1, "status": "submitted"})

    assert isinstance(client_for(flaky, attempts).send("m", "12345", "c"), Sent)
    assert len(attempts) == 2


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError,
                                   httpx.ReadError])
def test_anything_after_the_request_was_written_is_unknown_and_never_retried(
        error: type[httpx.TransportError]) -> None:
    attempts: list[httpx.Request] = []

    def fail(request: httpx.Request) -> httpx.Response:
        raise error("gone", request=request)

    assert isinstance(client_for(fail, attempts).send("m", "12345", "c"), Unknown)
    assert len(attempts) == 1


def test_unreachable_server_is_not_sent(unused_port: int) -> None:
    client = WhatCountsClient(f"http://127.0.0.1:{unused_port}", "acme", "pw", timeout=1, backoff=0.01)
    assert isinstance(client.send("m", "12345", "c"), NotSent)


@pytest.fixture
def unused_port() -> int:
    from tests.harness import free_port

    return free_port()


@pytest.fixture
def whatcounts() -> Iterator[FakeWhatCounts]:
    server = FakeWhatCounts()
    yield server
    server.close()


def test_an_answer_dripped_a_byte_at_a_time_ends_at_the_timeout_as_unknown(whatcounts: FakeWhatCounts) -> None:
    # every read well inside the timeout; the whole answer would take minutes
    whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, drip=0.1, headers={"X-Padding": "." * 2000})
    outcome = WhatCountsClient(whatcounts.url, "acme", "pw", timeout=1).send("m", "12345", "c")
    assert outcome == Unknown("WhatCounts did not finish answering within 1 s")
    assert len(whatcounts.posts()) == 1


def test_a_dripped_listing_is_given_up_within_its_budget(whatcounts: FakeWhatCounts) -> None:
    whatcounts.reply = WhatCountsReply(200, [SPRING_SALE], drip=0.1)
    assert WhatCountsClient(whatcounts.url, "acme", "pw", timeout=5).list_messages(budget=1) is None


def test_each_call_connects_anew_so_its_watchdog_sees_the_connection(whatcounts: FakeWhatCounts) -> None:
    client = WhatCountsClient(whatcounts.url, "acme", "pw", timeout=1)
    assert isinstance(client.send("m", "12345", "c"), Sent)
    whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, drip=0.1)
    assert isinstance(client.send("m", "12345", "c"), Unknown)


def test_the_caller_is_told_once_the_post_is_written_before_the_answer_and_not_for_a_post_never_made(
        whatcounts: FakeWhatCounts, unused_port: int) -> None:
    """What `written` is for: the card says "sending" while WhatCounts' answer is awaited, not before."""
    whatcounts.reply = WhatCountsReply(200, SUCCESS_BODY, held=True)
    told: list[str] = []
    client = WhatCountsClient(whatcounts.url, "acme", "pw", timeout=5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(client.send, "m", "12345", "c", written=lambda: told.append("written"))
        whatcounts.wait_until(lambda: told, what="the caller told, with the answer still held")
        assert not sending.done()
        whatcounts.release()
        assert isinstance(sending.result(timeout=10), Sent)
    assert told == ["written"]

    def broken() -> None:
        raise RuntimeError("no thread to show the card on")

    assert isinstance(client.send("m", "12345", "c", written=broken), Sent)  # the answer is what counts
    unreachable = WhatCountsClient(f"http://127.0.0.1:{unused_port}", "acme", "pw", timeout=1, backoff=0.01)
    assert isinstance(unreachable.send("m", "12345", "c", written=lambda: told.append("never")), NotSent)
    assert told == ["written"]
