"""Serving: Socket Mode, or HTTP under gunicorn with `POST /slack/events` and `GET /healthz`."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import Settings
from bot.slack.app import Runtime, build_runtime

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_app(runtime: Runtime) -> WSGIApp:
    slack = SlackRequestHandler(runtime.app, path="/slack/events")

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return application


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """Gunicorn with our options; each worker builds its own runtime after the fork."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        runtime = build_runtime(self.settings)
        runtime.start_background()
        atexit.register(runtime.shutdown)
        return wsgi_app(runtime)


def serve_http(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    # Gunicorn waits this long for in-flight work (a WhatCounts call) before it kills a worker.
    grace = int(settings.whatcounts_timeout * 4) + 15
    _Gunicorn(settings, {
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": threads,
        "graceful_timeout": grace, "timeout": 60, "accesslog": None, "errorlog": "-", "loglevel": "info",
        "proc_name": "sms-bot",
    }).run()


def serve_socket_mode(settings: Settings) -> None:
    runtime = build_runtime(settings)
    runtime.start_background()
    try:
        SocketModeHandler(runtime.app, settings.slack_app_token).start()
    finally:
        runtime.shutdown()
