"""Serving: Socket Mode, or HTTP under gunicorn.

HTTP routes: `POST /slack/events` (Slack), `GET /healthz` (the process is up), `GET /readyz`
(the database is reachable and its schema current) and `GET /metrics` (Prometheus, every worker).
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.response import BoltResponse
from sqlalchemy import Engine

from bot.ops import metrics
from bot.ops.config import Settings
from bot.slack import edge
from bot.slack.app import Runtime, build_runtime, describe
from bot.store import schema

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
StartResponse = Callable[..., Any]
EVENTS_PATH = "/slack/events"
TEXT = [("Content-Type", "text/plain; charset=utf-8")]


_PROBES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz")
READY_WITHIN = 0.8  # seconds: a load balancer's probe gets its answer even when the database hangs


def readiness(engine: Engine) -> tuple[bool, str]:
    """Ready when the database answers (within READY_WITHIN) and its schema is at the revision this code needs."""
    probe = _PROBES.submit(schema.schema_status, engine)
    try:
        status = probe.result(timeout=READY_WITHIN)
    except FutureTimeout:
        return False, f"database unreachable (no answer within {READY_WITHIN:g} s)"
    if not status.reachable:
        return False, f"database unreachable ({status.failure})"
    if not status.up_to_date:
        return False, f"database schema at {status.current or 'nothing'}, this code needs {status.head}"
    return True, "ok"


def wsgi_app(runtime: Runtime) -> WSGIApp:
    bolt = SlackRequestHandler(runtime.app, path=EVENTS_PATH)  # everything but our routes: 404s
    metrics.exposition()  # create the metrics now, before requests arrive on several threads

    verifier = edge.RawBodyVerifier(runtime.signing_secret)

    def slack_events(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Read, verify and parse the body (the edge), then Bolt; timed from arrival to acknowledgement.

        Counted by kind and outcome. Nothing of the body is logged: a refusal says only why.
        """
        started = time.perf_counter()
        request = edge.bolt_request(environ, verifier)
        if isinstance(request, edge.Refusal):
            kind, request_id = "refused", None
            response = BoltResponse(status=request.status, body=request.reason)
        else:
            kind, request_id = describe(request.body)
            # A fresh context per request: the request id that Bolt middleware sets never leaks to the next.
            response = contextvars.copy_context().run(runtime.app.dispatch, request)
        reply = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
        start_response(reply.status, reply.get_headers())
        seconds = time.perf_counter() - started
        try:
            metrics.observe_request(kind, response.status, seconds)
        except Exception:  # bookkeeping must never turn an acknowledgement into an error
            log.exception("counting a Slack request in the metrics failed")
        reason = f" ({request.reason})" if isinstance(request, edge.Refusal) else ""
        log.info("slack %s answered %d%s in %.1f ms", kind, response.status, reason, seconds * 1000,
                 extra={"request_id": request_id, "kind": kind, "status": response.status,
                        "ack_ms": round(seconds * 1000, 2)})
        return reply.get_body()

    def plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
        start_response(status, TEXT)
        return [text.encode() + b"\n"]

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == EVENTS_PATH and method == "POST" and environ.get("SERVER_PROTOCOL", "").startswith("HTTP"):
            return slack_events(environ, start_response)
        if method in ("GET", "HEAD"):
            if path == "/healthz":
                return plain(start_response, "200 OK", "ok")
            if path == "/readyz":
                ready, reason = readiness(runtime.core.engine)
                return plain(start_response, "200 OK" if ready else "503 Service Unavailable", reason)
            if path == "/metrics":
                start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE)])
                return [metrics.exposition()]
        return bolt(environ, start_response)

    return application


class _GunicornLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no types: its base is Any
    """Gunicorn's own messages go through our root handler: same format (LOG_FORMAT), same redaction."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.handlers[:] = []
        self.error_log.propagate = True


def _child_exit(_arbiter: Any, worker: Any) -> None:
    metrics.mark_worker_dead(worker.pid)


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types: its base is Any
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


def gunicorn_options(settings: Settings, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    # Gunicorn waits this long for in-flight work (a WhatCounts call) before it kills a worker.
    grace = int(settings.whatcounts_timeout * 4) + 15
    return {
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": threads,
        "graceful_timeout": grace, "timeout": 60, "accesslog": None, "errorlog": "-", "loglevel": "info",
        "proc_name": "sms-bot", "control_socket_disable": True, "logger_class": _GunicornLogger,
        "child_exit": _child_exit,
    }


def serve_http(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    metrics.prepare_multiprocess()  # before any worker starts or counts anything
    _Gunicorn(settings, gunicorn_options(settings, host, port, workers, threads)).run()


def serve_socket_mode(settings: Settings) -> None:
    """Socket Mode until SIGTERM or SIGINT, then a graceful drain like gunicorn's in HTTP mode.

    On the signal: disconnect (Slack takes no more events from us and redelivers unacknowledged
    ones elsewhere), let the events already taken finish their listeners, let sends in flight
    finish and be recorded, then return, so the process exits 0.
    """
    runtime = build_runtime(settings)
    runtime.start_background()
    handler = SocketModeHandler(runtime.app, settings.slack_app_token)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        handler.connect()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
        log.info("Socket Mode connected; waiting for events")
        while not stop.wait(1):
            pass
        log.info("stopping: no new events; finishing the events and sends in flight")
    finally:
        # disconnects, then waits for the events being dispatched
        handler.close()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
        runtime.app.listener_runner.listener_executor.shutdown(wait=True)  # listeners still running after ack
        runtime.shutdown()  # sends in flight finish and are recorded
        for sig, action in previous.items():
            signal.signal(sig, action)
    log.info("stopped")
