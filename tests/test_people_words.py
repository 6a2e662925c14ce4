"""What requesters and approvers read: cards safe to post and readable without sight, local times, plain words."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from bot.rules import grants
from bot.store.models import ALL_SENDER_CODES
from tests.fakes import FakeSlack, FakeWhatCounts, WhatCountsReply
from tests.harness import CODE, Database, SlackDriver, bot_with, request_id_of, run_cli

REQUESTER, APPROVER = "UREQUESTER", "UAPPROVER"


def buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}


def test_the_card_and_its_outcome_are_posted_without_link_previews_and_read_well_without_the_card(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP customers"])
    request_id = slack.request(REQUESTER, campaign_name="Spring 2026", group_name="VIP customers")
    card = fake_slack.calls("chat.postMessage")[0]
    assert (card["unfurl_links"], card["unfurl_media"]) == (False, False)
    assert card["text"] == (f"SMS send waiting for approval: campaign “Spring 2026” (message Spring Sale) to group "
                            f"VIP customers of sender code {CODE}, requested by <@{REQUESTER}>. Request {request_id}. "
                            f"Asked to approve: <@{APPROVER}>.")
    labels = {action: button["accessibility_label"] for action, button in buttons(card).items()}
    assert labels == {"approve": "Approve and send: campaign Spring 2026 to group VIP customers",
                      "approve_with_note": "Approve with a note: campaign Spring 2026 to group VIP customers",
                      "reject": "Reject this request: campaign Spring 2026 to group VIP customers",
                      "cancel": "Cancel request: campaign Spring 2026 to group VIP customers",
                      "withdraw": "Withdraw this request (admins): campaign Spring 2026 to group VIP customers",
                      "test_send": "Send a test to my own phone: campaign Spring 2026"}

    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("submitted")
    assert (outcome["unfurl_links"], outcome["unfurl_media"]) == (False, False)
    assert outcome["text"].startswith(
        f"<@{REQUESTER}>, <@{APPROVER}>: :white_check_mark: *SMS send submitted to WhatCounts* · ")
    updated = slack.wait_card(request_id, "submitted")
    assert updated["text"].startswith("SMS send submitted to WhatCounts: campaign “Spring 2026”")
    assert "approve" not in json.dumps(updated["blocks"])


def test_a_long_campaign_name_keeps_the_button_labels_within_slacks_limit(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    slack.request(REQUESTER, campaign_name="C" * 100)
    card = fake_slack.calls("chat.postMessage")[0]
    assert all(len(b["accessibility_label"]) == 75 and b["accessibility_label"].endswith("…")
               for b in buttons(card).values())
    assert request_id_of(card) in card["text"]


def local(moment: datetime) -> str:
    """How Slack is asked to show a moment in each reader's zone, with UTC where it cannot."""
    stamp = int(moment.replace(tzinfo=UTC).timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} at {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def test_times_on_the_card_and_in_the_thread_show_in_each_readers_own_zone(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    card = fake_slack.calls("chat.postMessage")[0]
    assert f"Expires {local(db.request(request_id).expires_at)}." in json.dumps(card["blocks"], ensure_ascii=False)

    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("submitted")
    finished = db.request(request_id).finished_at
    assert finished is not None
    assert f" · finished {local(finished)}\n" in outcome["text"]


def test_a_rejection_says_when_in_the_readers_zone(db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER)
    assert slack.reject(APPROVER, request_id, "Not this week").text == ""
    card = slack.wait_card(request_id, "Rejected by")
    finished = db.request(request_id).finished_at
    assert finished is not None
    assert (f"Rejected by <@{APPROVER}>, {local(finished)}: “Not this week”"
            in json.dumps(card["blocks"], ensure_ascii=False))


def card_text(card: dict[str, Any]) -> str:
    return json.dumps(card["blocks"], ensure_ascii=False)


def test_someone_without_access_is_told_whom_to_ask_not_a_command(db: Database, slack: SlackDriver) -> None:
    db.grant("UADMIN", "admin", ALL_SENDER_CODES)
    answer = slack.command("UNEWCOMER").text
    assert "ask <@UADMIN> (admins of the bot)" in answer and "sms-bot" not in answer


def test_without_any_admin_the_newcomer_and_the_would_be_admin_are_told_to_ask_who_runs_the_bot(
        db: Database, slack: SlackDriver) -> None:
    for text in ("", "admin"):
        answer = slack.command("UNEWCOMER", text).text
        assert "ask the people who run this bot" in answer and "sms-bot" not in answer, answer


def test_an_unknown_outcome_names_the_sender_codes_admins_a_few_by_name(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    admins = [f"UADMIN{i}" for i in range(6)]
    db.grant(admins[0], "admin", ALL_SENDER_CODES)
    for admin in admins[1:]:
        db.grant(admin, "admin", CODE)
    db.grant("UOTHERADMIN", "admin", "OTHERCODE")  # administers another code: not whom to ask
    fake_whatcounts.reply = WhatCountsReply(200, {"id": 1, "status": "submitted"}, held=True)  # never in time
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_TIMEOUT="0.5") as (_bot, slack):
        request_id = slack.request(REQUESTER)
        slack.click(APPROVER, "approve", request_id)
        outcome = slack.wait_outcome("Outcome unknown")
        card = card_text(slack.wait_card(request_id, "outcome unknown"))
    named = ", ".join(f"<@{a}>" for a in admins[:5])
    for text in (outcome["text"], card):
        assert f"tell an admin of sender code {CODE} ({named} and 1 more), who can record the answer" in text
        assert "sms-bot" not in text and "UOTHERADMIN" not in text


def test_refused_credentials_are_explained_without_the_bots_settings(
        db: Database, slack: SlackDriver, fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    fake_whatcounts.reply = WhatCountsReply(401, {"error": "Unauthorized", "status": "Unauthorized",
                                                  "statusCode": 401})
    request_id = slack.request(REQUESTER)
    slack.click(APPROVER, "approve", request_id)
    outcome = slack.wait_outcome("HTTP 401")["text"]
    assert "ask the people who run this bot to fix its WhatCounts login" in outcome
    assert "WHATCOUNTS_" not in outcome


def test_the_card_shows_only_rows_with_something_to_say(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    slack.request(REQUESTER, description=None)
    bare = card_text(fake_slack.calls("chat.postMessage")[0])
    assert '"Description: "' not in bare and '"Quiet hours: "' not in bare and '"text": "none"' not in bare

    later = datetime.now(UTC).replace(second=0, microsecond=0)
    db.sender_code(CODE, quiet_start=(later + timedelta(hours=5)).time(), quiet_end=(later + timedelta(hours=7)).time(),
                   timezone="UTC")
    slack.request(REQUESTER, campaign_name="Autumn", description="For the autumn list")
    full = card_text(fake_slack.calls("chat.postMessage")[1])
    assert '"Description: "' in full and "For the autumn list" in full and '"Quiet hours: "' in full


def test_cancel_is_only_the_requests_button_and_the_form_is_discarded_by_name(
        db: Database, slack: SlackDriver, fake_slack: FakeSlack) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    form = slack.open_form(REQUESTER)
    assert form["close"]["text"] == "Discard" and form["submit"]["text"] == "Request approval"
    request_id = slack.request(REQUESTER)
    assert buttons(fake_slack.calls("chat.postMessage")[0])["cancel"]["text"]["text"] == "Cancel request"
    assert "*Cancel request*" in slack.command(REQUESTER, "help").text
    slack.click(REQUESTER, "cancel", request_id)
    slack.wait_card(request_id, f"Cancelled by <@{REQUESTER}>")


def test_a_dry_run_outcome_reads_as_what_would_have_been_sent(
        db: Database, env: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_whatcounts: FakeWhatCounts) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    with bot_with(env, tmp_path, fake_slack, WHATCOUNTS_DRY_RUN="1") as (_bot, slack):
        request_id = slack.request(REQUESTER, campaign_name="Spring 2026", description="Promo & more")
        slack.click(APPROVER, "approve", request_id)
        outcome = slack.wait_outcome("DRY RUN")["text"]
    assert ("DRY RUN: WhatCounts was not called. It would have sent the SMS message “Spring Sale” from sender code "
            f"{CODE} to ALL CONTACTS of the sender code, as the campaign “Spring 2026”, described as "
            "“Promo &amp; more”.") in outcome
    assert "POST" not in outcome and "/rest/" not in outcome
    assert fake_whatcounts.posts() == []


def send_to(view: dict[str, Any]) -> dict[str, Any]:
    return next(b["element"] for b in view["blocks"] if b.get("block_id") == "group_name")


def test_all_contacts_comes_after_the_codes_groups_and_is_never_chosen_for_you(
        db: Database, slack: SlackDriver) -> None:
    db.sender_code(CODE, groups=["VIP customers", "Leads"])
    db.sender_code("5550000000", groups=["Staff"])
    db.grant(REQUESTER, "requester", ALL_SENDER_CODES)
    view = slack.open_form(REQUESTER)
    assert not any(b.get("block_id") == "group_name" for b in view["blocks"])  # not All contacts alone

    redrawn = slack.choose_sender_code(REQUESTER, view, CODE)
    options = send_to(redrawn)["options"]
    assert [o["value"] for o in options] == ["VIP customers", "Leads", "*"]
    assert options[-1]["text"]["text"] == "All contacts of the sender code"
    assert "initial_option" not in send_to(redrawn)


def test_with_one_sender_code_the_code_is_chosen_for_you_but_the_audience_is_not(
        db: Database, slack: SlackDriver) -> None:
    db.allow_sends(REQUESTER, APPROVER, groups=["VIP customers"])
    view = slack.open_form(REQUESTER)
    assert [o["value"] for o in send_to(view)["options"]] == ["VIP customers", "*"]
    assert "initial_option" not in send_to(view)


# --- the command line, as careful as Slack --------------------------------------------------

def grants_held(db: Database) -> list[tuple[str, str, str]]:
    with db.sessions() as session:
        return [(g.user_id, g.role, g.sender_code) for g in grants.list_grants(session)]


@pytest.mark.parametrize("user_id", ["U1", "alice", "u012abcdef", "<@U012ABCDEF>", "C012ABCDEF"])
def test_the_command_line_refuses_what_slacks_admin_command_refuses_as_a_user_id(
        db: Database, env: dict[str, str], tmp_path: Path, user_id: str) -> None:
    for args in (("grant", user_id, "requester", "--sender-code", CODE),
                 ("revoke", user_id, "requester", "--sender-code", CODE),
                 ("resolve", "abc123", "sent", "--admin", user_id, "--note", "x"),
                 ("audit", "--user", user_id)):
        done = run_cli(*args, env=env, cwd=tmp_path)
        assert done.returncode == 2 and f"{user_id!r} is not a Slack user ID" in done.stderr, args
    assert grants_held(db) == [] and db.audit_rows() == []


def test_a_grant_for_every_sender_code_must_be_asked_for_by_name(
        db: Database, env: dict[str, str], tmp_path: Path) -> None:
    for verb in ("grant", "revoke"):
        unsaid = run_cli(verb, "U012ABCDEF", "admin", env=env, cwd=tmp_path)
        assert unsaid.returncode == 2
        assert (f"say which sender code: --sender-code CODE, or --sender-code '*' to {verb} it for every sender code. "
                "Nothing was changed.") in unsaid.stderr
    assert grants_held(db) == [] and db.audit_rows() == []
    done = run_cli("grant", "U012ABCDEF", "admin", "--sender-code", "*", env=env, cwd=tmp_path)
    assert done.stdout.strip() == "U012ABCDEF: admin for every sender code granted"
    assert grants_held(db) == [("U012ABCDEF", "admin", ALL_SENDER_CODES)]


def test_the_version_is_the_installed_packages(tmp_path: Path) -> None:
    done = run_cli("--version", env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"sms-bot {version('sms-send-bot')}\n")


def test_grants_and_the_audit_table_have_headers_and_the_details_are_json(
        db: Database, slack: SlackDriver, env: dict[str, str], tmp_path: Path) -> None:
    db.allow_sends(REQUESTER, APPROVER)
    request_id = slack.request(REQUESTER, campaign_name="Spring 2026", description="Promo & <more>")
    listing = run_cli("grants", env=env, cwd=tmp_path).stdout.splitlines()
    assert listing[0].split("\t") == ["USER", "ROLE", "SENDER CODE", "GRANTED BY", "GRANTED AT"]
    assert [line.split("\t")[:3] for line in listing[1:]] == [[APPROVER, "approver", CODE],
                                                             [REQUESTER, "requester", CODE]]

    table = run_cli("audit", "--request", request_id, env=env, cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["AT", "(UTC)", "EVENT", "BY", "REQUEST", "SENDER", "CODE", "DETAILS"]
    [requested] = table[1:]
    assert requested.split()[1:5] == ["requested", REQUESTER, request_id, CODE]
    details = json.loads(requested[requested.index("{"):])
    [event] = [e for e in db.audit_rows() if e.request_id == request_id]
    assert details == event.details and details["campaign_name"] == "Spring 2026"
