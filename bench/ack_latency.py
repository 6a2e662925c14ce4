"""The bot against bare Bolt and a modal floor: ack latency and throughput, Approve -> POST, RSS, a big database.

    .venv/bin/python -m bench.ack_latency [--backends postgresql,sqlite] [--levels 1,10,50]
                                          [--write docs/benchmarks.md]

Three apps take the same closed-loop load of signed /sms-send commands (bench/load.py, in its
own process), under the same gunicorn settings (2 gthread workers x 8 threads) on loopback:

- bare: bench/bare_app.py, a Bolt app whose listener only calls ack();
- floor: bench/bare_app.py --open-modal, ack() then views.open of a constant form the size of
  the bot's: what any /sms-send that opens a modal must at least do;
- bot: `sms-bot serve --http`.

During that load the apps' Slack Web API is bench/lean_slack.py in its own process (canned
answers, nothing recorded), so that a fake's CPU is not counted against the apps on shared
cores. Approve -> POST needs the recording fakes of tests/fakes.py (in this process): a second
bot process on the same database, pointed at them, serves that measurement only.
A script, never a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
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

from sqlalchemy import create_engine, text

from bench.load import percentile
from bot.store import schema
from bot.store.engine import normalize_url
from tests.fakes import SPRING_SALE, Answer, FakeSlack, FakeWhatCounts, Received
from tests.harness import (
    CODE,
    SIGNING_SECRET,
    BotProcess,
    Database,
    SlackDriver,
    bot_env,
    make_database,
)

# The apps under load, in the order they are driven at each level, and the first table's columns.
LOADED = ("bare", "floor", "bot")

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUESTER, APPROVER = "UBENCHREQ", "UBENCHAPP"
WORKERS, THREADS = 2, 8
# (concurrency, requests): a whole default run (both backends) takes about 4 minutes on 2 cores.
REQUESTS = {1: 400, 10: 3000, 50: 5000}
# Each level's requests are split over rounds that take the apps in turn, so a slow minute of
# the machine falls on all of them; an app's figures are computed over all its rounds' requests.
ROUNDS = 5


def warmup(concurrency: int) -> int:
    """Unmeasured requests at the measured concurrency before each measured run (the first
    hundreds of requests at 50 clients are slower, while threads and connections start)."""
    return max(100, 20 * concurrency)


class TimedWhatCounts(FakeWhatCounts):
    """Notes when each POST arrives (before any delay), by path."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        super().__init__()

    def answer(self, received: Received) -> Answer:
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
    lean_counts: dict[str, int] = field(default_factory=dict)  # path -> requests the lean Slack answered
    views_open_expected: int = 0  # commands sent to the apps that open a modal


# --- the database ---------------------------------------------------------------------------

@contextmanager
def database(backend: str, workdir: Path) -> Iterator[Database]:
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        schema.upgrade(url)
        db = make_database(url)
        yield db
        db.engine.dispose()
        return
    schema_name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema_name}"
    try:
        schema.upgrade(url)
        db = make_database(url)
        yield db
        db.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


EVENTS = ("requested", "approved", "sending", "sent", "rejected", "cancelled", "expired", "failed")


def audit_rows(n: int) -> Iterator[tuple[Any, ...]]:
    start = datetime(2025, 1, 1)
    rng = random.Random(1)
    for i in range(n):
        yield (start + timedelta(seconds=i * 30), EVENTS[i % len(EVENTS)], f"U{rng.randrange(10_000):08d}",
               f"{i // 4:012x}", CODE, f'{{"n": {i}}}')


def grant_rows(n: int) -> Iterator[tuple[Any, ...]]:
    now = datetime(2025, 1, 1)
    for i in range(n):
        yield (f"U{i:08d}", ("requester", "approver")[i % 2], f"555{i:07d}", "bench", now)


AUDIT_COLUMNS = "at, event, actor_id, request_id, sender_code, details"
GRANT_COLUMNS = "user_id, role, sender_code, granted_by, granted_at"


def fill(db: Database, backend: str, audit: int, grants: int) -> float:
    """Bulk-insert audit rows and grants (COPY on PostgreSQL, executemany on SQLite); seconds taken.

    The database's triggers tell the running bots' policy cache that grants changed. PostgreSQL
    is vacuumed as after any bulk load, so autovacuum does not take the CPU during the runs.
    """
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
            assert conn is not None  # a live pooled connection always has its psycopg connection
            with conn.cursor() as cursor:
                # The bot's engine bounds every statement (2 s); a bulk load of a million rows takes longer.
                cursor.execute("SET statement_timeout = 0")
                with cursor.copy(f"COPY audit_events ({AUDIT_COLUMNS}) FROM STDIN") as copy:
                    for row in audit_rows(audit):
                        copy.write_row(row)
                with cursor.copy(f"COPY grants ({GRANT_COLUMNS}) FROM STDIN") as copy:
                    for row in grant_rows(grants):
                        copy.write_row(row)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE audit_events")
            conn.execute("VACUUM ANALYZE grants")
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


class BareBolt(BotProcess):
    """bench/bare_app.py in a child process, run and stopped as the bot is: `open_modal` makes it the floor."""

    def __init__(self, env: dict[str, str], workdir: Path, open_modal: bool = False) -> None:
        super().__init__(env, workdir, WORKERS)
        self.cwd = ROOT
        self.open_modal = open_modal
        self.log_path = workdir / f"{'floor' if open_modal else 'bare'}-{self.port}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.bare_app", "--port", str(self.port), "--workers", str(self.workers),
                "--threads", str(THREADS), *(["--open-modal"] if self.open_modal else [])]


class LeanSlackProcess(BotProcess):
    """bench/lean_slack.py in a child process: the apps' Slack Web API during the ack load."""

    health_path = "/ready"

    def __init__(self, workdir: Path) -> None:
        super().__init__(dict(os.environ), workdir)
        self.cwd = ROOT
        self.api_url = self.url + "/api/"
        self.log_path = workdir / f"lean-slack-{self.port}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.lean_slack", "--port", str(self.port)]

    def answered(self) -> dict[str, int]:
        """Once stopped: the requests it answered, by path (the line it prints on SIGTERM)."""
        lines = self.log().strip().splitlines()
        try:
            return {k: int(v) for k, v in json.loads(lines[-1]).items()} if lines else {}
        except (ValueError, AttributeError):
            return {}


def command_body(response_base: str) -> bytes:
    return urlencode({
        "token": "legacy", "team_id": "T1", "team_domain": "acme", "channel_id": "C0BENCH", "channel_name": "bench",
        "user_id": REQUESTER, "user_name": "bench", "command": "/sms-send", "text": "", "api_app_id": "A1",
        "is_enterprise_install": "false", "response_url": f"{response_base}/response/1", "trigger_id": "trigger-1",
    }).encode()


def drive(port: int, body_file: Path, concurrency: int, requests: int, fresh_connections: bool) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", "--port", str(port), "--body-file", str(body_file),
         "--concurrency", str(concurrency), "--requests", str(requests), "--warmup", str(warmup(concurrency)),
         *(["--close"] if fresh_connections else [])],
        env={**os.environ, "SLACK_SIGNING_SECRET": SIGNING_SECRET}, cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    if result.returncode != 0:  # say why: the load generator's own traceback
        raise RuntimeError(f"bench.load against port {port} exited {result.returncode}:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def pooled(results: list[dict[str, Any]]) -> dict[str, float]:
    """One app's figures over several rounds: percentiles of all their requests, throughput over their time."""
    latencies = [ms for r in results for ms in r["latencies_ms"]]
    seconds = sum(r["seconds"] for r in results)
    return {"requests": len(latencies), "errors": sum(r["errors"] for r in results), "seconds": seconds,
            "rps": len(latencies) / seconds, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies)}


def forget(slack: FakeSlack) -> None:
    """Drop what the fake Slack recorded (the forms, cards and threads of a run), so SlackDriver's waits stay fast."""
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

def run_backend(backend: str, levels: list[int], approvals: int, audit: int, grants: int,
                fresh_connections: bool) -> Figures:
    figures = Figures(backend)
    with tempfile.TemporaryDirectory(prefix="sms-bot-bench-") as tmp, database(backend, Path(tmp)) as db:
        workdir = Path(tmp)
        db.allow_sends(REQUESTER, APPROVER, label="Bench")
        slack, whatcounts = FakeSlack(), TimedWhatCounts()
        whatcounts.messages = [SPRING_SALE]
        lean = LeanSlackProcess(workdir)
        body_file = workdir / "command.txt"
        body_file.write_bytes(command_body(lean.url))
        # The recording fakes: for the bot that serves Approve -> POST (SlackDriver waits on them).
        recorded_env = bot_env(db.url, slack, whatcounts, SWEEP_INTERVAL_SECONDS="30", WHATCOUNTS_TIMEOUT="30")
        del recorded_env["POLICY_CACHE_SECONDS"]  # the tests' 0; the bench runs the default
        # The lean Slack: for the three apps under load.
        load_env = {**recorded_env, "SLACK_API_URL": lean.api_url}
        bot = BotProcess(load_env, workdir, workers=WORKERS)
        approver = BotProcess(recorded_env, workdir, workers=WORKERS)
        bare, floor = BareBolt(load_env, workdir), BareBolt(load_env, workdir, open_modal=True)
        apps: dict[str, BotProcess] = {"bare": bare, "floor": floor, "bot": bot}
        driver = SlackDriver(approver.url, slack)
        try:
            lean.start()
            for process in (bot, approver, bare, floor):
                process.start()

            def load(names: tuple[str, ...], level: int, suffix: str = "") -> None:
                rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
                for turn in range(ROUNDS):
                    for name in names[turn % len(names):] + names[:turn % len(names)]:
                        result = drive(apps[name].port, body_file, level, REQUESTS.get(level, 2000) // ROUNDS,
                                       fresh_connections)
                        rounds[name].append(result)
                        if name != "bare":
                            figures.views_open_expected += int(result["requests"]) + warmup(level)
                for name, results in rounds.items():
                    label = name + suffix
                    figures.ack.setdefault(label, {})[level] = pooled(results)
                    p50s = ", ".join(f"{r['p50_ms']:.1f}" for r in results)
                    print(f"  {backend} {label:>7} c={level:<3} {_fmt(figures.ack[label][level])}  "
                          f"round p50s: {p50s}", flush=True)

            for level in levels:
                load(LOADED, level)
            figures.approve_ms["empty"] = approve_latency(driver, whatcounts, approvals)
            print(f"  {backend} approve->POST {_fmt_ms(figures.approve_ms['empty'])}", flush=True)

            figures.fill_seconds = fill(db, backend, audit, grants)
            print(f"  {backend} filled {audit} audit rows, {grants} grants in {figures.fill_seconds:.1f} s",
                  flush=True)
            for level in levels:
                load(("bot",), level, "+big")
            figures.approve_ms["big"] = approve_latency(driver, whatcounts, approvals)
            print(f"  {backend} approve->POST (big) {_fmt_ms(figures.approve_ms['big'])}", flush=True)

            for name, app in apps.items():
                assert app.process is not None
                figures.rss_mb[name] = [peak_rss_mb(pid) for pid in children(app.process.pid)]
        finally:
            driver.close()
            for process in (approver, bot, floor, bare):
                try:
                    process.stop()
                except (OSError, subprocess.SubprocessError) as exc:  # stop the others all the same
                    print(f"  could not stop {process}: {exc!r}", file=sys.stderr)
            lean.stop()
            figures.lean_counts = lean.answered()
            slack.close()
            whatcounts.close()
        answered = figures.lean_counts.get("/api/views.open", 0)
        print(f"  {backend} lean Slack answered {answered} views.open of {figures.views_open_expected} "
              f"commands to floor and bot; all requests: {figures.lean_counts}", flush=True)
        if answered != figures.views_open_expected:
            print(f"  WARNING: {backend}: views.open answered {answered} != {figures.views_open_expected} "
                  "expected", flush=True)
        for app in (bot, floor, bare):
            if problems := log_problems(app.log_path):
                shown = [line for line in problems if "Traceback" not in line] or problems
                print(f"  WARNING: {backend}: {len(problems)} problem lines in {app.log_path.name}, first: "
                      f"{shown[:3]}", flush=True)
    return figures


def log_problems(path: Path) -> list[str]:
    """Lines of an app's log that say a Web API call or a request failed."""
    if not path.exists():
        return []
    markers = ("views.open failed", "Traceback", "SlackApiError", "Failed to run listener", "[ERROR]",
               "WORKER TIMEOUT")
    return [line for line in path.read_text(errors="replace").splitlines() if any(m in line for m in markers)]


def _fmt_ms(p50_p99: tuple[float, float]) -> str:
    return f"p50 {p50_p99[0]:.1f} ms  p99 {p50_p99[1]:.1f} ms"


def _fmt(f: dict[str, float]) -> str:
    return (f"p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms  {f['rps']:6.0f} req/s  "
            f"({int(f['requests'])} requests, {int(f['errors'])} errors)")


# --- the report -----------------------------------------------------------------------------

def machine() -> list[str]:
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except OSError:
            return "?"

    with create_engine(normalize_url(POSTGRES_URL)).connect() as connection:
        pg = str(connection.execute(text("SHOW server_version")).scalar())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return [f"- `nproc`: {sh('nproc')} ({cpu})", "- `free -h`:", "", "```", sh("free", "-h"), "```", "",
            (f"- Python {platform.python_version()}, PostgreSQL {pg}, SQLite {sqlite3.sqlite_version}, "
             f"Linux {platform.release()}"),
            (f"- gunicorn: {WORKERS} gthread workers x {THREADS} threads for all three apps; the apps, the load "
             "generator (its own process) and the fakes on the same machine (loopback)"),
            ("- the apps' Slack Web API during the ack load: bench/lean_slack.py in its own process (canned "
             "answers, nothing recorded); Approve -> POST: a second bot process on the same database, with the "
             "recording fakes of Slack and WhatCounts (tests/fakes.py) in the benchmark's process")]


def _p(f: dict[str, float]) -> str:
    return f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f}"


def _mb(values: list[float]) -> str:
    return ", ".join(f"{m:.0f}" for m in values) or "?"


def report(results: list[Figures], levels: list[int], audit: int, grants: int, fresh_connections: bool) -> str:
    out = [("| backend | clients | bare p50 / p99 ms | bare req/s | floor p50 / p99 ms | floor req/s | "
            "bot p50 / p99 ms | bot req/s | floor/bare p50 | bot/bare p50 | bot/floor p50 | "
            "bot p50 / p99 ms, big DB | bot req/s, big DB |"),
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in results:
        for level in levels:
            bare, floor, bot = (f.ack[name][level] for name in LOADED)
            big = f.ack["bot+big"][level]
            out.append(f"| {f.backend} | {level} | {_p(bare)} | {bare['rps']:.0f} | {_p(floor)} | {floor['rps']:.0f} | "
                       f"{_p(bot)} | {bot['rps']:.0f} | {floor['p50_ms'] / bare['p50_ms']:.2f} | "
                       f"{bot['p50_ms'] / bare['p50_ms']:.2f} | {bot['p50_ms'] / floor['p50_ms']:.2f} | "
                       f"{_p(big)} | {big['rps']:.0f} |")
    out += ["", ("| backend | Approve -> POST p50 / p99 ms | same, big DB | peak RSS per worker, bot (MB) | "
                 "peak RSS per worker, floor (MB) | peak RSS per worker, bare (MB) | bulk fill |"),
            "|---|---|---|---|---|---|---|"]
    for f in results:
        e, b = f.approve_ms["empty"], f.approve_ms["big"]
        out.append(f"| {f.backend} | {e[0]:.1f} / {e[1]:.1f} | {b[0]:.1f} / {b[1]:.1f} | {_mb(f.rss_mb['bot'])} | "
                   f"{_mb(f.rss_mb['floor'])} | {_mb(f.rss_mb['bare'])} | {f.fill_seconds:.1f} s |")
    connections = ("a new connection per request" if fresh_connections else
                   "keep-alive connections, so each client stays on the gunicorn worker that accepted it")
    out += ["", f"Clients: {connections}, {ROUNDS} rounds per level taking the apps in turn (figures over all "
            "rounds' requests). bare: Bolt, ack() only. floor: Bolt, ack() then views.open of a constant form "
            "the size of the bot's "
            "(bench/bare_app.py --open-modal), the least any /sms-send that opens a modal does. "
            f"Big DB: {audit:,} audit rows and {grants:,} grants added (COPY on PostgreSQL, executemany on "
            "SQLite) after the first runs, same processes. views.open answered by the lean Slack / commands sent "
            "to floor and bot: " + ", ".join(
                f"{f.backend} {f.lean_counts.get('/api/views.open', 0):,} / {f.views_open_expected:,}"
                for f in results) + "."]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--fresh-connections", action="store_true",
                        help="each command on a new connection (the server picks a worker each time), not keep-alive")
    parser.add_argument("--write", help="write the figures into this Markdown file (its Results section)")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    started = time.monotonic()
    results = [run_backend(b, levels, args.approvals, args.audit_rows, args.grants, args.fresh_connections)
               for b in args.backends.split(",")]
    table = report(results, levels, args.audit_rows, args.grants, args.fresh_connections)
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
