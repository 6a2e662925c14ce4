"""Prometheus metrics, summed over every gunicorn worker by prometheus_client's multiprocess mode.

prometheus_client chooses where values live (process memory or files in
PROMETHEUS_MULTIPROC_DIR) when it is first imported, so this module imports it only when
metrics are first used: `prepare_multiprocess` must run in the gunicorn master before that.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.whatcounts.client import NotSent, Outcome, Rejected, Sent, Unknown

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Slack gives up on an acknowledgement after 3 s.
ACK_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
WHATCOUNTS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class _Metrics:
    requests: Counter
    ack_seconds: Histogram
    sends: Counter
    whatcounts_seconds: Histogram


_lock = threading.Lock()
_created: list[_Metrics] = []


def _metrics() -> _Metrics:
    """The metrics, created once per process (the first calls may come from several threads at once)."""
    if _created:
        return _created[0]
    with _lock:
        if not _created:
            _created.append(_create())
    return _created[0]


def _create() -> _Metrics:
    from prometheus_client import Counter, Histogram

    return _Metrics(
        requests=Counter("slack_requests", "Requests from Slack on /slack/events, by kind and HTTP status class.",
                         ["kind", "outcome"]),
        ack_seconds=Histogram("slack_ack_seconds", "Time from a Slack request's arrival to its acknowledgement.",
                              ["kind"], buckets=ACK_BUCKETS),
        sends=Counter("sms_sends", "WhatCounts sends, by outcome.", ["outcome"]),
        whatcounts_seconds=Histogram("whatcounts_send_seconds", "Duration of one WhatCounts send, retries included.",
                                     buckets=WHATCOUNTS_BUCKETS),
    )


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def observe_request(kind: str, status: int, seconds: float) -> None:
    m = _metrics()
    m.requests.labels(kind, status_class(status)).inc()
    m.ack_seconds.labels(kind).observe(seconds)


def outcome_name(outcome: Outcome) -> str:
    match outcome:
        case Sent():
            return "sent"
        case Rejected():
            return "rejected"
        case NotSent():
            return "not_sent"
        case Unknown():
            return "unknown"
    raise AssertionError(outcome)


def observe_send(outcome: Outcome, seconds: float) -> None:
    m = _metrics()
    m.sends.labels(outcome_name(outcome)).inc()
    m.whatcounts_seconds.observe(seconds)


def exposition() -> bytes:
    """The text format for `GET /metrics`: every live and dead worker's values in multiprocess mode."""
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    _metrics()  # so a scrape before the first request still lists every metric
    if not os.environ.get(MULTIPROC_ENV):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client: unannotated
    return generate_latest(registry)


def prepare_multiprocess() -> Path:
    """Use $PROMETHEUS_MULTIPROC_DIR, emptied of old values, or a private temp dir removed at exit.

    Call in the gunicorn master before any worker starts and before prometheus_client is imported.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # values of an earlier run would be added to ours
            stale.unlink()
        return path
    path = Path(tempfile.mkdtemp(prefix="sms-bot-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    master = os.getpid()

    def remove_in_master() -> None:  # workers are forks that inherit this hook: only the master removes the directory
        if os.getpid() == master:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove_in_master)
    return path


def mark_worker_dead(pid: int) -> None:
    """Gunicorn `child_exit` hook: a dead worker's live gauges stop counting (counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # prometheus_client: unannotated
