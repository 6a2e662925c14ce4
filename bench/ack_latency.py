"""The bot against bare Bolt: acknowledgement latency and throughput, Approve -> POST, RSS, a big database.

    .venv/bin/python -m bench.ack_latency [--backends postgresql,sqlite] [--levels 1,10,50]
                                          [--write docs/benchmarks.md]

Both apps run under the same gunicorn settings (2 gthread workers x 8 threads) on loopback,
with the fakes of Slack and WhatCounts from tests/fakes.py in this process and the load
generator (bench/load.py) in its own. A script, never a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import create_engine, text

from bench.load import percentile
from bot import migrate
from bot.db import normalize_url
from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts, Received
from tests.harness import (CODE, SIGNING_SECRET, BotProcess, Database, SlackDriver, bot_env, free_port,
                           make_database)

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUESTER, APPROVER = "UBENCHREQ", "UBENCHAPP"
WORKERS, THREADS = 2, 8
# (concurrency, requests): bounded so a whole run stays well under ten minutes.
REQUESTS = {1: 400, 10: 2000, 50: 3000}


class TimedWhatCounts(FakeWhatCounts):
    """Notes when each POST arrives (before any delay), by path."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        super().__init__()

    def answer(self, received: Received) -> tuple[int, dict[str, str], bytes] | None:
        self.arrivals[received.raw_path] = time.perf_counter()
        return super().answer(received)

    def arrival(self, campaign: str, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, at in list(self.arrivals.items()):
                if campaign in path:
                    return at
            time.sleep(0.0005)
        raise AssertionError(f"no POST for {campaign}")


@dataclass
class Figures:
    """Everything one backend's run measured."""

    backend: str
    ack: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # app -> concurrency -> figures
    approve_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase -> (p50, p99)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)  # app -> peak RSS of each worker
    fill_seconds: float = 0.0


# --- the database ---------------------------------------------------------------------------

@contextmanager
def database(backend: str, workdir: Path) -> Iterator[Database]:
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        migrate.upgrade(url)
        db = make_database(url)
        yield db
        db.engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        migrate.upgrade(url)
        db = make_database(url)
        yield db
        db.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


EVENTS = ("requested", "approved", "sending", "sent", "rejected", "cancelled", "expired", "failed")


def audit_rows(n: int) -> Iterator[tuple[Any, ...]]:
    start = datetime(2025, 1, 1)
    rng = random.Random(1)
    for i in range(n):
        yield (start + timedelta(seconds=i * 30), EVENTS[i % len(EVENTS)], f"U{rng.randrange(10_000):08d}",
               f"{i // 4:012x}", CODE, '{"n": %d}' % i)


def grant_rows(n: int) -> Iterator[tuple[Any, ...]]:
    now = datetime(2025, 1, 1)
    for i in range(n):
        yield (f"U{i:08d}", ("requester", "approver")[i % 2], f"555{i:07d}", "bench", now)


AUDIT_COLUMNS = "at, event, actor_id, request_id, sender_code, details"
GRANT_COLUMNS = "user_id, role, sender_code, granted_by, granted_at"


def fill(db: Database, backend: str, audit: int, grants: int) -> float:
    """Bulk-insert audit rows and grants (COPY on PostgreSQL, executemany on SQLite); seconds taken."""
    started = time.perf_counter()
    if backend == "sqlite":
        path = db.engine.url.database
        assert path
        connection = sqlite3.connect(path, timeout=30)
        with connection:
            connection.executemany(f"INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                                   ((a.isoformat(" "), *rest) for a, *rest in audit_rows(audit)))
            connection.executemany(f"INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                                   ((*rest, at.isoformat(" ")) for *rest, at in grant_rows(grants)))
        connection.execute("ANALYZE")
        connection.close()
    else:
        raw = db.engine.raw_connection()
        try:
            conn = raw.driver_connection
            with conn.cursor() as cursor:
                with cursor.copy(f"COPY audit_events ({AUDIT_COLUMNS}) FROM STDIN") as copy:
                    for row in audit_rows(audit):
                        copy.write_row(row)
                with cursor.copy(f"COPY grants ({GRANT_COLUMNS}) FROM STDIN") as copy:
                    for row in grant_rows(grants):
                        copy.write_row(row)
            conn.commit()
            conn.autocommit = True
            conn.execute("ANALYZE audit_events")
            conn.execute("ANALYZE grants")
        finally:
            raw.close()
    return time.perf_counter() - started


# --- the processes --------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class BareBolt:
    """bench/bare_app.py in a child process."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = (workdir / f"bare-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_app", "--port", str(self.port), "--workers", str(WORKERS),
             "--threads", str(THREADS)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("bare Bolt did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def command_body(slack: FakeSlack) -> bytes:
    return urlencode({
        "token": "legacy", "team_id": "T1", "team_domain": "acme", "channel_id": "C0BENCH", "channel_name": "bench",
        "user_id": REQUESTER, "user_name": "bench", "command": "/sms-send", "text": "", "api_app_id": "A1",
        "is_enterprise_install": "false", "response_url": f"{slack.url}/response/1", "trigger_id": "trigger-1",
    }).encode()


def drive(port: int, body_file: Path, concurrency: int, requests: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", "--port", str(port), "--body-file", str(body_file),
         "--concurrency", str(concurrency), "--requests", str(requests), "--warmup", "100"],
        env={**os.environ, "SLACK_SIGNING_SECRET": SIGNING_SECRET}, cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def forget(slack: FakeSlack) -> None:
    """Drop what the fake Slack recorded (thousands of views.open), so waits in SlackDriver stay fast."""
    with slack._lock:
        slack.received.clear()


def approve_latency(driver: SlackDriver, whatcounts: TimedWhatCounts, n: int) -> tuple[float, float]:
    """Click Approve on n fresh requests, one at a time: click sent -> POST at WhatCounts, p50 and p99 in ms."""
    samples = []
    tag = uuid.uuid4().hex[:6]
    for i in range(n):
        campaign = f"bench-{tag}-{i}"
        request_id = driver.request(REQUESTER, campaign_name=campaign)
        started = time.perf_counter()
        driver.click(APPROVER, "approve", request_id)
        samples.append(whatcounts.arrival(campaign) - started)
        driver.wait_outcome(campaign, timeout=10)  # the send is finished before the next one
    forget(driver.slack)
    return percentile(samples, 50) * 1000, percentile(samples, 99) * 1000


# --- one backend ----------------------------------------------------------------------------

def run_backend(backend: str, levels: list[int], approvals: int, audit: int, grants: int) -> Figures:
    figures = Figures(backend)
    with tempfile.TemporaryDirectory(prefix="sms-bot-bench-") as tmp, database(backend, Path(tmp)) as db:
        workdir = Path(tmp)
        db.sender_code(CODE, label="Bench")
        db.grant(REQUESTER, "requester")
        db.grant(APPROVER, "approver")
        slack, whatcounts = FakeSlack(), TimedWhatCounts()
        whatcounts.messages = [SPRING_SALE]
        body_file = workdir / "command.txt"
        body_file.write_bytes(command_body(slack))
        env = bot_env(db.url, slack, whatcounts, SWEEP_INTERVAL_SECONDS="30", WHATCOUNTS_TIMEOUT="30")
        bot = BotProcess(env, workdir, workers=WORKERS).start()
        bare = BareBolt(env, workdir)
        driver = SlackDriver(bot.url, slack)
        try:
            for level in levels:
                for name, port in (("bare", bare.port), ("bot", bot.port)):
                    figures.ack.setdefault(name, {})[level] = drive(port, body_file, level, REQUESTS.get(level, 2000))
                    forget(slack)
                    print(f"  {backend} {name:>4} c={level:<3} {_fmt(figures.ack[name][level])}", flush=True)
            figures.approve_ms["empty"] = approve_latency(driver, whatcounts, approvals)
            print(f"  {backend} approve->POST {figures.approve_ms['empty']}", flush=True)

            figures.fill_seconds = fill(db, backend, audit, grants)
            print(f"  {backend} filled {audit} audit rows, {grants} grants in {figures.fill_seconds:.1f} s",
                  flush=True)
            for level in levels:
                figures.ack.setdefault("bot+big", {})[level] = drive(bot.port, body_file, level,
                                                                     REQUESTS.get(level, 2000))
                forget(slack)
                print(f"  {backend} bot+big c={level:<3} {_fmt(figures.ack['bot+big'][level])}", flush=True)
            figures.approve_ms["big"] = approve_latency(driver, whatcounts, approvals)
            print(f"  {backend} approve->POST (big) {figures.approve_ms['big']}", flush=True)

            assert bot.process is not None
            figures.rss_mb["bot"] = [peak_rss_mb(pid) for pid in children(bot.process.pid)]
            figures.rss_mb["bare"] = [peak_rss_mb(pid) for pid in children(bare.process.pid)]
        finally:
            driver.close()
            bare.stop()
            bot.stop()
            slack.close()
            whatcounts.close()
    return figures


def _fmt(f: dict[str, float]) -> str:
    return (f"p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms  {f['rps']:6.0f} req/s  "
            f"({int(f['requests'])} requests, {int(f['errors'])} errors)")


# --- the report -----------------------------------------------------------------------------

def machine() -> list[str]:
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except OSError:
            return "?"

    with create_engine(normalize_url(POSTGRES_URL)).connect() as connection:
        pg = str(connection.execute(text("SHOW server_version")).scalar())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return [f"- `nproc`: {sh('nproc')} ({cpu})", "- `free -h`:", "", "```", sh("free", "-h"), "```", "",
            f"- Python {platform.python_version()}, PostgreSQL {pg}, SQLite {sqlite3.sqlite_version}, "
            f"Linux {platform.release()}",
            f"- gunicorn: {WORKERS} gthread workers x {THREADS} threads for both apps; load generator, "
            "fakes and both apps on the same machine (loopback)"]


def report(results: list[Figures], levels: list[int], audit: int, grants: int) -> str:
    out = ["| backend | clients | bare p50 / p99 ms | bare req/s | bot p50 / p99 ms | bot req/s | "
           "bot/bare p50 | bot p50 / p99 ms, big DB | bot req/s, big DB |",
           "|---|---|---|---|---|---|---|---|---|"]
    for f in results:
        for level in levels:
            bare, bot, big = f.ack["bare"][level], f.ack["bot"][level], f.ack["bot+big"][level]
            out.append(f"| {f.backend} | {level} | {bare['p50_ms']:.1f} / {bare['p99_ms']:.1f} | {bare['rps']:.0f} | "
                       f"{bot['p50_ms']:.1f} / {bot['p99_ms']:.1f} | {bot['rps']:.0f} | "
                       f"{bot['p50_ms'] / bare['p50_ms']:.2f} | {big['p50_ms']:.1f} / {big['p99_ms']:.1f} | "
                       f"{big['rps']:.0f} |")
    out += ["", "| backend | Approve -> POST p50 / p99 ms | same, big DB | peak RSS per worker, bot (MB) | "
            "peak RSS per worker, bare (MB) | bulk fill |", "|---|---|---|---|---|---|"]
    for f in results:
        e, b = f.approve_ms["empty"], f.approve_ms["big"]
        out.append(f"| {f.backend} | {e[0]:.1f} / {e[1]:.1f} | {b[0]:.1f} / {b[1]:.1f} | "
                   f"{', '.join(f'{m:.0f}' for m in f.rss_mb['bot'])} | "
                   f"{', '.join(f'{m:.0f}' for m in f.rss_mb['bare'])} | {f.fill_seconds:.1f} s |")
    out += ["", f"Big DB: {audit:,} audit rows and {grants:,} grants added (COPY on PostgreSQL, executemany on "
            "SQLite) after the first runs, same processes."]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--write", help="write the figures into this Markdown file (its Results section)")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    started = time.monotonic()
    results = [run_backend(b, levels, args.approvals, args.audit_rows, args.grants)
               for b in args.backends.split(",")]
    table = report(results, levels, args.audit_rows, args.grants)
    print()
    print(table)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.write:
        path = Path(args.write)
        lines = [f"Run {datetime.now():%Y-%m-%d %H:%M} with `python -m bench.ack_latency`:", "", *machine(), "",
                 table]
        marker = "<!-- results -->"
        old = path.read_text() if path.exists() else marker
        head = old.split(marker)[0]
        path.write_text(head + marker + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
