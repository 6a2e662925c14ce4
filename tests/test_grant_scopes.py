"""A grant is for one sender code or for every sender code (ALL_SENDER_CODES), asked one way everywhere."""

from __future__ import annotations

import pytest

from bot.rules import grants
from bot.rules.admin import AdminError, parse_scope
from bot.store.models import ALL_SENDER_CODES, Role
from tests.harness import Database

CODE, OTHER = "5551234567", "12345"


@pytest.mark.parametrize(("scopes", "code", "covered"), [
    ({CODE}, CODE, True),
    ({CODE}, OTHER, False),
    ({ALL_SENDER_CODES}, OTHER, True),
    ({CODE, OTHER}, ALL_SENDER_CODES, False),  # every code, one by one, is still not "every code"
    ({ALL_SENDER_CODES}, ALL_SENDER_CODES, True),
    (set(), CODE, False),
])
def test_a_grant_covers_its_own_code_and_every_code_covers_all(scopes: set[str], code: str, covered: bool) -> None:
    assert grants.covers(scopes, code) is covered


@pytest.mark.parametrize(("scope", "code", "covered"), [
    (CODE, CODE, True), (CODE, OTHER, False), (ALL_SENDER_CODES, OTHER, True), (OTHER, ALL_SENDER_CODES, False),
])
def test_the_database_answers_as_covers_does(db: Database, scope: str, code: str, covered: bool) -> None:
    db.grant("U1", "approver", scope)
    with db.sessions() as session:
        assert grants.has_role(session, "U1", Role.APPROVER, code) is covered
        assert grants.covers(grants.codes_by_role(session, "U1")[Role.APPROVER], code) is covered
        assert not grants.has_role(session, "U1", Role.ADMIN, code)


def test_a_typed_scope_is_a_code_or_every_code() -> None:
    assert parse_scope(None) == parse_scope("*") == ALL_SENDER_CODES
    assert parse_scope("+1 (555) 123-4567") == "15551234567"
    with pytest.raises(AdminError, match="'12' is not a sender code"):
        parse_scope("12")
    assert [grants.scope_name(s) for s in (ALL_SENDER_CODES, CODE)] == ["every sender code", f"sender code {CODE}"]
