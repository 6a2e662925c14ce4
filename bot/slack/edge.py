"""The HTTP edge: a Slack request's body is read within a bound, verified on its raw bytes, then parsed by what it is.

Bolt, handed a raw body, first parses it and only then checks the signature, and it guesses what
the body is from its content: a form body that contains the word "payload" anywhere (a channel
called #payload-team, a person's text) is taken for an interaction and lost. Here the order is
read (413 over `MAX_BODY_BYTES`), verify (401), parse by content type and fields (400), and Bolt
gets a request whose body is already parsed. Nothing here logs a body or any part of it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.context import BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context
from slack_sdk.signature import SignatureVerifier

# Slack sends back only what this bot drew: a modal of at most 100 blocks of at most 3,000
# characters, or a card. Even if every character came escaped as `\uXXXX` and then
# form-encoded (8 bytes each), such a modal is 2.4 MB; the bot's real bodies are a few KB.
# 8 MiB stays well above that and still stops a 40 MB POST before it is read.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64  # Slack's payloads nest about ten deep; json's recursion limit is ~1,000
MAX_FORM_FIELDS = 1000
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Refusal:
    """Why a request is answered before Bolt sees it: an HTTP status and a short reason (never body content)."""

    status: int
    reason: str


class RawBodyVerifier(SignatureVerifier):
    """slack_sdk's verifier, signing the raw bytes: the SDK decodes bytes as UTF-8 first and so
    raises on a body that is not UTF-8, which must be refused (401 or 400), not crash."""

    def generate_signature(self, *, timestamp: str, body: str | bytes) -> str | None:
        if not isinstance(body, bytes):
            return super().generate_signature(timestamp=timestamp, body=body)
        base = b"v0:" + timestamp.encode() + b":" + body
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()


def read_body(environ: Mapping[str, Any]) -> bytes | Refusal:
    """The raw body, read only if it is within `MAX_BODY_BYTES` (chunked bodies are read to one byte more)."""
    stream = environ.get("wsgi.input")
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            return Refusal(400, "invalid Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            return Refusal(413, "body too large")
        body = stream.read(int(declared)) if stream is not None else b""
    elif stream is not None and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = stream.read(MAX_BODY_BYTES + 1)
    else:
        body = b""
    if len(body) > MAX_BODY_BYTES:
        return Refusal(413, "body too large")
    return bytes(body)


def verify(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> Refusal | None:
    """None when the body is signed with our secret within Slack's five-minute window."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    # The SDK calls int() on the timestamp and compare_digest() on the signature: both raise on odd input.
    well_formed = (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
                   and signature.isascii() and len(signature) <= 200)
    if not (well_formed and verifier.is_valid(body, timestamp, signature)):
        return Refusal(401, "not signed by Slack, or stale")
    return None


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return False


# What Bolt's matchers and context reach into without checking, as Slack always sends it: objects
# (`view`, `event`), objects, ids or null (`team` is null for an org-wide app), ids that are strings,
# and a block action's `actions`: a list of objects, each with its `action_id`.
_OBJECTS = ("view", "event")
_OBJECTS_OR_IDS = ("user", "team", "channel", "container", "message", "enterprise")
_IDS = ("type", "action_id", "block_id", "callback_id")


def _slack_shaped(payload: dict[str, Any]) -> bool:
    view = payload.get("view", {})
    return (all(isinstance(payload[key], dict) for key in _OBJECTS if key in payload)
            and all(isinstance(payload.get(key), dict | str | None) for key in _OBJECTS_OR_IDS)
            and all(isinstance(payload[key], str) for key in _IDS if key in payload)
            and all(isinstance(view[key], str) for key in _IDS if key in view)
            and _actions_shaped(payload))


def _actions_shaped(payload: dict[str, Any]) -> bool:
    if "actions" not in payload:
        return True
    actions = payload["actions"]
    if not (isinstance(actions, list) and actions and all(isinstance(a, dict) for a in actions)):
        return False
    return payload.get("type") != "block_actions" or all(isinstance(a.get("action_id"), str) for a in actions)


def _json_object(text: str) -> dict[str, Any] | Refusal:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Refusal(400, "body is not valid JSON")
    if not isinstance(value, dict):
        return Refusal(400, "body is not a JSON object")
    if _too_deep(value):
        return Refusal(400, "body nests too deep")
    if not _slack_shaped(value):
        return Refusal(400, "body is not shaped like a Slack request")
    return value


def parse(body: bytes, content_type: str | None) -> dict[str, Any] | Refusal:
    """The body by what it is: JSON (events), a form with `payload` (interactions), any other form (commands)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Refusal(400, "body is not UTF-8")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == JSON:
        return _json_object(text)
    if kind != FORM:
        return Refusal(400, "unsupported Content-Type")
    try:
        fields = dict(parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS))
    except (ValueError, UnicodeDecodeError):
        return Refusal(400, "body is not a valid form")
    if "payload" in fields:
        return _json_object(fields["payload"])
    return fields


class ParsedBoltRequest(BoltRequest):
    """A BoltRequest built from a body we parsed, so that Bolt never guesses (and never re-parses) it.

    `raw_body` is kept for Bolt's own signature check, which runs again as a second line of defence.
    """

    def __init__(self, *, raw_body: str, body: dict[str, Any], query: str | dict[str, Sequence[str]],
                 headers: dict[str, Any], context: BoltContext | None = None) -> None:
        super().__init__(body="", query=query, headers=headers)  # "" parses to {}: nothing to guess
        self.raw_body = raw_body
        self.body = body
        self.context = build_context(context if context is not None else BoltContext({}), body)

    def to_copyable(self) -> BoltRequest:
        return ParsedBoltRequest(raw_body=self.raw_body, body=self.body, query=dict(self.query),
                                 headers=dict(self.headers), context=self.context.to_copyable())


def bolt_request(environ: Mapping[str, Any], verifier: SignatureVerifier) -> ParsedBoltRequest | Refusal:
    """A verified, parsed request for Bolt, or the refusal to answer with."""
    body = read_body(environ)
    if isinstance(body, Refusal):
        return body
    headers = {name: str(value) for name, value in WsgiHttpRequest(dict(environ)).get_headers().items()}
    if refusal := verify(verifier, body, headers):
        return refusal
    parsed = parse(body, headers.get("content-type"))
    if isinstance(parsed, Refusal):
        return parsed
    try:
        return ParsedBoltRequest(raw_body=body.decode("utf-8"), body=parsed,
                                 query=environ.get("QUERY_STRING", ""), headers=headers)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):  # Bolt reading ids from odd shapes
        return Refusal(400, "body is not shaped like a Slack request")

