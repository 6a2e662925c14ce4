"""Logging set-up, with every configured secret redacted from every record as a last line of defence."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from bot.config import Settings
from bot.whatcounts import basic_auth

REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
              settings.whatcounts_password]
    if settings.whatcounts_password:
        header = basic_auth(settings.whatcounts_realm, settings.whatcounts_password)
        values += [header, header.removeprefix("Basic ")]
    return [v for v in values if v]


def configure(settings: Settings, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets_of(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDKs log request headers (tokens included) at DEBUG; never let that through.
    for noisy in ("slack_sdk", "slack_bolt", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
