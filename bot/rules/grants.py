"""Who may request, approve or administer sends: plain functions over the `grants` table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store import audit
from bot.store.models import ALL_SENDER_CODES, Grant, Role


def has_role(session: Session, user_id: str, role: Role, sender_code: str) -> bool:
    """True if the user holds `role` for this sender code or for every sender code."""
    stmt = select(Grant.id).where(
        Grant.user_id == user_id, Grant.role == role,
        Grant.sender_code.in_((sender_code, ALL_SENDER_CODES)),
    ).limit(1)
    return session.scalar(stmt) is not None


def codes_by_role(session: Session, user_id: str) -> dict[Role, set[str]]:
    """The sender codes the user holds each role for, in one query; `*` in a set means every code."""
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


def list_grants(session: Session) -> list[Grant]:
    return list(session.scalars(select(Grant).order_by(Grant.user_id, Grant.role, Grant.sender_code)))


def grant(session: Session, user_id: str, role: Role, sender_code: str | None, by: str) -> bool:
    """Add a grant; False if it already existed. Audited."""
    code = sender_code or ALL_SENDER_CODES
    exists = session.scalar(select(Grant.id).where(
        Grant.user_id == user_id, Grant.role == role, Grant.sender_code == code))
    if exists is not None:
        return False
    session.add(Grant(user_id=user_id, role=role, sender_code=code, granted_by=by))
    audit.record(session, "grant", by, sender_code=code, user_id=user_id, role=str(role))
    return True


def revoke(session: Session, user_id: str, role: Role, sender_code: str | None, by: str) -> bool:
    """Remove a grant; False if there was none. Audited."""
    code = sender_code or ALL_SENDER_CODES
    found = session.scalar(select(Grant).where(
        Grant.user_id == user_id, Grant.role == role, Grant.sender_code == code))
    if found is None:
        return False
    session.delete(found)
    audit.record(session, "revoke", by, sender_code=code, user_id=user_id, role=str(role))
    return True
