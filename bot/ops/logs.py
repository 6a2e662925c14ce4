"""Logging set-up: one line per event (JSON with LOG_FORMAT=json), tagged with the send request id.

Every configured secret is redacted from every formatted line as a last line of defence, and every
record is exactly one line: control characters and line separators in any logged value (a message,
an argument, a traceback) are escaped, so no value can forge a line of its own. No request content
is logged: no Slack request body, no WhatCounts URL (httpx logs each one at INFO; it is held at WARNING).

The request id comes from `extra={"request_id": ...}`, from the `current_request` context
variable (carried into worker threads by `bot.ops.work.RequestScopedWork`), or from a message
that follows the convention `"request %s: ..."`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from bot.ops.config import Settings
from bot.whatcounts.client import basic_auth

REDACTED = "[redacted]"

current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request", default=None)

# Fields that callers may pass with `extra=` and that JSON lines carry as their own keys.
EXTRA_FIELDS = ("kind", "status", "ack_ms", "outcome", "http_status", "seconds")


# Whatever a line splitter (str.splitlines, a terminal, a log shipper) may take for a line break or a
# control sequence: C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Library loggers that must never pass INFO: the SDKs log request headers (tokens) at DEBUG, httpx
# logs every request's full URL (a send's campaign and description) at INFO, and Bolt's request
# verification logs the whole body of every request it refuses at INFO.
QUIETED = {"slack_sdk": logging.INFO, "slack_bolt": logging.INFO, "urllib3": logging.INFO,
           "httpx": logging.WARNING, "httpcore": logging.WARNING, "slack_bolt.RequestVerification": logging.WARNING}


def one_line(text: str) -> str:
    """`text` with every line break and control character escaped (`\\n`, `\\u2028`): one physical line."""
    return _BREAKS.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id` (or None) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = current_request.get()
            if request_id is None and isinstance(record.msg, str) and record.msg.startswith("request %s"):
                args = record.args
                if isinstance(args, tuple) and args:
                    request_id = str(args[0])
            record.request_id = request_id
        return True


class NoBoltBodies(logging.Filter):
    """Bolt's warnings about a request no listener takes quote the request's body; keep what it says, not the body."""

    ECHOES = ("Unhandled request (", "A global middleware (")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("slack_bolt") and isinstance(record.msg, str) and record.msg.startswith(self.ECHOES):
            record.msg, record.args = "Bolt found no listener for a request (its body is not logged)", None
        return True


class RedactSecrets(logging.Filter):
    """Replaces secrets in a record's message (kept for handlers that format by themselves)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: RedactSecrets) -> None:
        super().__init__("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if request_id := getattr(record, "request_id", None):
            line += f" [request {request_id}]"
        return one_line(self.redactor.redact(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback goes into `exc`, escaped, on the same line."""

    def __init__(self, redactor: RedactSecrets) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            entry["request_id"] = request_id
        for name in EXTRA_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes C0 controls itself; one_line escapes the rest (inside strings, as valid JSON escapes).
        return one_line(self.redactor.redact(json.dumps(entry, ensure_ascii=False, default=str)))


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
              settings.whatcounts_password]
    if settings.whatcounts_password:
        header = basic_auth(settings.whatcounts_realm, settings.whatcounts_password)
        values += [header, header.removeprefix("Basic ")]
    return [v for v in values if v]


def make_handler(settings: Settings, stream: IO[str]) -> logging.Handler:
    """One line per record in LOG_FORMAT, tagged with the request id, every secret of `settings` redacted."""
    redactor = RedactSecrets(secrets_of(settings))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(redactor) if settings.log_format == "json" else TextFormatter(redactor))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(NoBoltBodies())
    return handler


def configure(settings: Settings, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Every record, one line each, to `stream` (standard error by default) through the root logger."""
    handler = make_handler(settings, stream or sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, floor in QUIETED.items():
        logging.getLogger(name).setLevel(max(level, floor))
