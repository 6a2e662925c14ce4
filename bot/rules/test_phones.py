"""Each person's own phone for test sends, which only admins of every sender code register.

A test send goes to the clicker's registered phone and nowhere else, so registering a phone is
what decides who can be texted without an approval: nobody registers their own (see
`bot.rules.admin`), and a phone is a number checked as E.164. The audit trail keeps phones
masked (`mask`); the full number is only in `test_phones`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store import audit
from bot.store.engine import utcnow
from bot.store.models import TestPhone

E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # a country code and number: 7 to 15 digits in all
_SEPARATORS = re.compile(r"[\s().-]")  # what people write between the digits; dropped before the check
_TEL_LINK = re.compile(r"<tel:([^|>]*)(?:\|[^>]*)?>")  # a number a chat client turned into a link


class PhoneError(ValueError):
    """Not a phone number the bot can text: the message says what is expected."""


def parse_phone(raw: str) -> str:
    """`raw` as E.164 (`+15551234567`); spaces, dashes, dots and brackets between digits are dropped."""
    linked = _TEL_LINK.fullmatch(raw.strip())
    phone = _SEPARATORS.sub("", linked[1] if linked else raw.strip())
    if not E164.fullmatch(phone):
        raise PhoneError(f"{raw!r} is not a phone number in E.164 form: a + and the country code, then the number, "
                         "7 to 15 digits in all, e.g. +15551234567.")
    return phone


def mask(phone: str) -> str:
    """The phone with all but its last four digits hidden: `+•••••••4567`."""
    return "+" + "•" * max(0, len(phone) - 5) + phone[-4:]


def hide(text: str, phone: str) -> str:
    """`text` with `phone` masked wherever it appears, with or without its +."""
    return text.replace(phone, mask(phone)).replace(phone[1:], mask(phone))


def phone_of(session: Session, user_id: str, *, lock: bool = False) -> str | None:
    """The user's test phone; `lock` holds its row until the transaction ends (their test sends queue)."""
    stmt = select(TestPhone.phone).where(TestPhone.user_id == user_id)
    return session.scalar(stmt.with_for_update() if lock else stmt)


def list_test_phones(session: Session) -> Sequence[TestPhone]:
    return session.scalars(select(TestPhone).order_by(TestPhone.user_id)).all()


def set_test_phone(session: Session, user_id: str, phone: str, by: str) -> bool:
    """Register (or replace) the user's test phone, already parsed; False if it was already that. Audited."""
    row = session.get(TestPhone, user_id)
    if row is not None and row.phone == phone:
        return False
    if row is None:
        session.add(TestPhone(user_id=user_id, phone=phone, set_by=by))
    else:
        row.phone, row.set_by, row.set_at = phone, by, utcnow()
    audit.record(session, "test_phone", by, user_id=user_id, action="set", phone=mask(phone))
    return True


def remove_test_phone(session: Session, user_id: str, by: str) -> bool:
    """Forget the user's test phone; False if there was none. Audited."""
    row = session.get(TestPhone, user_id)
    if row is None:
        return False
    session.delete(row)
    audit.record(session, "test_phone", by, user_id=user_id, action="remove", phone=mask(row.phone))
    return True
