"""What the request form offers a user: the sender codes they may request here, and where a code stands.

Read from the rules cache, so opening the form costs no database read; the form only
offers, and `Lifecycle.draft` checks the submission against the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.requests.lifecycle import Refused
from bot.rules import grants, sending
from bot.rules.cache import RulesCache
from bot.rules.sender_codes import SenderCodeRules, sends_today
from bot.store.engine import utcnow
from bot.store.models import ALL_SENDER_CODES, Role


@dataclass(frozen=True)
class OnlyElsewhere:
    """Why the form offers nothing: the user's sender codes may be requested only in these channels."""

    channels: tuple[str, ...]  # channel IDs, sorted


@dataclass(frozen=True)
class NoneRegistered:
    """Why the form offers nothing: none of the sender codes the user may request is registered yet."""

    codes: tuple[str, ...]  # the codes their grants name, sorted; empty: a grant for every code


EmptyReason = OnlyElsewhere | NoneRegistered


@dataclass(frozen=True)
class FormChoices:
    """The sender codes a user may request in a channel, for the request form."""

    codes: list[SenderCodeRules]
    admin_codes: frozenset[str]  # the scopes where the user may override quiet hours
    empty: EmptyReason | None = None  # why `codes` is empty

    def get(self, code: str | None) -> SenderCodeRules | None:
        return next((c for c in self.codes if c.code == code), None)

    def may_override(self, code: str) -> bool:
        return grants.covers(self.admin_codes, code)


@dataclass(frozen=True)
class CodeStatus:
    """A sender code's rules and where it stands now, shown in the form once the code is chosen."""

    rules: SenderCodeRules
    sends_today: int
    quiet_now: str | None  # set while quiet hours are in effect


@dataclass
class RequestForm:
    sessions: sessionmaker[Session]
    cache: RulesCache
    clock: Callable[[], datetime] = utcnow
    dry_run: bool = False  # WHATCOUNTS_DRY_RUN: caps count dry runs only

    def choices(self, user_id: str, channel_id: str) -> FormChoices | Refused:
        """Refused if the user holds no requester grant; else the registered codes they may
        request in this channel (empty, with the reason, if none). From the rules cache: the
        form only offers, `draft` checks against the database."""
        known = self.cache.current()
        held = known.codes_by_role(user_id)
        requestable = held.get(Role.REQUESTER, frozenset())
        if not requestable:
            return Refused("no requester grant")
        mine = [c for c in known.codes if grants.covers(requestable, c.code)]
        here = [c for c in mine if sending.channel_problem(c, channel_id) is None]
        admin_codes = held.get(Role.ADMIN, frozenset())
        if here:
            return FormChoices(here, admin_codes)
        if mine:
            return FormChoices([], admin_codes, OnlyElsewhere(tuple(sorted({ch for c in mine for ch in c.channels}))))
        return FormChoices([], admin_codes, NoneRegistered(tuple(sorted(requestable - {ALL_SENDER_CODES}))))

    def code_status(self, rules: SenderCodeRules) -> CodeStatus:
        now = self.clock()
        used = 0
        if rules.daily_cap is not None:
            with self.sessions() as session:
                used = sends_today(session, rules.code, now, rules.timezone, dry_run=self.dry_run)
        return CodeStatus(rules, used, sending.quiet_problem(rules, now))

    def admins(self) -> list[str]:
        return self.cache.current().holders(Role.ADMIN)
