"""The baseline: a bare Bolt app whose /sms-send listener only acknowledges, under the bot's gunicorn settings.

`python -m bench.bare_app --port P --workers 2 --threads 8` with SLACK_SIGNING_SECRET,
SLACK_BOT_TOKEN and SLACK_API_URL in the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.config import Settings
from bot.server import gunicorn_options


def build() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"], token_verification_enabled=False)

    @app.command("/sms-send")
    def sms_send(ack: Ack) -> None:
        ack()

    slack = SlackRequestHandler(app)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return application


class _Bare(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        return build()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    options = gunicorn_options(Settings(), "127.0.0.1", args.port, args.workers, args.threads)
    for ours in ("logger_class", "child_exit"):  # the bot's own logging and metrics hooks
        options.pop(ours)
    _Bare(options).run()


if __name__ == "__main__":
    main()
