"""What a person waits for when Slack is at a distance: the floor and the bot, over TLS, at chosen round-trip times.

    .venv/bin/python -m bench.distance [--rtts 0,20,80] [--samples 20] [--backend postgresql|sqlite]
                                       [--profile] [--write docs/benchmarks.md]

The fake Slack (tests/fakes.py's recording FakeSlack, noting when each call arrives) serves
TLS with a certificate made for this run in a temporary directory (`openssl req`), which the
apps trust through SSL_CERT_FILE; bench/delay_proxy.py, in its own process, puts it at the
round-trip time chosen (0 means plain HTTP straight to the fake, no TLS, no proxy). Slack's
requests to the apps and WhatCounts stay on loopback: only the apps' Web API calls cross the
distance. Two apps, one at a time (gunicorn, as in bench/ack_latency.py):

- floor: bench/bare_app.py --open-modal: one Web API call per step;
- bot: `sms-bot serve --http`.

For each sample, one person's three waits, measured from the signed request being sent to the
Web API call arriving at the fake Slack:

- command: /sms-send -> views.open;
- submit: the form submitted -> the card's chat.postMessage;
- approve: Approve (the last approval) -> the outcome's chat.postMessage in the card's thread.

"calls" is how many Web API calls arrived during the wait (the awaited one included), and
"RTTs per call" = ((wait - the same wait at RTT 0) / RTT + 0.5) / calls: the round trips the
distance added, per call (the awaited call is counted when it arrives, half a round trip before
its answer would be back, hence the 0.5). About 1 for a client that keeps its connection open,
about 3 for one that opens a TCP connection and a TLS session for each call (TCP, TLS 1.3, the
request); calls made at the same time would bring it below that.
`--profile` records the bot's workers with py-spy (wall clock, idle included; py-spy must be
installed) at each RTT, and says where the time inside its Web API calls went.
A script, never a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.ack_latency import (
    APPROVER,
    REQUESTER,
    ROOT,
    WORKERS,
    BareBolt,
    TimedWhatCounts,
    children,
    database,
    log_problems,
)
from bench.load import percentile
from bot.rules.sender_codes import ALL_CONTACTS
from tests.fakes import SPRING_SALE, FakeSlack, Received, _BurstServer
from tests.harness import CODE, BotProcess, SlackDriver, bot_env, free_port, request_id_of

APPS = ("floor", "bot")
STEPS = ("command", "submit", "approve")


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1, valid for a day: (certificate, key, trust bundle).

    The bundle, for SSL_CERT_FILE, is the system's CA certificates and this one: a client that
    loads its trust store for each connection pays what it would in production.
    """
    cert, key, bundle = directory / "slack-cert.pem", directory / "slack-key.pem", directory / "trusted.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    system = ssl.get_default_verify_paths().cafile
    bundle.write_text((Path(system).read_text() if system else "") + cert.read_text())
    return cert, key, bundle


class TimedSlack(FakeSlack):
    """The recording fake Slack, noting when each call arrives; over TLS when given a server context."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.arrivals: list[tuple[float, Received]] = []
        super().__init__()
        if tls is not None:
            plain = self.server
            plain.shutdown()
            plain.server_close()
            self.server = _TlsServer(("127.0.0.1", 0), plain.RequestHandlerClass, tls)
            self.server.daemon_threads = True
            self.url = f"https://127.0.0.1:{self.server.server_port}"
            threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def answer(self, received: Received) -> tuple[int, dict[str, str], bytes] | None:
        self.arrivals.append((time.perf_counter(), received))
        return super().answer(received)

    def wait_arrival(self, after: float, method: str, thread: bool = False, timeout: float = 15.0
                     ) -> tuple[float, int, dict[str, Any]]:
        """The first `method` call (in a thread, or not) arriving after `after`: (when, the Web API calls
        that arrived from `after` to then, its parameters)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            since = [(at, r) for at, r in list(self.arrivals) if at > after and r.path.startswith("/api/")]
            for n, (at, received) in enumerate(since, 1):
                if received.path == f"/api/{method}":
                    params = received.params()
                    if bool(params.get("thread_ts")) == thread:
                        return at, n, params
            time.sleep(0.0005)
        raise AssertionError(f"no {method} arrived within {timeout} s")

    def forget(self) -> None:
        with self._lock:
            self.received.clear()
        self.arrivals.clear()


class _TlsServer(_BurstServer):
    """The fakes' threaded server, with TLS."""

    def __init__(self, address: tuple[str, int], handler: Any, tls: ssl.SSLContext) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()  # in the connection's own thread, not the accepting loop
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class DelayProxy:
    """bench/delay_proxy.py in a child process, in front of `target_port`."""

    def __init__(self, target_port: int, rtt_ms: float, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / f"proxy-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.delay_proxy", "--port", str(self.port),
                 "--target", f"127.0.0.1:{target_port}", "--rtt-ms", str(rtt_ms)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the delay proxy did not listen: {self.log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Waits:
    """One app at one RTT: each step's waits (seconds) and Web API calls counted during them."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    calls: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STEPS})
    to_post: list[tuple[float, int]] = field(default_factory=list)  # the bot's Approve -> POST: seconds, Slack calls

    def add(self, step: str, started: float, arrived: tuple[float, int, dict[str, Any]]) -> None:
        self.seconds[step].append(arrived[0] - started)
        self.calls[step].append(arrived[1])


def one_person(driver: SlackDriver, slack: TimedSlack, waits: Waits, campaign: str,
               whatcounts: TimedWhatCounts | None = None) -> None:
    """/sms-send, submit the form, approve: the three waits of one request (and Approve -> the POST
    arriving at `whatcounts`, for the bot)."""
    started = time.perf_counter()
    answer = driver.command(REQUESTER)
    assert answer.status_code == 200 and answer.text == "", answer.text
    at = slack.wait_arrival(started, "views.open")
    waits.add("command", started, at)
    form = {**at[2]["view"], "id": f"V{uuid.uuid4().hex[:8]}"}

    started = time.perf_counter()
    answer = driver.submit(REQUESTER, form, message_name="Spring Sale", sender_code=CODE, campaign_name=campaign,
                           description=None, group_name=ALL_CONTACTS)
    assert answer.status_code == 200 and answer.text == "", answer.text
    at = slack.wait_arrival(started, "chat.postMessage")
    waits.add("submit", started, at)
    request_id = request_id_of(at[2])

    started = time.perf_counter()
    answer = driver.click(APPROVER, "approve", request_id)
    assert answer.status_code == 200, answer.text
    waits.add("approve", started, slack.wait_arrival(started, "chat.postMessage", thread=True))
    if whatcounts is not None:
        posted = whatcounts.arrival(campaign)
        waits.to_post.append((posted - started, sum(1 for at, r in list(slack.arrivals)
                                                    if started < at < posted and r.path.startswith("/api/"))))


# Where time inside a Web API call goes, by the first of these frames found under slack_sdk's
# request (py-spy's frames are "function (file:line)").
# The delay proxy accepts at once and holds the client's first bytes for the TCP handshake's
# round trip, so that round trip is seen inside the TLS handshake.
PHASES = (("loading the trust store", ("load_default_certs", "load_verify_locations", "create_default_context")),
          ("TCP and TLS handshakes", ("do_handshake", "create_connection")),
          ("waiting for the answer", ("getresponse",)))
IN_CALL = "_perform_urllib_http_request"


@contextmanager
def profiled(process: BotProcess, out: Path) -> Iterator[None]:
    """py-spy records each of `process`'s workers into `out`-<pid>.txt while the block runs."""
    assert process.process is not None
    beside = Path(sys.executable).with_name("py-spy")  # installed in the same virtualenv, or on PATH
    program = str(beside) if beside.exists() else "py-spy"
    spies = [subprocess.Popen([program, "record", "--idle", "--format", "raw", "--rate", "200", "--pid", str(pid),
                               "--output", f"{out}-{pid}.txt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid in children(process.process.pid)]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)


def phases(files: list[Path]) -> dict[str, float]:
    """Shares of the samples taken inside Web API calls, by phase."""
    counts: dict[str, int] = {}
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if IN_CALL not in stack or not count.isdigit():
                continue
            inside = stack.split(IN_CALL, 1)[1]
            name = next((n for n, marks in PHASES if any(m in inside for m in marks)), "other")
            counts[name] = counts.get(name, 0) + int(count)
    total = sum(counts.values()) or 1
    return {name: counts.get(name, 0) / total for name in (*(n for n, _ in PHASES), "other")}


@contextmanager
def app_process(name: str, env: dict[str, str], workdir: Path) -> Iterator[BotProcess]:
    process = BareBolt(env, workdir, open_modal=True) if name == "floor" else BotProcess(env, workdir, WORKERS)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        if problems := log_problems(process.log_path):
            print(f"  WARNING: {name}: {len(problems)} problem lines in {process.log_path.name}: {problems[:3]}",
                  flush=True)


def run(rtts: list[float], samples: int, backend: str, profile: bool = False
        ) -> tuple[dict[float, dict[str, Waits]], dict[float, str]]:
    """Each app's waits by RTT, and (with `profile`) where the bot's Web API calls spent their time."""
    results: dict[float, dict[str, Waits]] = {}
    profiles: dict[float, str] = {}
    with tempfile.TemporaryDirectory(prefix="sms-bot-distance-") as tmp, database(backend, Path(tmp)) as db, \
            ExitStack() as stack:
        workdir = Path(tmp)
        cert, key, trusted = make_certificate(workdir)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        db.allow_sends(REQUESTER, APPROVER, label="Bench")
        plain, secure = TimedSlack(), TimedSlack(tls)
        whatcounts = TimedWhatCounts()
        whatcounts.messages = [SPRING_SALE]
        for fake in (plain, secure, whatcounts):
            stack.callback(fake.close)
        for rtt in rtts:
            slack = plain if rtt == 0 else secure
            proxy = None if rtt == 0 else DelayProxy(secure.server.server_port, rtt, workdir)
            api_url = slack.api_url if proxy is None else f"https://127.0.0.1:{proxy.port}/api/"
            env = bot_env(db.url, slack, whatcounts, SLACK_API_URL=api_url, SSL_CERT_FILE=str(trusted),
                          SWEEP_INTERVAL_SECONDS="30", WHATCOUNTS_TIMEOUT="30")
            del env["POLICY_CACHE_SECONDS"]  # the tests' 0; the bench runs the default
            results[rtt] = {name: Waits() for name in APPS}
            try:
                with app_process("floor", env, workdir) as floor, app_process("bot", env, workdir) as bot:
                    drivers = {"floor": SlackDriver(floor.url, slack), "bot": SlackDriver(bot.url, slack)}
                    for driver in drivers.values():  # as Slack: no connection left idle to close under the next request
                        driver.http.headers["Connection"] = "close"
                    spied = workdir / f"bot-rtt{rtt:g}"
                    try:
                        with profiled(bot, spied) if profile else nullcontext():
                            for i in range(samples + 1):  # the first of each is a warm-up
                                for name in (APPS if i % 2 else APPS[::-1]):
                                    waits = results[rtt][name] if i else Waits()
                                    one_person(drivers[name], slack, waits, f"distance-{rtt:g}-{name}-{i}",
                                               whatcounts if name == "bot" else None)
                                slack.forget()
                    finally:
                        for driver in drivers.values():
                            driver.close()
                    if profile:
                        shares = phases(sorted(workdir.glob(f"{spied.name}-*.txt")))
                        profiles[rtt] = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
                        print(f"  RTT {rtt:g} ms bot, time inside its Web API calls: {profiles[rtt]}", flush=True)
            finally:
                if proxy is not None:
                    proxy.stop()
            for name in APPS:
                print(f"  RTT {rtt:g} ms {name:>5}: " + "  ".join(
                    f"{step} {_p(results[rtt][name], step)}" for step in STEPS), flush=True)
            print(f"  RTT {rtt:g} ms   bot: Approve -> POST {_post(results[rtt]['bot'])}", flush=True)
    return results, profiles


def _post(waits: Waits) -> str:
    seconds = [s for s, _ in waits.to_post]
    calls = percentile([float(n) for _, n in waits.to_post], 50)
    return (f"{percentile(seconds, 50) * 1000:.0f} / {percentile(seconds, 99) * 1000:.0f} ms, after {calls:.0f} "
            "Web API calls")


def _p(waits: Waits, step: str) -> str:
    values = waits.seconds[step]
    return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 99) * 1000:.0f}"


def _per_call(waits: Waits, near: Waits | None, step: str, rtt: float) -> str:
    """Round trips per Web API call (see the module's docstring), and the calls; `near`: the same at RTT 0."""
    if rtt == 0:
        return "-"
    calls = percentile([float(n) for n in waits.calls[step]], 50)
    added = percentile(waits.seconds[step], 50) - (percentile(near.seconds[step], 50) if near else 0.0)
    return f"{(added * 1000 / rtt + 0.5) / calls:.1f} ({calls:.0f})"


def report(results: dict[float, dict[str, Waits]], profiles: dict[float, str], samples: int, backend: str) -> str:
    out = ["| RTT | step | floor p50 / p99 ms | bot p50 / p99 ms | bot - floor p50 ms | "
           "RTTs per call (calls), floor | RTTs per call (calls), bot |",
           "|---|---|---|---|---|---|---|"]
    for rtt, apps in results.items():
        near = results.get(0.0, {})
        for step in STEPS:
            floor, bot = apps["floor"], apps["bot"]
            gap = (percentile(bot.seconds[step], 50) - percentile(floor.seconds[step], 50)) * 1000
            out.append(f"| {'0 (plain HTTP)' if rtt == 0 else f'{rtt:g} ms (TLS)'} | {step} | {_p(floor, step)} | "
                       f"{_p(bot, step)} | {gap:+.0f} | {_per_call(floor, near.get('floor'), step, rtt)} | "
                       f"{_per_call(bot, near.get('bot'), step, rtt)} |")
    posts = "; ".join(f"RTT {rtt:g} ms: {_post(apps['bot'])}" for rtt, apps in results.items())
    if profiles:
        out += ["", "Where the bot's Web API calls spent their time (py-spy, wall clock, its workers over the whole "
                "run at each RTT): " + "; ".join(f"RTT {rtt:g} ms: {text}" for rtt, text in profiles.items()) + "."]
    out += ["", f"The bot's Approve -> POST at WhatCounts (p50 / p99), and the Web API calls it waited for: {posts}."]
    out += ["", f"{samples} people per app and RTT, one at a time, the apps taking turns; the bot on {backend}. "
            "Waits from the signed request sent to the Web API call arriving at the fake Slack: command = "
            "/sms-send -> views.open, submit = Submit -> the card's chat.postMessage, approve = Approve -> the "
            "outcome's chat.postMessage in the thread. RTTs per call = ((p50 wait - p50 wait at RTT 0) / RTT + "
            "0.5) / calls, where calls is the median number of Web API calls that arrived during the wait, the "
            "awaited one included: 3 for a new TCP connection and TLS session per call, 1 for a kept-alive one."]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtts", default="0,20,80", help="round-trip times in ms; 0 is plain HTTP, no proxy")
    parser.add_argument("--samples", type=int, default=20, help="people per app and RTT")
    parser.add_argument("--backend", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--profile", action="store_true", help="py-spy the bot: where its Web API calls' time goes")
    parser.add_argument("--write", help="write the table into this Markdown file (after <!-- distance -->)")
    args = parser.parse_args()
    started = time.monotonic()
    results, profiles = run([float(x) for x in args.rtts.split(",")], args.samples, args.backend, args.profile)
    table = report(results, profiles, args.samples, args.backend)
    print()
    print(table)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.write:
        write_between(Path(args.write), "distance", f"Run {datetime.now():%Y-%m-%d %H:%M} with "
                      f"`python -m bench.distance{' --profile' if args.profile else ''}`:\n\n{table}")


def write_between(path: Path, name: str, text: str) -> None:
    """Put `text` between `<!-- name -->` and `<!-- /name -->` in the Markdown file at `path`."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    head, found, rest = path.read_text().partition(start)
    assert found and end in rest, f"{path} has no {start} ... {end}"
    path.write_text(f"{head}{start}\n{text}\n{end}{rest.partition(end)[2]}")


if __name__ == "__main__":
    main()
