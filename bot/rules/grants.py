"""Who may request, approve or administer sends: plain functions over the `grants` table.

A grant's scope is one sender code or `ALL_SENDER_CODES` ("*"), every sender code.
`covers` is the one way to ask whether scopes reach a code; `scope_name` says a scope in words.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, Exists, ScalarSelect, Select, distinct, func, select
from sqlalchemy.orm import Session

from bot.store import audit
from bot.store.models import ALL_SENDER_CODES, Grant, Role


def scopes_covering(sender_code: str) -> tuple[str, ...]:
    """The grant scopes that reach `sender_code`: the code itself, and every sender code."""
    return (sender_code, ALL_SENDER_CODES)


def covers(scopes: Collection[str], sender_code: str) -> bool:
    """True if grants with these scopes reach `sender_code`; asked of `ALL_SENDER_CODES`, only a grant for
    every sender code does."""
    return any(scope in scopes for scope in scopes_covering(sender_code))


def scope_name(scope: str) -> str:
    return "every sender code" if scope == ALL_SENDER_CODES else f"sender code {scope}"


def has_role(session: Session, user_id: str, role: Role, sender_code: str) -> bool:
    """True if the user holds `role` for this sender code or for every sender code."""
    return bool(session.scalar(select(holds(user_id, role, sender_code))))


def holds(user: str | ColumnElement[str], role: Role, sender_code: str) -> Exists:
    """`has_role` as an SQL expression, for a user id or a column of them, to ask within a larger query."""
    return select(Grant.id).where(Grant.user_id == user, Grant.role == role,
                                  Grant.sender_code.in_(scopes_covering(sender_code))).exists()


def holding(users: Select[str], role: Role, sender_code: str) -> ScalarSelect[int]:
    """How many of the users that `users` selects (one column of user ids) hold `role` for this sender
    code, as an SQL expression."""
    chosen = users.subquery()
    return (select(func.count(distinct(chosen.c[0]))).where(holds(chosen.c[0], role, sender_code))
            .scalar_subquery())


def codes_by_role(session: Session, user_id: str) -> dict[Role, set[str]]:
    """The scopes the user holds each role for, in one query (ask them with `covers`)."""
    return grants_by_user(session, user_id).get(user_id, {})


def grants_by_user(session: Session, user_id: str | None = None) -> dict[str, dict[Role, set[str]]]:
    """`codes_by_role` for every user (or only `user_id`), in one query."""
    stmt = select(Grant.user_id, Grant.role, Grant.sender_code)
    if user_id is not None:
        stmt = stmt.where(Grant.user_id == user_id)
    held: dict[str, dict[Role, set[str]]] = {}
    for user, role, code in session.execute(stmt):
        held.setdefault(user, {}).setdefault(role, set()).add(code)
    return held


def holders(session: Session, role: Role) -> list[str]:
    stmt = select(Grant.user_id).where(Grant.role == role).distinct().order_by(Grant.user_id)
    return list(session.scalars(stmt))


def admins_of(session: Session, sender_code: str) -> list[str]:
    """Who administers `sender_code`: its own admins and those of every sender code."""
    stmt = (select(Grant.user_id).where(Grant.role == Role.ADMIN, Grant.sender_code.in_(scopes_covering(sender_code)))
            .distinct().order_by(Grant.user_id))
    return list(session.scalars(stmt))


def approvers_of(session: Session, sender_code: str) -> list[str]:
    """Who may approve `sender_code`'s sends: its own approvers and those of every sender code."""
    stmt = (select(Grant.user_id).where(Grant.role == Role.APPROVER,
                                        Grant.sender_code.in_(scopes_covering(sender_code)))
            .distinct().order_by(Grant.user_id))
    return list(session.scalars(stmt))


def list_grants(session: Session) -> list[Grant]:
    return list(session.scalars(select(Grant).order_by(Grant.user_id, Grant.role, Grant.sender_code)))


def grant(session: Session, user_id: str, role: Role, sender_code: str, by: str) -> bool:
    """Add a grant for one sender code or for `ALL_SENDER_CODES`; False if it already existed. Audited."""
    exists = session.scalar(select(Grant.id).where(
        Grant.user_id == user_id, Grant.role == role, Grant.sender_code == sender_code))
    if exists is not None:
        return False
    session.add(Grant(user_id=user_id, role=role, sender_code=sender_code, granted_by=by))
    audit.record(session, "grant", by, sender_code=sender_code, user_id=user_id, role=str(role))
    return True


def revoke(session: Session, user_id: str, role: Role, sender_code: str, by: str) -> bool:
    """Remove a grant for one sender code or for `ALL_SENDER_CODES`; False if there was none. Audited."""
    found = session.scalar(select(Grant).where(
        Grant.user_id == user_id, Grant.role == role, Grant.sender_code == sender_code))
    if found is None:
        return False
    session.delete(found)
    audit.record(session, "revoke", by, sender_code=sender_code, user_id=user_id, role=str(role))
    return True
