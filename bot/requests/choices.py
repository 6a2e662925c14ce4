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
from bot.rules import sending
from bot.rules.cache import PolicyCache
from bot.rules.sender_codes import SenderCodeSettings, sends_today
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

    codes: list[SenderCodeSettings]
    admin_codes: frozenset[str]  # where the user may override quiet hours; `*`: everywhere
    empty: EmptyReason | None = None  # why `codes` is empty

    def get(self, code: str | None) -> SenderCodeSettings | None:
        return next((c for c in self.codes if c.code == code), None)

    def may_override(self, code: str) -> bool:
        return code in self.admin_codes or ALL_SENDER_CODES in self.admin_codes


@dataclass(frozen=True)
class CodeStatus:
    """A sender code's policy and where it stands now, shown in the form once the code is chosen."""

    settings: SenderCodeSettings
    sends_today: int
    quiet_now: str | None  # set while quiet hours are in effect


@dataclass
class RequestForm:
    sessions: sessionmaker[Session]
    cache: PolicyCache
    clock: Callable[[], datetime] = utcnow
    dry_run: bool = False  # WHATCOUNTS_DRY_RUN: caps count dry runs only

    def choices(self, user_id: str, channel_id: str) -> FormChoices | Refused:
        """Refused if the user holds no requester grant; else the registered codes they may
        request in this channel (empty, with the reason, if none). From the policy cache: the
        form only offers, `draft` checks against the database."""
        policy = self.cache.current()
        held = policy.codes_by_role(user_id)
        requestable = held.get(Role.REQUESTER, frozenset())
        if not requestable:
            return Refused("no requester grant")
        mine = [c for c in policy.codes if c.code in requestable or ALL_SENDER_CODES in requestable]
        here = [c for c in mine if sending.channel_problem(c, channel_id) is None]
        admin_codes = held.get(Role.ADMIN, frozenset())
        if here:
            return FormChoices(here, admin_codes)
        if mine:
            return FormChoices([], admin_codes, OnlyElsewhere(tuple(sorted({ch for c in mine for ch in c.channels}))))
        return FormChoices([], admin_codes, NoneRegistered(tuple(sorted(requestable - {ALL_SENDER_CODES}))))

    def code_status(self, settings: SenderCodeSettings) -> CodeStatus:
        now = self.clock()
        used = 0
        if settings.daily_cap is not None:
            with self.sessions() as session:
                used = sends_today(session, settings.code, now, settings.timezone, dry_run=self.dry_run)
        return CodeStatus(settings, used, sending.quiet_problem(settings, now))

    def admins(self) -> list[str]:
        return self.cache.current().holders(Role.ADMIN)
