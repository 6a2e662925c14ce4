"""Driving the real bot the way Slack does: signed requests into its real WSGI app.

By default the app runs in the test's own process (`InProcessBot`: the runtime `sms-bot serve`
builds, with Bolt's real signature check and dispatch, reached through httpx's WSGI transport).
Tests about processes (signals, crashes, replicas, gunicorn, start-up) run `sms-bot serve --http`
as a child process instead (`BotProcess`). The same `SlackDriver` drives either, by URL.

What in-process bots share with the test process: Prometheus metrics (counted for the whole
run, so assert on them through a `BotProcess`, as test_operations does), the root logger (at
INFO while any in-process bot runs, each bot's own handler removed when it stops), and
nothing else: each Slack request is dispatched in a fresh context, so the request id that
Bolt middleware binds never reaches the test's thread.
"""

from __future__ import annotations

import base64
import gc
import io
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot import cli
from bot.ops import logs
from bot.ops.config import load_settings
from bot.rules import grants, test_phones
from bot.rules.sender_codes import ALL_CONTACTS
from bot.slack.app import build_runtime
from bot.slack.server import wsgi_app
from bot.store.engine import make_engine, make_session_factory, utcnow
from bot.store.models import AuditEvent, Role, SenderCode, SendRequest
from tests.fakes import FakeSlack, FakeWhatCounts

SIGNING_SECRET = "test-signing-secret-8f2b1c"
BOT_TOKEN = "xoxb-test-bot-token-71d3"
WHATCOUNTS_REALM = "acme"
WHATCOUNTS_PASSWORD = "wc-Pa55word!secret"
BASIC_CREDENTIALS = base64.b64encode(f"{WHATCOUNTS_REALM}:{WHATCOUNTS_PASSWORD}".encode()).decode()
SECRETS = (SIGNING_SECRET, BOT_TOKEN, WHATCOUNTS_PASSWORD, BASIC_CREDENTIALS)
CHANNEL = "C0CHANNEL"
CODE = "5551234567"


@dataclass
class Database:
    url: str
    engine: Engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    def grant(self, user_id: str, role: str, sender_code: str = CODE) -> None:
        with self.sessions.begin() as session:
            grants.grant(session, user_id, Role(role), sender_code, "test")

    def revoke(self, user_id: str, role: str, sender_code: str = CODE) -> None:
        with self.sessions.begin() as session:
            assert grants.revoke(session, user_id, Role(role), sender_code, "test")

    def sender_code(self, code: str, **values: Any) -> None:
        with self.sessions.begin() as session:
            session.merge(SenderCode(code=code, **{"label": "", "approvals_required": 1,
                                                   "allow_self_approval": False, **values}))

    def test_phone(self, user_id: str, phone: str) -> None:
        with self.sessions.begin() as session:
            test_phones.set_test_phone(session, user_id, phone, "test")

    def allow_sends(self, requester: str, approver: str, code: str = CODE, **policy: Any) -> None:
        """Register `code` (with `policy`), and let `requester` ask for its sends and `approver` approve them."""
        self.sender_code(code, **policy)
        self.grant(requester, "requester", code)
        self.grant(approver, "approver", code)

    def requests(self) -> list[SendRequest]:
        with self.sessions() as session:
            return list(session.scalars(select(SendRequest).order_by(SendRequest.created_at)))

    def request(self, request_id: str) -> SendRequest:
        with self.sessions() as session:
            found = session.get(SendRequest, request_id)
            assert found is not None
            return found

    def events(self, request_id: str | None = None) -> list[str]:
        with self.sessions() as session:
            stmt = select(AuditEvent.event).order_by(AuditEvent.id)
            if request_id:
                stmt = stmt.where(AuditEvent.request_id == request_id)
            return list(session.scalars(stmt))

    def audit_rows(self) -> list[AuditEvent]:
        with self.sessions() as session:
            return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(database_url: str, slack: FakeSlack, whatcounts: FakeWhatCounts, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "PYTHONUNBUFFERED": "1",
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url,
        "WHATCOUNTS_URL": whatcounts.url, "WHATCOUNTS_REALM": WHATCOUNTS_REALM,
        "WHATCOUNTS_PASSWORD": WHATCOUNTS_PASSWORD, "WHATCOUNTS_TIMEOUT": "2",
        "DATABASE_URL": database_url, "SWEEP_INTERVAL_SECONDS": "0.3",
        "POLICY_CACHE_SECONDS": "0",  # every form reads the grants tests have just changed (test_policy_cache)
    }
    env.update(extra)
    return env


def run_cli_process(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m bot.cli ARGS` in a child process, with exactly this environment, no standard input."""
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`sms-bot ARGS` as an operator runs it: its exit status, output and errors.

    Run in this process through `bot.cli.main` (a process costs half a second of imports),
    with exactly `env` as the environment, `cwd` as the working directory (for `.env`) and
    empty standard input; all three are put back afterwards. `serve` would not return, so it,
    and what a test wants from a real process, goes through `run_cli_process`.
    """
    if args[:1] == ("serve",):
        return run_cli_process(*args, env=env, cwd=cwd)
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.stdin = io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                status = cli.main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.stdin = saved_stdin
        gc.collect()  # the command's database engine, and its connections, as its process's exit would
    return subprocess.CompletedProcess(["sms-bot", *args], status, out.getvalue(), err.getvalue())


class InProcessBot:
    """The bot as `sms-bot serve` builds it (`build_runtime`, `wsgi_app`), served in this process.

    Nothing to start or wait for: `url` names it for `SlackDriver` (and `get`), which hand its
    requests to the WSGI app through httpx's WSGI transport. Its log lines, formatted and redacted
    as the process's would be, are kept for `log()`. `clock` replaces the life cycle's clock (the database's time).
    """

    _hosts = itertools.count(1)
    _running = 0  # in-process bots started and not stopped; the root logger is at INFO while any runs
    _root_level = logging.WARNING

    def __init__(self, env: Mapping[str, str], clock: Callable[[Session], datetime] | None = None) -> None:
        self.settings = load_settings(env)
        self.runtime = build_runtime(self.settings)
        if clock is not None:
            self.runtime.core.lifecycle.clock = clock
        self.transport = httpx.WSGITransport(app=wsgi_app(self.runtime))
        self.host = f"bot-{next(self._hosts)}.in-process"
        self.url = f"http://{self.host}"
        self._log = io.StringIO()
        self._handler = logs.make_handler(self.settings, self._log)
        self._started = self._stopped = False

    def start(self, sweeper: bool = True) -> Self:
        """Serve at `url`; `sweeper`: sweep at once and then every SWEEP_INTERVAL_SECONDS, as `serve` does."""
        root = logging.getLogger()
        if InProcessBot._running == 0:
            InProcessBot._root_level = root.level
            root.setLevel(logging.INFO)
        InProcessBot._running += 1
        root.addHandler(self._handler)
        _IN_PROCESS[self.host] = self
        self._started = True
        if sweeper:
            self.runtime.start_background()
        return self

    def get(self, path: str) -> httpx.Response:
        with httpx.Client(transport=self.transport, base_url=self.url) as client:
            return client.get(path)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every request's listener, and the background work it handed off, has finished."""
        assert self.runtime.wait_idle(timeout), f"the bot was still busy after {timeout} s"

    def sweep(self) -> None:
        """One sweep, now, as the sweeper runs it: expiry, lost sends, cards and outcomes to catch up."""
        self.runtime.publisher.sweep()

    def log(self) -> str:
        return self._log.getvalue()

    def stop(self) -> None:
        """Shut down as a worker does at exit (sends in flight are finished), and let go of its threads."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        _IN_PROCESS.pop(self.host, None)
        try:
            self.runtime.shutdown()
            self.runtime.core.engine.dispose()
        finally:
            root = logging.getLogger()
            root.removeHandler(self._handler)
            InProcessBot._running -= 1
            if InProcessBot._running == 0:
                root.setLevel(InProcessBot._root_level)


_IN_PROCESS: dict[str, InProcessBot] = {}  # running in-process bots by the host name of their URL


class _ToBots(httpx.BaseTransport):
    """Requests for an in-process bot's URL go to its WSGI app; any other URL goes over the network."""

    def __init__(self) -> None:
        self.network: httpx.HTTPTransport | None = None  # made when first needed: it loads TLS certificates

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if (bot := _IN_PROCESS.get(request.url.host)) is not None:
            return bot.transport.handle_request(request)
        if self.network is None:
            self.network = httpx.HTTPTransport()
        return self.network.handle_request(request)

    def close(self) -> None:
        if self.network is not None:
            self.network.close()


@contextmanager
def in_process_bot(env: Mapping[str, str], clock: Callable[[Session], datetime] | None = None,
                   sweeper: bool = True) -> Iterator[InProcessBot]:
    bot = InProcessBot(env, clock).start(sweeper)
    try:
        yield bot
    finally:
        bot.stop()


class BotProcess:
    """`sms-bot serve --http` in a child process, its output kept in a file.

    Another server is run the same way by overriding `command()`, `cwd` and `health_path`.
    """

    health_path = "/healthz"

    def __init__(self, env: dict[str, str], workdir: Path, workers: int = 1) -> None:
        self.env = env
        self.workdir = self.cwd = workdir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"bot-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bot.cli", "serve", "--http", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), env=self.env, cwd=self.cwd, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.command()[2]} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"{self.command()[2]} did not answer {self.health_path} within 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the gunicorn master only, as `docker stop` and Kubernetes do; wait for it to exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL every process of the bot at once, as a crash would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextmanager
def running_bot(env: dict[str, str], workdir: Path, workers: int = 1) -> Iterator[BotProcess]:
    bot = BotProcess(env, workdir, workers).start()
    try:
        yield bot
    finally:
        bot.stop()


@contextmanager
def bot_with(env: dict[str, str], workdir: Path, slack: FakeSlack, workers: int = 1,
             **extra: str) -> Iterator[tuple[InProcessBot, SlackDriver]]:
    """An in-process bot with settings of its own (`extra` over `env`), and a driver for it.

    `workdir` is unused (kept so callers read alike); several `workers` need `process_with`.
    """
    assert workers == 1, "several workers are gunicorn's: use process_with"
    with in_process_bot({**env, **extra}) as bot:
        driver = SlackDriver(bot.url, slack)
        try:
            yield bot, driver
        finally:
            driver.close()


@contextmanager
def process_with(env: dict[str, str], workdir: Path, slack: FakeSlack, workers: int = 1,
                 **extra: str) -> Iterator[tuple[BotProcess, SlackDriver]]:
    """A `sms-bot serve --http` process with settings of its own (`extra` over `env`), and a driver for it."""
    with running_bot({**env, **extra}, workdir, workers) as process:
        driver = SlackDriver(process.url, slack)
        try:
            yield process, driver
        finally:
            driver.close()


def form_errors(response: httpx.Response) -> dict[str, str]:
    """The inline errors a form submission was answered with."""
    body = json.loads(response.text)
    assert body["response_action"] == "errors", body
    errors: dict[str, str] = body["errors"]
    return errors


_home_events = itertools.count(1)


class SlackDriver:
    """Acts as Slack towards the bot at `bot_url` (in-process or a process): signed slash commands,
    form submissions and clicks; and waits for what the bot then tells Slack."""

    _ids = itertools.count(1)

    def __init__(self, bot_url: str, slack: FakeSlack, secret: str = SIGNING_SECRET) -> None:
        self.bot_url = bot_url
        self.slack = slack
        self.verifier = SignatureVerifier(secret)
        self.http = httpx.Client(timeout=10, transport=_ToBots())

    def close(self) -> None:
        self.http.close()

    @property
    def bot(self) -> InProcessBot | None:
        """The in-process bot this driver talks to; None for a bot process."""
        return _IN_PROCESS.get(httpx.URL(self.bot_url).host)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the bot has finished what the requests so far set off (in-process bots only:
        a process cannot be asked, so there a test waits for what it expects to see)."""
        bot = self.bot
        assert bot is not None, f"{self.bot_url} is a process; settle() needs an in-process bot"
        bot.settle(timeout)

    def _join(self, timeout: float = 10.0) -> None:
        """Before polling the fake Slack: with an in-process bot, wait (up to `timeout`) for its work to end."""
        if (bot := self.bot) is not None:
            bot.runtime.wait_idle(timeout)

    def post(self, body: str, content_type: str = "application/x-www-form-urlencoded", *,
             timestamp: int | None = None, signature: str | None = None, sign: bool = True,
             url: str | None = None) -> httpx.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": content_type}
        if sign:
            headers["X-Slack-Request-Timestamp"] = ts
            # slack_sdk types generate_signature as Optional, but it returns None only for a None timestamp
            headers["X-Slack-Signature"] = signature or self.verifier.generate_signature(  # type: ignore[assignment]
                timestamp=ts, body=body)
        return self.http.post((url or self.bot_url) + "/slack/events", content=body.encode(), headers=headers)

    def command(self, user_id: str, text: str = "", channel_id: str = CHANNEL, **post: Any) -> httpx.Response:
        n = next(self._ids)
        return self.post(urlencode({
            "token": "legacy-verification-token", "team_id": "T1", "team_domain": "acme",
            "channel_id": channel_id, "channel_name": "marketing", "user_id": user_id, "user_name": user_id.lower(),
            "command": "/sms-send", "text": text, "api_app_id": "A1", "is_enterprise_install": "false",
            "response_url": f"{self.slack.url}/response/{n}", "trigger_id": f"trigger-{n}",
        }), **post)

    def open_form(self, user_id: str, channel_id: str = CHANNEL) -> dict[str, Any]:
        before = len(self.slack.calls("views.open"))
        response = self.command(user_id, channel_id=channel_id)
        assert response.status_code == 200, response.text
        assert response.text == "", f"expected the form, got a reply: {response.text}"
        self._join()
        self.slack.wait_until(lambda: len(self.slack.calls("views.open")) > before, what="views.open")
        # Slack gives every opened modal an id of its own; submitting it again sends the same id.
        return {**self.slack.calls("views.open")[-1]["view"], "id": f"V{next(self._ids)}"}

    def submit(self, user_id: str, view: dict[str, Any], **values: str | None) -> httpx.Response:
        """Submit the form with these values by block id (a select's option value); None leaves it empty."""
        state: dict[str, Any] = {}
        for block in view["blocks"]:
            if block["type"] != "input":
                continue
            element = block["element"]
            value = values.get(block["block_id"])
            if element["type"] in ("static_select", "external_select"):
                option = {"text": {"type": "plain_text", "text": value}, "value": value} if value else None
                entry = {"type": element["type"], "selected_option": option}
            elif element["type"] == "datetimepicker":  # UNIX seconds, as Slack reports the picked moment
                entry = {"type": element["type"], "selected_date_time": int(value) if value else None}
            else:
                entry = {"type": element["type"], "value": value}
            state[block["block_id"]] = {element["action_id"]: entry}
        payload = {
            "type": "view_submission", "team": {"id": "T1", "domain": "acme"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T1"},
            "api_app_id": "A1", "token": "legacy-verification-token", "trigger_id": f"trigger-{next(self._ids)}",
            "view": {"id": view.get("id", "V1"), "team_id": "T1", "type": "modal",
                     "callback_id": view["callback_id"], "private_metadata": view.get("private_metadata", ""),
                     "hash": "1700000000.abc", "blocks": view["blocks"], "title": view["title"],
                     "state": {"values": state}},
            "response_urls": [],
        }
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def choose_sender_code(self, user_id: str, view: dict[str, Any], code: str,
                           message: str | None = None) -> dict[str, Any]:
        """Pick a sender code in the open form (a `message` already chosen there), as Slack reports it;
        returns the form the bot redraws."""
        before = len(self.slack.calls("views.update"))
        self.pick_sender_code(user_id, view, code, message)
        self.slack.wait_until(lambda: len(self.slack.calls("views.update")) > before, what="views.update")
        return {**self.slack.calls("views.update")[-1]["view"], "id": view.get("id", "V1")}

    def pick_sender_code(self, user_id: str, view: dict[str, Any], code: str, message: str | None = None) -> None:
        """The `block_actions` Slack sends when a sender code is picked in the open form; joined, not awaited."""
        chosen = {"message_name": _selected("external_select", message)} if message else {}
        self._form_action(user_id, view, _selected("static_select", code) | {"action_id": "sender_code"}, chosen)

    def choose_message(self, user_id: str, view: dict[str, Any], name: str,
                       sender_code: str | None = None) -> dict[str, Any]:
        """Pick a message in the open form (a `sender_code` already chosen there); returns the form the bot redraws."""
        before = len(self.slack.calls("views.update"))
        chosen = {"sender_code": _selected("static_select", sender_code)} if sender_code else {}
        self._form_action(user_id, view, _selected("external_select", name) | {"action_id": "message_name"}, chosen)
        self.slack.wait_until(lambda: len(self.slack.calls("views.update")) > before, what="views.update")
        return {**self.slack.calls("views.update")[-1]["view"], "id": view.get("id", "V1")}

    def _form_action(self, user_id: str, view: dict[str, Any], action: dict[str, Any],
                     chosen: dict[str, dict[str, Any]]) -> None:
        """A select changed in the open form (`action`), with the form's other choices (`chosen`, by block)."""
        response = self.post(self.form_action_body(user_id, view, action, chosen))
        assert response.status_code == 200, response.text
        self._join()

    def form_action_body(self, user_id: str, view: dict[str, Any], action: dict[str, Any],
                         chosen: dict[str, dict[str, Any]]) -> str:
        """The `block_actions` body Slack sends for `_form_action`."""
        values = {block: {block: element} for block, element in chosen.items()}
        payload = {
            "type": "block_actions", "team": {"id": "T1", "domain": "acme"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T1"},
            "api_app_id": "A1", "token": "legacy-verification-token", "trigger_id": f"trigger-{next(self._ids)}",
            "container": {"type": "view", "view_id": "V1"},
            "view": {"id": "V1", "team_id": "T1", "type": "modal", "callback_id": view["callback_id"],
                     "private_metadata": view.get("private_metadata", ""), "hash": "1700000000.abc",
                     "blocks": view["blocks"], "title": view["title"], "state": {"values": values}},
            "actions": [{**action, "block_id": action["action_id"], "action_ts": f"{time.time():.6f}"}],
        }
        return urlencode({"payload": json.dumps(payload)})

    def suggest(self, user_id: str, query: str) -> httpx.Response:
        """The message type-ahead's options request (`block_suggestion`), as Slack sends it."""
        payload = {
            "type": "block_suggestion", "team": {"id": "T1", "domain": "acme"},
            "user": {"id": user_id, "name": user_id.lower(), "team_id": "T1"}, "api_app_id": "A1",
            "token": "legacy-verification-token", "container": {"type": "view", "view_id": "V1"},
            "action_id": "message_name", "block_id": "message_name", "value": query,
            "view": {"id": "V1", "type": "modal", "callback_id": "sms_send_request", "state": {"values": {}}},
        }
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def request(self, user_id: str, channel_id: str = CHANNEL, **values: str | None) -> str:
        """Open the form (choosing the sender code first, as a person must when it offers several), submit
        it, and return the id of the request on the posted card."""
        fields = {"message_name": "Spring Sale", "sender_code": CODE, "campaign_name": "Spring 2026",
                  "description": None, "group_name": ALL_CONTACTS, **values}
        before = len(self.slack.calls("chat.postMessage"))
        view = self.open_form(user_id, channel_id)
        if not any(b.get("block_id") == "group_name" for b in view["blocks"]) and fields["sender_code"]:
            view = self.choose_sender_code(user_id, view, str(fields["sender_code"]))  # "Send to" shows then
        response = self.submit(user_id, view, **fields)
        assert response.status_code == 200 and response.text == "", response.text
        card = self.slack.calls("chat.postMessage")[before]
        return request_id_of(card)

    def click(self, user_id: str, action_id: str, request_id: str, channel_id: str = CHANNEL,
              bot_url: str | None = None, action_ts: str | None = None) -> httpx.Response:
        """`action_ts`: Slack's id of the click, the same when Slack sends one click again (default: a new click)."""
        n = next(self._ids)
        payload = {
            "type": "block_actions", "team": {"id": "T1", "domain": "acme"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T1"},
            "api_app_id": "A1", "token": "legacy-verification-token", "trigger_id": f"trigger-{n}",
            "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel_id,
                          "is_ephemeral": False},
            "channel": {"id": channel_id, "name": "marketing"},
            "message": {"type": "message", "ts": "1700000000.000001", "text": "card"},
            "response_url": f"{self.slack.url}/response/{n}",
            "actions": [{"action_id": action_id, "block_id": "decision", "value": request_id, "type": "button",
                         "text": {"type": "plain_text", "text": action_id.title()},
                         "action_ts": action_ts or f"{time.time():.6f}"}],
        }
        return self.post(urlencode({"payload": json.dumps(payload)}), url=bot_url)

    def open_modal(self, user_id: str, action_id: str, request_id: str) -> dict[str, Any]:
        """Click a card's button that opens a modal (Reject, Approve with note, Record outcome); the modal."""
        before = len(self.slack.calls("views.open"))
        response = self.click(user_id, action_id, request_id)
        assert response.status_code == 200, response.text
        self._join()
        self.slack.wait_until(lambda: len(self.slack.calls("views.open")) > before, what=f"{action_id}'s modal")
        return {**self.slack.calls("views.open")[-1]["view"], "id": f"V{next(self._ids)}"}

    def reject(self, user_id: str, request_id: str, reason: str | None) -> httpx.Response:
        """Click Reject and submit its modal with `reason`; the submission's answer (inline errors, or none)."""
        return self.submit(user_id, self.open_modal(user_id, "reject", request_id), note=reason)

    def ephemerals(self, user_id: str) -> list[str]:
        return [c["text"] for c in self.slack.calls("chat.postEphemeral") if c.get("user") == user_id]

    def wait_ephemeral(self, user_id: str, contains: str) -> str:
        self._join()
        return self.slack.wait_until(
            lambda: next((t for t in self.ephemerals(user_id) if contains in t), None),
            what=f"an ephemeral to {user_id} containing {contains!r}")

    def card_updates(self, request_id: str) -> list[dict[str, Any]]:
        return [c for c in self.slack.calls("chat.update") if request_id in json.dumps(c.get("blocks"))]

    def wait_card(self, request_id: str, contains: str, timeout: float = 10.0) -> dict[str, Any]:
        self._join(timeout)
        return self.slack.wait_until(
            lambda: next((c for c in reversed(self.card_updates(request_id)) if contains in json.dumps(c["blocks"])),
                         None), timeout, f"card {request_id} to show {contains!r}")

    def wait_outcome(self, contains: str, timeout: float = 10.0) -> dict[str, Any]:
        self._join(timeout)
        return self.slack.wait_for("chat.postMessage",
                                   lambda p: bool(p.get("thread_ts")) and contains in p.get("text", ""), timeout)


def home_opened(user_id: str) -> dict[str, Any]:
    """The Events API's `app_home_opened`, as Slack delivers it."""
    n = next(_home_events)
    return {"token": "legacy-verification-token", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": f"Ev{n:08d}", "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": user_id, "channel": f"D{n:08d}", "tab": "home",
                      "event_ts": f"{time.time():.6f}"}}


def request_id_of(card: dict[str, Any]) -> str:
    for block in card["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == "approve":
                return str(element["value"])
    raise AssertionError(f"no Approve button on {card}")


def make_database(url: str) -> Database:
    return Database(url, make_engine(url))


def _selected(kind: str, value: str) -> dict[str, Any]:
    """A select element with `value` chosen, as Slack reports it in a view's state or an action."""
    return {"type": kind, "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}


def insert_old_request(connection: Connection, request_id: str, state: str = "pending", *,
                       approvals: int = 1) -> None:
    """A request row written with plain SQL, in the columns every revision from 0005 on has: data that
    was in the database before a migration under test."""
    connection.execute(text(
        "INSERT INTO send_requests (id, state, requester_id, team_id, channel_id, card_ts, message_name, sender_code, "
        "campaign_name, approvals_required, allow_self_approval, created_at, expires_at, version, card_version, "
        "outcome_posted, message_verified, sender_label, dry_run, card_attempts) VALUES (:id, :state, 'U1', 'T1', "
        "'C1', '1.1', 'Spring Sale', :code, 'Old', :approvals, false, :at, :at, :approvals, :approvals, false, "
        "false, '', false, 0)"), {"id": request_id, "state": state, "code": CODE, "approvals": approvals,
                                  "at": utcnow()})
