"""How long Slack waits for the bot's answers when its PostgreSQL is slow or its pool is used up.

    .venv/bin/python -m bench.slow_database [--delays 0,0.1,0.2,0.3] [--repeats 3] [--write docs/benchmarks.md]

The bot runs in this process (tests/harness.py's in-process bot, the real WSGI app) on a
PostgreSQL schema of its own, reached through tests/dbproxy.py, which holds every chunk
`delay` seconds each way (a round trip to the database takes 2 x delay longer). For each
delay, and with every connection of the bot's pool checked out, it times the answer to Slack
(the HTTP response, what Slack's 3 s are about) for /sms-send, a form's submission, an Approve
click and an admin command, and says what the person got. A script, never a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.ack_latency import database
from bench.distance import write_between
from bench.load import percentile
from bot.rules.sender_codes import ALL_CONTACTS
from bot.slack.commands import ADMIN_TOO_SLOW
from bot.slack.database_down import DATABASE_DOWN
from bot.store.models import ALL_SENDER_CODES
from tests.dbproxy import DatabaseProxy, pool_used_up
from tests.fakes import SPRING_SALE, FakeSlack, FakeWhatCounts
from tests.harness import CODE, SlackDriver, bot_env, in_process_bot

ACTIONS = ("command", "submit", "approve", "admin")


def said(response: httpx.Response) -> str:
    """What the person got, in a word."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if DATABASE_DOWN in response.text:
        return "database sentence"
    if ADMIN_TOO_SLOW in response.text:
        return "may still be made"
    if response.text == "":
        return "acknowledged"  # the form opened, the card posted, the click taken
    return "posting..." if '"response_action": "update"' in response.text else "answered"


@contextmanager
def slowed(proxy: DatabaseProxy, delay: float) -> Iterator[None]:
    proxy.slow(delay)
    try:
        yield
    finally:
        proxy.restore()


def measure(slack: SlackDriver, n: int, fault: Callable[[], AbstractContextManager[object]]
            ) -> dict[str, tuple[float, str]]:
    """Each action once under `fault` (its request made before): (seconds to the answer, what it said)."""
    request_id = slack.request("UREQ", campaign_name=f"bench-{n}")
    form = slack.open_form("UREQ")
    calls: dict[str, Callable[[], httpx.Response]] = {
        "command": lambda: slack.command("UREQ"),
        "submit": lambda: slack.submit("UREQ", {**form, "id": f"VSLOW{n}"}, message_name="Spring Sale",
                                       sender_code=CODE, campaign_name=f"slow-{n}", group_name=ALL_CONTACTS),
        "approve": lambda: slack.click("UAPP", "approve", request_id),
        "admin": lambda: slack.command("UADMIN", f"admin grant <@UNEW{n}|new> requester {CODE}"),
    }
    with fault():
        return {name: timed(call) for name, call in calls.items()}


def timed(call: Callable[[], httpx.Response]) -> tuple[float, str]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, said(response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delays", default="0,0.1,0.2,0.3", help="seconds each chunk is held, each way")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", help="write the table into this Markdown file (after <!-- slow-database -->)")
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, list[tuple[float, str]]]]] = []
    with tempfile.TemporaryDirectory() as tmp, database("postgresql", Path(tmp)) as db:
        db.allow_sends("UREQ", "UAPP")
        db.grant("UADMIN", "admin", ALL_SENDER_CODES)
        target = urlsplit(db.url)
        proxy = DatabaseProxy(target.hostname or "127.0.0.1", target.port or 5432)
        fake_slack, whatcounts = FakeSlack(), FakeWhatCounts()
        whatcounts.messages = [SPRING_SALE]
        proxied = db.url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        env = bot_env(proxied, fake_slack, whatcounts)
        try:
            with in_process_bot(env) as bot:
                slack = SlackDriver(bot.url, fake_slack)
                faults: list[tuple[str, Callable[[], AbstractContextManager[object]]]] = [
                    *((f"each round trip +{2 * float(d) * 1000:.0f} ms", partial(slowed, proxy, float(d)))
                      for d in args.delays.split(",")),
                    ("pool used up", partial(pool_used_up, bot.runtime.core.engine))]
                for label, fault in faults:
                    figures: dict[str, list[tuple[float, str]]] = {a: [] for a in ACTIONS}
                    for n in range(args.repeats):
                        for action, value in measure(slack, len(rows) * args.repeats + n, fault).items():
                            figures[action].append(value)
                        bot.settle(30)  # what was given up on has finished before the next round
                    rows.append((label, figures))
                    print(f"  {label}: " + "  ".join(f"{a} {_cell(figures[a])}" for a in ACTIONS), flush=True)
                proxy.restore()
                slack.close()
        finally:
            proxy.close()
            fake_slack.close()
            whatcounts.close()
    table = "\n".join([
        "| database | " + " | ".join(f"{a}: s (what the person got)" for a in ACTIONS) + " |",
        "|---|" + "---|" * len(ACTIONS),
        *(f"| {label} | " + " | ".join(_cell(figures[a]) for a in ACTIONS) + " |" for label, figures in rows)])
    print()
    print(table)
    if args.write:
        write_between(Path(args.write), "slow-database",
                      f"Run {datetime.now():%Y-%m-%d %H:%M} with `python -m bench.slow_database`:\n\n{table}")


def _cell(values: list[tuple[float, str]]) -> str:
    seconds = [s for s, _ in values]
    kinds = sorted({k for _, k in values})
    return f"{percentile(seconds, 50):.2f} (max {max(seconds):.2f}; {', '.join(kinds)})"


if __name__ == "__main__":
    main()
