"""The request form reads grants and sender codes from memory: how fresh that is, and why it cannot send more."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bot.store.models import ALL_SENDER_CODES
from tests.fakes import FakeSlack, FakeWhatCounts
from tests.harness import CODE, Database, bot_with, form_errors

REQUESTER, APPROVER, ADMIN = "UREQUESTER", "UAPPROVER", "UADMIN"
NO_ACCESS = "You don't have access to request SMS sends"


def policy_version(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT version FROM policy_version WHERE id = 1")).scalar_one())


def test_every_change_to_grants_or_sender_codes_moves_the_version_whoever_makes_it(db: Database) -> None:
    statements = [
        "INSERT INTO sender_codes (code, label, approvals_required, allow_self_approval, groups, channels) "
        "VALUES ('555', '', 1, false, '[]', '[]')",
        "UPDATE sender_codes SET daily_cap = 3 WHERE code = '555'",
        "INSERT INTO grants (user_id, role, sender_code, granted_by, granted_at) "
        "VALUES ('U1', 'requester', '555', 'psql', CURRENT_TIMESTAMP)",
        "UPDATE grants SET role = 'approver' WHERE user_id = 'U1'",
        "DELETE FROM grants WHERE user_id = 'U1'",
        "DELETE FROM sender_codes WHERE code = '555'",
    ]
    seen = [policy_version(db)]
    for statement in statements:  # as an operator's own SQL would, each in its own transaction
        with db.engine.begin() as connection:
            connection.execute(text(statement))
        seen.append(policy_version(db))
        assert seen[-1] > seen[-2], statement
    with db.engine.begin() as connection:  # other tables leave it alone
        connection.execute(text("INSERT INTO audit_events (at, event, actor_id, details) "
                                "VALUES (CURRENT_TIMESTAMP, 'test', 'U1', '{}')"))
    assert policy_version(db) == seen[-1]


def test_a_grant_made_elsewhere_reaches_the_form_once_the_cache_checks_again(
        db: Database, env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path) -> None:
    with bot_with(env, tmp_path, fake_slack, POLICY_CACHE_SECONDS="1") as (_bot, slack):
        assert NO_ACCESS in slack.command(REQUESTER).text  # now cached: no grants
        db.allow_sends(REQUESTER, APPROVER)  # as `sms-bot grant` or another replica would
        fake_slack.wait_until(lambda: slack.command(REQUESTER).text == "", what="the form, once the grant is seen")


def test_an_admins_change_in_slack_shows_at_once_and_a_stale_form_cannot_send(
        db: Database, env: dict[str, str], fake_slack: FakeSlack, fake_whatcounts: FakeWhatCounts,
        tmp_path: Path) -> None:
    db.grant(ADMIN, "admin", ALL_SENDER_CODES)
    db.sender_code(CODE)
    with bot_with(env, tmp_path, fake_slack, POLICY_CACHE_SECONDS="600") as (_bot, slack):
        assert NO_ACCESS in slack.command(REQUESTER).text
        reply = slack.command(ADMIN, f"admin grant <@{REQUESTER}> requester {CODE}").text
        assert "granted" in reply, reply
        view = slack.open_form(REQUESTER)  # this process made the change: no wait

        db.revoke(REQUESTER, "requester")  # elsewhere: this process's form still offers the code
        assert slack.open_form(REQUESTER)["blocks"] == view["blocks"]
        response = slack.submit(REQUESTER, view, message_name="Spring Sale", sender_code=CODE,
                                campaign_name="Spring", group_name="*")
        assert form_errors(response) == {
            "sender_code": f"You have no grant to request sends for sender code {CODE}."}
        assert fake_slack.calls("chat.postMessage") == [] and db.requests() == []
        assert fake_whatcounts.posts() == []
