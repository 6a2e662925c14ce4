"""What one person's Home tab shows, as data: requests waiting for them, their own recent ones,
their roles, and for admins each of their sender codes today and the sends whose outcome is unknown.

Plain queries over the session, on the database's clock; `bot.slack.home` draws it. Each list
holds at most `limit` entries and says how many more there are, so a view never outgrows Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from bot.requests.reading import RequestView, read_view
from bot.rules import grants
from bot.rules.sender_codes import SenderCodeRules, list_sender_codes, sends_today
from bot.store.engine import database_now
from bot.store.models import ALL_SENDER_CODES, Approval, Grant, Role, SendRequest, State

T = TypeVar("T")
LIMIT = 10  # entries per list


@dataclass(frozen=True)
class Capped(Generic[T]):
    """The first entries of a list, and how many more there are."""

    items: tuple[T, ...] = ()
    more: int = 0


@dataclass(frozen=True)
class CodeToday:
    """An administered sender code: its rules, sends so far today, and whether quiet hours are on now."""

    rules: SenderCodeRules
    sends_today: int
    quiet_now: bool


@dataclass(frozen=True)
class Overview:
    user_id: str
    waiting: Capped[RequestView] = field(default_factory=Capped)  # pending, theirs to approve, not yet approved
    recent: Capped[SendRequest] = field(default_factory=Capped)  # their own, newest first
    roles: dict[Role, frozenset[str]] = field(default_factory=dict)  # role -> scopes (a code or "*")
    codes: Capped[CodeToday] = field(default_factory=Capped)  # admins only
    unknown: Capped[SendRequest] = field(default_factory=Capped)  # admins only: outcome unknown
    scheduled: Capped[SendRequest] = field(default_factory=Capped)  # admins only: approved, waiting for their time

    @property
    def is_admin(self) -> bool:
        return bool(self.roles.get(Role.ADMIN))


def overview(sessions: sessionmaker[Session], user_id: str, limit: int = LIMIT,
             clock: Callable[[Session], datetime] = database_now, dry_run: bool = False) -> Overview:
    """`dry_run`: count today's dry runs against the caps, as the bot does in that mode."""
    with sessions() as session:
        now = clock(session)
        held = {role: frozenset(scopes) for role, scopes in grants.codes_by_role(session, user_id).items()}
        approvable = held.get(Role.APPROVER, frozenset())
        waiting = _capped(session, _waiting(user_id, approvable, now), limit) if approvable else Capped[str]()
        recent = _capped(session, select(SendRequest.id).where(SendRequest.requester_id == user_id)
                         .order_by(SendRequest.created_at.desc(), SendRequest.id), limit)
        admin = held.get(Role.ADMIN, frozenset())
        codes: Capped[CodeToday] = Capped()
        unknown = scheduled = Capped[str]()
        if admin:
            mine = [SenderCodeRules.from_row(row) for row in list_sender_codes(session)
                    if grants.covers(admin, row.code)]
            codes = Capped(tuple(_today(session, rules, now, dry_run) for rules in mine[:limit]),
                           max(0, len(mine) - limit))
            unknown = _capped(session, select(SendRequest.id).where(
                SendRequest.state == State.UNKNOWN, _codes_in(admin))
                .order_by(SendRequest.created_at.desc(), SendRequest.id), limit)
            scheduled = _capped(session, select(SendRequest.id).where(
                SendRequest.state == State.SCHEDULED, _codes_in(admin))
                .order_by(SendRequest.send_at, SendRequest.id), limit)
        waiting_views = tuple(v for i in waiting.items if (v := read_view(session, i)) is not None)
        return Overview(
            user_id, Capped(waiting_views, waiting.more), roles=held, codes=codes,
            recent=Capped(tuple(_rows(session, recent.items)), recent.more),
            unknown=Capped(tuple(_rows(session, unknown.items)), unknown.more),
            scheduled=Capped(tuple(_rows(session, scheduled.items)), scheduled.more))


def people_involved(sessions: sessionmaker[Session], view: RequestView) -> set[str]:
    """Whose Home tab shows this request: its requester, its approvers (given or possible), and
    for an unknown outcome or a send with a time (listed while it waits) the sender code's admins."""
    r = view.request
    roles = [Role.APPROVER] + ([Role.ADMIN] if r.state == State.UNKNOWN or r.send_at is not None else [])
    with sessions() as session:
        holders = session.scalars(select(Grant.user_id).where(
            Grant.role.in_(roles), Grant.sender_code.in_(grants.scopes_covering(r.sender_code))).distinct())
        return {r.requester_id, *view.approvers, *holders}


def _today(session: Session, rules: SenderCodeRules, now: datetime, dry_run: bool) -> CodeToday:
    used = sends_today(session, rules.code, now, rules.timezone, dry_run=dry_run)
    return CodeToday(rules, used, rules.quiet_hours is not None and rules.quiet_hours.contains(now))


def _waiting(user_id: str, approvable: Collection[str], now: datetime) -> Select[str]:
    mine = select(Approval.request_id).where(Approval.approver_id == user_id)
    stmt = select(SendRequest.id).where(SendRequest.state == State.PENDING, SendRequest.expires_at > now,
                                        _codes_in(approvable), SendRequest.id.not_in(mine))
    # The requester cannot approve their own request unless the sender code allows it.
    stmt = stmt.where((SendRequest.requester_id != user_id) | SendRequest.allow_self_approval.is_(True))
    return stmt.order_by(SendRequest.expires_at, SendRequest.id)


def _codes_in(scopes: Collection[str]) -> ColumnElement[bool]:
    return true() if ALL_SENDER_CODES in scopes else SendRequest.sender_code.in_(list(scopes))


def _capped(session: Session, stmt: Select[str], limit: int) -> Capped[str]:
    found = list(session.scalars(stmt.limit(limit + 1)))
    if len(found) <= limit:
        return Capped(tuple(found))
    total = int(session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    return Capped(tuple(found[:limit]), total - limit)


def _rows(session: Session, ids: tuple[str, ...]) -> list[SendRequest]:
    found = {r.id: r for r in session.scalars(select(SendRequest).where(SendRequest.id.in_(ids)))}
    return [found[i] for i in ids if i in found]
