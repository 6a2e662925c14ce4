"""The HTTP edge, driven in-process through the bot's real WSGI app: a body is read within a bound,
verified on its raw bytes, parsed by what it is, and never logged."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.ops import logs
from bot.ops.config import load_settings
from bot.slack.app import build_runtime
from bot.slack.edge import MAX_BODY_BYTES
from bot.slack.server import WSGIApp, wsgi_app
from bot.store.models import ALL_SENDER_CODES
from tests.fakes import FakeSlack, FakeWhatCounts
from tests.harness import CHANNEL, CODE, SIGNING_SECRET, Database, SlackDriver

REQUESTER, APPROVER, ADMIN, STRANGER = "UREQUESTER", "UAPPROVER", "UADMIN", "USTRANGER"
FORGED = "2026-11-25 04:00:00,000 INFO 1 bot.requests.lifecycle: request r-forged approved by UADMIN"
MARKER = "BODY-CONTENT-7c2f"


BOTH_FORMATS = pytest.mark.parametrize("log_format", ["text", "json"])
# For tests of requests refused at the edge (or of the log alone), before any listener or the
# database is reached: the database plays no part, so they run on one (SQLite), not both.
EDGE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def log_format() -> str:
    """LOG_FORMAT; tests about the log's lines take both (BOTH_FORMATS)."""
    return "text"


@pytest.fixture
def logged(env: dict[str, str], log_format: str) -> Iterator[Callable[[], str]]:
    """Logging configured as `sms-bot serve` does it (LOG_FORMAT text and json); returns what it wrote so far."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in logs.QUIETED}
    written = io.StringIO()
    logs.configure(load_settings({**env, "LOG_FORMAT": log_format}), stream=written)
    yield written.getvalue
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def app(env: dict[str, str], logged: Callable[[], str]) -> Iterator[WSGIApp]:
    """The bot in this process: its real WSGI app."""
    runtime = build_runtime(load_settings(env))
    runtime.start_background()
    yield wsgi_app(runtime)
    runtime.shutdown()


@pytest.fixture
def edge(app: WSGIApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    """Slack's requests into the in-process app, under httpx's WSGI transport."""
    driver = SlackDriver("http://bot", fake_slack)
    driver.http = httpx.Client(transport=httpx.WSGITransport(app=app), timeout=10)
    yield driver
    driver.close()


def command_body(user_id: str, text: str = "", **fields: str) -> str:
    return urlencode({
        "token": "legacy-verification-token", "team_id": "T1", "team_domain": "acme", "channel_id": CHANNEL,
        "channel_name": "marketing", "user_id": user_id, "user_name": user_id.lower(), "command": "/sms-send",
        "text": text, "api_app_id": "A1", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.test/commands/1", "trigger_id": "trigger-edge", **fields,
    })


def post_bytes(slack: SlackDriver, body: bytes, content_type: str = "application/x-www-form-urlencoded", *,
               sign: bool = True, timestamp: int | None = None) -> httpx.Response:
    """A POST of raw bytes (not necessarily UTF-8), signed as Slack signs: HMAC-SHA256 of `v0:ts:body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": content_type}
    if sign:
        digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        headers |= {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}
    return slack.http.post(slack.bot_url + "/slack/events", content=body, headers=headers)


def assert_one_line_per_record(log: str, log_format: str) -> None:
    for line in log.splitlines():
        if log_format == "json":
            json.loads(line)
        else:
            assert line[:4].isdigit() and " " in line, f"a line that is not a record of its own: {line!r}"
    assert FORGED not in log.splitlines()


# --- 4: a body is what it is, whatever its words ----------------------------------------------

# Text that Bolt's guessing trips on ("payload" anywhere, a leading "{"), and any other text.
free_text = st.lists(st.sampled_from(["payload", "payload=", "{", "}", "&", "=", "%", "+", "\n", " "])
                     | st.text(st.characters(exclude_categories=["Cs"]), max_size=20), max_size=6).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channel_name=free_text, user_name=free_text, team_domain=free_text, text=free_text)
def test_a_slash_command_is_answered_as_a_command_whatever_its_free_fields_say(
        edge: SlackDriver, channel_name: str, user_name: str, team_domain: str, text: str) -> None:
    body = command_body(STRANGER, text, channel_name=channel_name, user_name=user_name, team_domain=team_domain)
    response = edge.post(body)
    assert response.status_code == 200, response.text
    assert response.text  # the command's own answer: no access, help, or "not something I know"


def test_a_channel_called_payload_still_opens_the_form(db: Database, edge: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    response = edge.post(command_body(REQUESTER, channel_name="payload-team", user_name="payload"))
    assert (response.status_code, response.text) == (200, "")
    opened = fake_slack.wait_for("views.open", lambda p: p.get("trigger_id") == "trigger-edge")
    assert opened["view"]["callback_id"] == "sms_send_request"


def test_an_admin_labels_a_sender_code_payload(db: Database, edge: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    response = edge.post(command_body(ADMIN, f"admin sender-code set {CODE} --label \"payload={{team}}\""))
    assert response.status_code == 200, response.text
    assert response.text.startswith(f"sender code {CODE} added"), response.text
    assert db.audit_rows()[-1].details["after"]["label"] == "payload={team}"


# --- 5: verify first, then parse; refuse clearly; never a 5xx; never log a body -------------

UNPARSABLE = {
    "broken JSON in payload": (urlencode({"payload": '{"type": "block_actions", ' + MARKER}).encode(), None),
    "a JSON list in payload": (urlencode({"payload": json.dumps([MARKER])}).encode(), None),
    "a JSON string in payload": (urlencode({"payload": json.dumps(MARKER)}).encode(), None),
    "not UTF-8": (b"token=x&command=/sms-send&text=" + MARKER.encode() + b"\xff\xfe", None),
    "percent-escapes that are not UTF-8": (f"command=/sms-send&text={MARKER}%ff".encode(), None),
    "nesting 100,000 deep": (urlencode({"payload": "[" * 100_000 + json.dumps(MARKER)}).encode(), None),
    "nesting 200 deep, valid": (urlencode({"payload": '{"a":' * 200 + json.dumps(MARKER) + "}" * 200}).encode(), None),
    "JSON that is not an object": (json.dumps([MARKER]).encode(), "application/json"),
    "a content type Slack never sends": (MARKER.encode(), "text/plain"),
}


@EDGE_ONLY
@BOTH_FORMATS
@pytest.mark.parametrize("case", list(UNPARSABLE))
def test_a_signed_body_that_cannot_be_read_is_refused_with_400(case: str, edge: SlackDriver,
                                                               logged: Callable[[], str], log_format: str) -> None:
    body, content_type = UNPARSABLE[case]
    if content_type is None:  # a form: one more field, whose value would forge a line if it were logged
        body += b"&" + urlencode({"note": "\n" + FORGED}).encode()
    response = post_bytes(edge, body, content_type or "application/x-www-form-urlencoded")
    assert response.status_code == 400, response.text
    log = logged()
    assert "slack refused answered 400" in log
    assert MARKER not in log and "FORGED" not in log and "r-forged" not in log
    assert_one_line_per_record(log, log_format)


@EDGE_ONLY
@BOTH_FORMATS
@pytest.mark.parametrize("case", list(UNPARSABLE))
def test_an_unsigned_or_stale_body_is_refused_with_401_before_it_is_read(
        case: str, edge: SlackDriver, logged: Callable[[], str], log_format: str) -> None:
    body, content_type = UNPARSABLE[case]
    body += ("\n" + FORGED + "\n").encode()
    unsigned = post_bytes(edge, body, content_type or "application/x-www-form-urlencoded", sign=False)
    stale = post_bytes(edge, body, content_type or "application/x-www-form-urlencoded",
                       timestamp=int(time.time()) - 6 * 60)
    assert (unsigned.status_code, stale.status_code) == (401, 401)
    log = logged()
    assert log.count("slack refused answered 401") == 2
    assert MARKER not in log and "r-forged" not in log
    assert_one_line_per_record(log, log_format)


@EDGE_ONLY
@pytest.mark.parametrize(("timestamp", "signature"), [
    ("soon", "v0=00"), ("²³", "v0=00"), ("9" * 400, "v0=00"), ("-1", "v0=00"), ("now", None), (None, "v0=00"),
    ("now", "v0=é"), ("now", "v0=" + "0" * 10_000),
])
def test_odd_signature_headers_are_refused_with_401(timestamp: str | None, signature: str | None,
                                                    app: WSGIApp) -> None:
    """Straight into the WSGI app: a real server hands on any header bytes (as latin-1), httpx would not send them."""
    headers = {}
    if timestamp is not None:
        headers["HTTP_X_SLACK_REQUEST_TIMESTAMP"] = str(int(time.time())) if timestamp == "now" else timestamp
    if signature is not None:
        headers["HTTP_X_SLACK_SIGNATURE"] = signature.encode().decode("latin-1")
    assert call_wsgi(app, command_body(REQUESTER).encode(), **headers) == "401 Unauthorized"


@EDGE_ONLY
def test_a_body_of_unknown_or_lying_length_is_refused_unread(app: WSGIApp) -> None:
    assert call_wsgi(app, b"command=/sms-send", CONTENT_LENGTH="12abc") == "400 Bad Request"
    assert call_wsgi(app, b"command=/sms-send", CONTENT_LENGTH="-5") == "400 Bad Request"
    chunked = b"payload=" + b"x" * MAX_BODY_BYTES  # no Content-Length: read only up to the bound, then 413
    assert call_wsgi(app, chunked, CONTENT_LENGTH="",
                     HTTP_TRANSFER_ENCODING="chunked") == "413 Request Entity Too Large"


def call_wsgi(app: WSGIApp, body: bytes, **environ: str) -> str:
    """POST /slack/events straight into the WSGI app, as a server would hand it on; the status line."""
    env: dict[str, object] = {"REQUEST_METHOD": "POST", "PATH_INFO": "/slack/events", "wsgi.input": io.BytesIO(body),
                              "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/x-www-form-urlencoded",
                              **environ}
    setup_testing_defaults(env)
    statuses: list[str] = []
    b"".join(app(env, lambda status, _headers: statuses.append(status)))
    return statuses[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: ("payload=" + t).encode()),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain", ""]),
       sign=st.booleans())
def test_no_body_gets_a_server_error(edge: SlackDriver, body: bytes, content_type: str, sign: bool) -> None:
    response = post_bytes(edge, body, content_type, sign=sign)
    assert response.status_code < 500
    assert response.status_code == 401 or sign


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(
    ["approve", "reject", "cancel", "sender_code", "message_name", "sms_send_request", "r-1"])
slack_keys = st.sampled_from(["type", "id", "value", "action_id", "block_id", "actions", "view", "user", "team",
                              "channel", "container", "message", "callback_id", "state", "values",
                              "private_metadata", "selected_option", "trigger_id", "response_url"])
any_json = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(slack_keys, inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.fixed_dictionaries(
    {"type": st.sampled_from(["block_actions", "view_submission", "block_suggestion", "view_closed", "shortcut"])},
    optional={key: any_json for key in ("actions", "view", "user", "team", "channel", "container", "action_id")}))
def test_a_signed_interaction_of_any_shape_gets_no_server_error(edge: SlackDriver, payload: dict[str, object]) -> None:
    response = edge.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status_code < 500, response.text


def test_a_request_no_listener_takes_is_answered_404_without_its_body_in_the_log(
        edge: SlackDriver, logged: Callable[[], str]) -> None:
    shortcut = {"type": "shortcut", "callback_id": MARKER, "trigger_id": "t", "user": {"id": STRANGER},
                "team": {"id": "T1"}}
    click = {"type": "block_actions", "user": {"id": STRANGER}, "team": {"id": "T1"},
             "actions": [{"action_id": MARKER, "block_id": MARKER, "type": "button", "value": MARKER}]}
    for payload in (shortcut, click):
        assert edge.post(urlencode({"payload": json.dumps(payload)})).status_code == 404
    log = logged()
    assert log.count("Bolt found no listener for a request (its body is not logged)") == 2, log
    assert MARKER not in log


@EDGE_ONLY
def test_a_body_over_the_bound_is_refused_with_413_unread(edge: SlackDriver, logged: Callable[[], str]) -> None:
    huge = b"payload=" + (MARKER.encode() + b"\n") * (MAX_BODY_BYTES // len(MARKER))
    assert len(huge) > MAX_BODY_BYTES
    assert post_bytes(edge, huge, sign=False).status_code == 413
    assert post_bytes(edge, huge).status_code == 413
    log = logged()
    assert log.count("slack refused answered 413") == 2 and MARKER not in log
    assert len(log) < 2000


@EDGE_ONLY
@BOTH_FORMATS
def test_a_value_with_line_breaks_is_logged_on_one_line(logged: Callable[[], str], log_format: str) -> None:
    logging.getLogger("bot.test").warning("refused %s", f"x\n{FORGED}\r\u2028\x85\x1b[2J", exc_info=ValueError("a\nb"))
    log = logged()
    assert len(log.splitlines()) == 1 and log.endswith("\n")
    assert_one_line_per_record(log, log_format)
    assert "\\n" + FORGED in (log if log_format == "text" else json.loads(log)["message"].replace("\n", "\\n"))


# --- 6: what a send carries never reaches the log ---------------------------------------------

@BOTH_FORMATS
def test_a_sends_campaign_and_description_never_reach_the_log(db: Database, edge: SlackDriver,
                                                              fake_whatcounts: FakeWhatCounts,
                                                              logged: Callable[[], str], log_format: str) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = edge.request(REQUESTER, campaign_name="Zebra Campaign 77", description="Quokka launch")
    edge.click(APPROVER, "approve", request_id)
    edge.wait_outcome("4711")
    edge.slack.wait_until(lambda: db.request(request_id).state == "sent", what="the send to be recorded")
    assert "Zebra" in fake_whatcounts.posts()[0].raw_path  # the URL carries it, so httpx would have logged it
    log = logged()
    assert request_id in log
    assert_one_line_per_record(log, log_format)
    for content in ("Zebra", "Quokka", "Zebra+Campaign", "Zebra%20Campaign"):
        assert content not in log
