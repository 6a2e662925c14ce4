"""A long read (an audit export piped into a pager nobody scrolls) never stops the bot from writing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.store import audit
from tests.harness import Database, SlackDriver


def test_requests_are_stored_and_sent_while_an_audit_export_sits_in_a_pager(
        db: Database, slack: SlackDriver, env: dict[str, str], tmp_path: Path) -> None:
    db.allow_sends("UREQ", "UAPP")
    with db.sessions.begin() as session:  # far more than a pipe holds, so the export blocks mid-read
        for n in range(3000):
            audit.record(session, "grant", f"U{n:08d}", sender_code="5551234567", role="requester", note="x" * 40)
    pager = subprocess.Popen([sys.executable, "-m", "bot.cli", "audit"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert pager.stdout is not None and pager.stdout.read(200)  # the export is reading, and nobody reads on
        request_id = slack.request("UREQ")
        assert slack.click("UAPP", "approve", request_id).status_code == 200
        slack.wait_outcome("4711")
        assert db.request(request_id).state == "sent"
        assert pager.poll() is None, "the export should still be open in its transaction"
    finally:
        pager.kill()
        pager.wait()


def test_a_read_session_left_open_does_not_hold_the_write_lock(db: Database) -> None:
    db.grant("UFIRST", "requester")
    with db.sessions() as reading:
        assert next(audit.query(reading, audit.AuditFilter())).event == "grant"  # the read transaction is open
        db.grant("UNEW", "requester")  # a write in another connection, while the read is open
    assert db.events() == ["grant", "grant"]
