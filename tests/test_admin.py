"""`/sms-send admin ...` end to end: grants and sender codes from Slack, only for admins, all or nothing."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any

import pytest

from bot.rules import grants, sender_codes
from bot.slack.admin import MAX_REPLY, admin_text, fit, words
from bot.store.models import ALL_SENDER_CODES, Role, SenderCode
from tests.harness import CODE, Database, SlackDriver, run_cli

ADMIN, ADMIN2, CODE_ADMIN, OUTSIDER, NEW = "UADMIN", "UADMIN2", "UCODEADMIN", "UOUTSIDER", "U0NEWPERSON"
OTHER_CODE = "5559876543"


def say(slack: SlackDriver, user_id: str, text: str) -> str:
    """Run `/sms-send admin TEXT` as the user; the ephemeral reply."""
    response = slack.command(user_id, f"admin {text}".strip())
    assert response.status_code == 200, response.text
    return response.text


def state(db: Database) -> tuple[list[tuple[str, Role, str, str]], list[sender_codes.SenderCodeRules], int]:
    """Everything an admin command could change: grants, sender codes, and the audit trail's length."""
    with db.sessions() as session:
        held = [(g.user_id, g.role, g.sender_code, g.granted_by) for g in grants.list_grants(session)]
        codes = [sender_codes.SenderCodeRules.from_row(row) for row in sender_codes.list_sender_codes(session)]
    return held, codes, len(db.audit_rows())


def code_row(db: Database, code: str) -> SenderCode:
    with db.sessions() as session:
        row = session.get(SenderCode, code)
        assert row is not None
        return row


# --- the Slack text, without Slack ------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("grant <@U0NEW|new.person> requester", ["grant", "U0NEW", "requester"]),
    ("revoke <@W0NEW> admin *", ["revoke", "W0NEW", "admin", "*"]),
    ("sender-code set 5551234567 --label “Marketing US” --channels <#C0123ABC|mkt>,<#G0456DEF>",
     ["sender-code", "set", "5551234567", "--label", "Marketing US", "--channels", "C0123ABC,G0456DEF"]),
    ("set --label “Bob’s &amp; Co &lt;VIP&gt;”", ["set", "--label", "Bob's & Co <VIP>"]),
])
def test_slack_text_becomes_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_only_a_first_word_admin_is_an_admin_command() -> None:
    assert admin_text("ADMIN  grants") == "grants"
    assert admin_text("admin") == ""
    assert admin_text("administer") is None and admin_text("help admin") is None and admin_text("") is None


def test_a_long_reply_is_cut_at_a_line_and_says_so() -> None:
    reply = "*Sender codes*\n```" + "\n".join(f"line {n} " + "x" * 60 for n in range(200)) + "```"
    cut = fit(reply)
    assert len(cut) <= MAX_REPLY and cut.count("```") == 2
    assert "more lines not shown" in cut.splitlines()[-1]


# --- through the running bot ------------------------------------------------------------

def test_help_lists_the_subcommands_and_a_summary(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.sender_code(CODE, label="Marketing US")
    for text in ("", "help", "HELP"):
        reply = say(slack, ADMIN, text)
        for expected in ("/sms-send admin grant USER {requester,approver,admin} [CODE]",
                         "/sms-send admin revoke USER", "/sms-send admin grants", "/sms-send admin sender-code list",
                         "/sms-send admin sender-code set [--label L]", "--quiet-hours HH:MM-HH:MM|none",
                         f"{CODE}  Marketing US", "<@UADMIN>: admin for every sender code"):
            assert expected in reply, (text, expected)
    assert "Administer grants" in slack.command(ADMIN, "Admin").text

    for n in range(100):
        db.sender_code(f"55500{n:02d}", label=f"Code number {n}")
    listing = say(slack, ADMIN, "sender-code list")
    assert len(listing) <= MAX_REPLY and listing.count("```") == 2
    assert "more lines not shown" in listing and "55500" in listing


def test_an_admin_sets_a_sender_code_from_slack(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    reply = say(slack, ADMIN, "sender-code set 555-123-4567 --label “Marketing US” --groups “VIP, Newsletter” "
                              "--approvals 2 --daily-cap 5 --quiet-hours 21:00-08:00 --timezone America/New_York "
                              "--channels <#C0123ABC|marketing> --self-approval no")
    assert reply.startswith(f"sender code {CODE} added\n```{CODE}  Marketing US\n"), reply
    assert "daily cap 5, quiet hours 21:00-08:00 America/New_York" in reply
    row = code_row(db, CODE)
    assert (row.label, row.groups, row.approvals_required, row.allow_self_approval, row.daily_cap) == (
        "Marketing US", ["VIP", "Newsletter"], 2, False, 5)
    assert (row.quiet_start, row.quiet_end, row.timezone, row.channels) == (
        time(21), time(8), "America/New_York", ["C0123ABC"])
    event = db.audit_rows()[-1]
    assert (event.event, event.actor_id, event.sender_code) == ("sender_code", ADMIN, CODE)
    assert event.details["after"]["label"] == "Marketing US"

    # Slack escapes &, < and > in what it sends; the reply escapes them again.
    reply = say(slack, ADMIN, f"sender-code set {CODE} --daily-cap NONE --label “Bob’s &amp; Co &lt;VIP&gt;”")
    assert reply.startswith(f"sender code {CODE} updated: label 'Marketing US' -&gt; \"Bob's &amp; Co &lt;VIP&gt;\"; "
                            "daily_cap 5 -&gt; None"), reply
    row = code_row(db, CODE)
    assert (row.label, row.daily_cap) == ("Bob's & Co <VIP>", None)
    assert [e.actor_id for e in db.audit_rows() if e.event == "sender_code"] == [ADMIN, ADMIN]


def test_an_admin_grants_and_revokes_with_a_mention(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    granted = say(slack, ADMIN, "grant <@U0NEWPERSON|new.person> requester 555-123-4567")
    assert granted == f"<@{NEW}>: requester for sender code {CODE} granted"
    assert say(slack, ADMIN, f"grant <@{NEW}> requester {CODE}") == (
        f"<@{NEW}>: requester for sender code {CODE} already held")
    assert say(slack, ADMIN, f"grant {NEW} approver *") == f"<@{NEW}>: approver for every sender code granted"
    listing = say(slack, ADMIN, "grants")
    assert f"<@{NEW}>: requester for sender code {CODE} (by <@{ADMIN}>, " in listing
    assert f"<@{NEW}>: approver for every sender code (by <@{ADMIN}>, " in listing

    assert say(slack, ADMIN, f"revoke <@{NEW}|new.person> requester {CODE}") == (
        f"<@{NEW}>: requester for sender code {CODE} revoked")
    assert say(slack, ADMIN, f"revoke {NEW} requester {CODE}").endswith("was not held")
    grants, _, _ = state(db)
    assert (NEW, "requester", CODE, ADMIN) not in grants and (NEW, "approver", "*", ADMIN) in grants
    events = [(e.event, e.actor_id, e.details["user_id"], e.sender_code) for e in db.audit_rows()[1:]]
    assert events == [("grant", ADMIN, NEW, CODE), ("grant", ADMIN, NEW, "*"), ("revoke", ADMIN, NEW, CODE)]

    before = state(db)
    assert "'@new.person' is not a Slack user ID" in say(slack, ADMIN, "grant @new.person requester")
    assert state(db) == before


def test_a_non_admin_is_refused_and_only_the_attempt_is_recorded(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(OUTSIDER, "requester")
    db.grant(OUTSIDER, "approver")
    db.sender_code(CODE, label="Marketing US")
    before = state(db)
    attempts = ("", "grants", "sender-code list", f"grant {OUTSIDER} admin", f"revoke {ADMIN} admin",
                f"sender-code set {CODE} --approvals 1 --label Mine", "frobnicate --now")
    for text in attempts:
        reply = say(slack, OUTSIDER, text)
        assert reply == f"`/sms-send admin` is only for admins, and you hold no admin grant: ask <@{ADMIN}>.", text
    assert state(db)[:2] == before[:2]
    kept = db.audit_rows()[before[2]:]
    assert [(e.event, e.actor_id, e.details["action"], e.details["reason"], e.details["command"]) for e in kept] == [
        ("refused", OUTSIDER, "admin", "holds no admin grant", text) for text in attempts]


def test_a_code_scoped_admin_stays_within_their_code(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(CODE_ADMIN, "admin", CODE)
    assert say(slack, CODE_ADMIN, f"sender-code set {CODE} --label Ours").startswith(f"sender code {CODE} added")
    assert say(slack, CODE_ADMIN, f"grant {NEW} requester {CODE}").endswith("granted")
    assert f"<@{CODE_ADMIN}>: admin for sender code {CODE}" in say(slack, CODE_ADMIN, "grants")
    assert f"{CODE}  Ours" in say(slack, CODE_ADMIN, "sender-code list")

    before = state(db)
    attempts = (f"sender-code set {OTHER_CODE} --label Theirs", f"grant {NEW} requester {OTHER_CODE}",
                f"grant {NEW} requester", f"grant {NEW} requester *", f"grant {NEW} admin",
                f"revoke {ADMIN} admin", f"revoke {ADMIN} admin *")
    for text in attempts:
        reply = say(slack, CODE_ADMIN, text)
        assert reply.startswith(f"You administer sender code(s) {CODE} only;"), (text, reply)
        assert f"needs an admin grant for it. Ask <@{ADMIN}>. Nothing was changed." in reply, text
    assert state(db)[:2] == before[:2]
    kept = db.audit_rows()[before[2]:]
    assert [(e.event, e.actor_id, e.sender_code, e.details["command"]) for e in kept] == [
        ("refused", CODE_ADMIN, OTHER_CODE if OTHER_CODE in text else "*", text) for text in attempts]
    assert kept[0].details["reason"] == f"changing the policy needs an admin of sender code {OTHER_CODE}"


NOTHING = "Nothing was changed."
BAD_INPUT = [  # what the admin types, and every sentence of the reply that says what went wrong
    (f"sender-code set {CODE} --colour red",
     [f"unrecognized arguments: --colour red. {NOTHING}", "usage: /sms-send admin sender-code set"]),
    (f"sender-code set {CODE} --quiet-hours 22:00-07:00 --timezone Mars/Base",
     [f"sender code {CODE} was not changed:", "timezone: 'Mars/Base' is not a known time zone"]),
    (f"sender-code set {CODE} --approvals two", [f"argument --approvals: 'two' is not a whole number. {NOTHING}"]),
    (f"sender-code set {CODE} --daily-cap lots",
     [f"'lots' is not a whole number of sends per day, or none. {NOTHING}"]),
    (f"sender-code set {CODE} --approvals 0 --daily-cap 0 --channels general",
     [f"sender code {CODE} was not changed:", "approvals: must be a whole number, at least 1",
      "daily cap: must be a whole number of sends", "'general' is not a Slack channel ID"]),
    (f"sender-code set {CODE} --label “Marketing US", ["No closing quotation", "double quotes", NOTHING]),
    ("sender-code set 12 --label x", ["'12' is not a sender code: a short code (5-6 digits) or a US phone number.",
                                      NOTHING]),
    ("sender-code set * --label x", [f"needs one sender code, not `*`. {NOTHING}"]),
    (f"grant {NEW} owner", ["argument role: invalid choice: 'owner'", NOTHING, "usage: /sms-send admin grant USER"]),
    (f"grant {NEW} requester 12", ["'12' is not a sender code", NOTHING]),
    ("grant", [f"the following arguments are required: USER, role. {NOTHING}"]),
    ("launch", ["'launch' is not an admin command. These are:", "/sms-send admin sender-code set"]),
    (f"sender-code set {CODE} --label \"Marketing\u202eSU\"",  # what approvers would read as "Marketing US"
     [f"sender code {CODE} was not changed:",
      "label: contains an invisible or direction-changing character (U+202E RIGHT-TO-LEFT OVERRIDE)"]),
    (f"sender-code set {CODE} --groups VIP,Lea\u200bds",
     ["groups: group name 'Lea\\u200bds' contains an invisible or direction-changing character "
      "(U+200B ZERO WIDTH SPACE)"]),
]


def test_bad_input_gives_the_reasons_and_changes_nothing(db: Database, slack: SlackDriver) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.sender_code(CODE, label="Marketing US", daily_cap=3)
    before = state(db)
    for text, reasons in BAD_INPUT:
        reply = say(slack, ADMIN, text)
        for reason in reasons:
            assert reason in reply, (text, reason, reply)
    assert state(db) == before


def test_the_last_admin_for_every_code_cannot_be_revoked_from_slack(
        db: Database, slack: SlackDriver, env: dict[str, Any], tmp_path: Path) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.grant(CODE_ADMIN, "admin", CODE)
    before = state(db)
    for text in (f"revoke {ADMIN} admin", f"revoke <@{ADMIN}> admin *"):  # nobody changes their own grants
        assert say(slack, ADMIN, text).startswith("Nobody changes their own grants"), text
    assert state(db)[:2] == before[:2]

    assert say(slack, ADMIN, f"revoke {CODE_ADMIN} admin {CODE}").endswith("revoked")
    assert say(slack, ADMIN, f"grant {ADMIN2} admin").endswith("granted")
    assert say(slack, ADMIN2, f"revoke {ADMIN} admin").endswith("revoked")
    assert "only for admins" in say(slack, ADMIN, "grants")
    assert say(slack, ADMIN2, f"revoke {ADMIN2} admin").endswith(
        f"the operator can, on the command line (`sms-bot revoke {ADMIN2} admin --sender-code '*'`). "
        "Nothing was changed.")

    # the command line is the break glass
    done = run_cli("revoke", ADMIN2, "admin", "--sender-code", "*", env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"{ADMIN2}: admin for every sender code revoked"
    assert state(db)[0] == []
