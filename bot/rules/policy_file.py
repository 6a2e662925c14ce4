"""Policy as code: sender codes and grants as one YAML document, exported and imported whole.

The document is the full desired state: importing it removes sender codes and grants that
are not in it. It is checked completely before anything changes (one error lists every
problem with its path, e.g. `sender_codes[1].daily_cap`), and applied in the caller's
transaction, so it takes effect entirely or not at all. Exporting is deterministic, so
an exported file imports as "no changes" and exports again byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy.orm import Session

from bot.problems import Problems
from bot.rules import grants, sender_codes, test_phones
from bot.rules.sender_codes import normalize_sender_code
from bot.store.models import ALL_SENDER_CODES, Role

VERSION = 1
HEADER = """\
# sms-send policy: sender codes and who may request, approve and administer sends.
# `sms-bot policy import FILE` makes the bot's policy exactly this file: sender codes
# and grants missing from it are removed; so are test phones, if `test_phones` is given.
"""
TOP_KEYS = ("version", "sender_codes", "grants", "test_phones")
CODE_KEYS = ("code", *sender_codes.FIELDS)
GRANT_KEYS = ("user", "role", "sender_code")
PHONE_KEYS = ("user", "phone")
SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,31}")
ROLES = tuple(r.value for r in Role)


class PolicyError(Problems):
    """The document cannot be imported; `problems` has one line per problem, with its path."""

    heading = "the policy was not imported:"


@dataclass(frozen=True)
class GrantRow:
    user: str
    role: Role
    sender_code: str  # a normalized code, or ALL_SENDER_CODES


@dataclass(frozen=True)
class Policy:
    sender_codes: tuple[sender_codes.SenderCodeRules, ...]
    grants: tuple[GrantRow, ...]
    # (user, E.164 phone); None: the document has no `test_phones`, and they are left as they are
    test_phones: tuple[tuple[str, str], ...] | None = None


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)  # sender codes
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    granted: list[GrantRow] = field(default_factory=list)
    revoked: list[GrantRow] = field(default_factory=list)
    phones_set: list[str] = field(default_factory=list)  # users
    phones_removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any((self.added, self.updated, self.removed, self.granted, self.revoked, self.phones_set,
                    self.phones_removed))

    def lines(self) -> list[str]:
        if not self.changed:
            return ["no changes: the bot's policy already matches the file"]
        out = [f"sender code {code} {verb}" for verb, codes in
               (("added", self.added), ("updated", self.updated), ("removed", self.removed)) for code in codes]
        out += [f"{verb} {g.user} {g.role} for {grants.scope_name(g.sender_code)}" for verb, granted in
                (("granted", self.granted), ("revoked", self.revoked)) for g in granted]
        out += [f"test phone of {user} {verb}" for verb, users in
                (("set", self.phones_set), ("removed", self.phones_removed)) for user in users]
        return out


# --- export ------------------------------------------------------------------------------

def read_policy(session: Session) -> Policy:
    codes = tuple(sender_codes.SenderCodeRules.from_row(row) for row in sender_codes.list_sender_codes(session))
    grant_rows = tuple(GrantRow(g.user_id, g.role, g.sender_code) for g in grants.list_grants(session))
    phones = tuple((p.user_id, p.phone) for p in test_phones.list_test_phones(session))
    return Policy(codes, grant_rows, phones)


def export_policy(session: Session) -> str:
    """The current policy as YAML, in a stable order (codes by code, grants by user, role, code)."""
    policy = read_policy(session)
    document = {
        "version": VERSION,
        "sender_codes": [{"code": s.code, **s.fields()} for s in policy.sender_codes],
        "grants": [{"user": g.user, "role": g.role.value, "sender_code": g.sender_code}
                   for g in sorted(policy.grants, key=lambda g: (g.user, g.role, g.sender_code))],
        "test_phones": [{"user": user, "phone": phone} for user, phone in policy.test_phones or ()],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False,
                                   width=1000)


# --- import ------------------------------------------------------------------------------

def _unknown_keys(item: dict[Any, Any], allowed: tuple[str, ...], path: str, problems: list[str]) -> None:
    for key in item:
        if key not in allowed:
            problems.append(f"{path}.{key}: unknown key; expected one of {', '.join(allowed)}"
                            if path else f"{key}: unknown key; expected one of {', '.join(allowed)}")


def _list(document: dict[str, Any], key: str, problems: list[str]) -> list[Any]:
    if key not in document:
        problems.append(f"{key}: missing; write `{key}: []` to have none")
        return []
    value = document[key]
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{key}: must be a list")
        return []
    return value


def _mappings(document: dict[str, Any], key: str, keys: str, problems: list[str]
              ) -> Iterator[tuple[str, dict[Any, Any]]]:
    """Each entry of the list `key` that is a mapping, with its path (`grants[2]`); the others are problems."""
    for i, item in enumerate(_list(document, key, problems)):
        path = f"{key}[{i}]"
        if isinstance(item, dict):
            yield path, item
        else:
            problems.append(f"{path}: must be a mapping with {keys}")


def parse_policy(text: str) -> Policy:
    """Check the whole document; PolicyError listing every problem found."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"not valid YAML: {exc}"]) from exc
    if document is None:
        raise PolicyError(["the file is empty; an empty policy would remove every sender code and grant, "
                           "so write `sender_codes: []` and `grants: []` if that is what you want"])
    if not isinstance(document, dict):
        raise PolicyError(["the document must be a mapping with sender_codes and grants"])
    problems: list[str] = []
    _unknown_keys(document, TOP_KEYS, "", problems)
    if document.get("version", VERSION) != VERSION:
        problems.append(f"version: this bot reads version {VERSION} (got {document.get('version')!r})")

    codes: list[sender_codes.SenderCodeRules] = []
    seen_codes: dict[str, str] = {}
    for path, item in _mappings(document, "sender_codes", "code, label, approvals, ...", problems):
        _unknown_keys(item, CODE_KEYS, path, problems)
        if "code" not in item:
            problems.append(f"{path}.code: missing")
            continue
        code = item["code"]
        values = {key: value for key, value in item.items() if key in sender_codes.FIELDS}
        rules, errors = sender_codes.parse_rules(code if isinstance(code, str) else repr(code), values)
        if not isinstance(code, str):
            errors["code"] = f"write the sender code in quotes, e.g. code: '5551234567' (got {code!r})"
        problems += [f"{path}.{key}: {problem}" for key, problem in errors.items()]
        normalized = normalize_sender_code(code) if isinstance(code, str) else None
        if normalized in seen_codes:
            problems.append(f"{path}.code: sender code {normalized} is also {seen_codes[normalized]}")
        elif normalized is not None:
            seen_codes[normalized] = path
        if rules is not None:
            codes.append(rules)

    grants: list[GrantRow] = []
    seen_grants: dict[GrantRow, str] = {}
    for path, item in _mappings(document, "grants", "user, role and sender_code", problems):
        before = len(problems)
        _unknown_keys(item, GRANT_KEYS, path, problems)
        user, role, raw_code = item.get("user"), item.get("role"), item.get("sender_code")
        if not isinstance(user, str) or not SLACK_USER.fullmatch(user):
            problems.append(f"{path}.user: must be a Slack user ID like U012ABCDEF (got {user!r})")
        if role not in ROLES:
            problems.append(f"{path}.role: must be one of {', '.join(ROLES)} (got {role!r})")
        code = None
        if raw_code == ALL_SENDER_CODES:
            code = ALL_SENDER_CODES
        elif isinstance(raw_code, str):
            code = normalize_sender_code(raw_code)
        if code is None:
            problems.append(f"{path}.sender_code: must be a sender code in quotes, or '*' for every sender code "
                            f"(got {raw_code!r})")
        if len(problems) > before:
            continue
        grant = GrantRow(str(user), Role(str(role)), str(code))
        if grant in seen_grants:
            problems.append(f"{path}: the same grant as {seen_grants[grant]}")
        else:
            seen_grants[grant] = path
            grants.append(grant)

    phones = _test_phones(document, problems)
    if problems:
        raise PolicyError(problems)
    return Policy(tuple(codes), tuple(grants), phones)


def _test_phones(document: dict[str, Any], problems: list[str]) -> tuple[tuple[str, str], ...] | None:
    """`test_phones`, checked as `sms-bot test-phone set` checks them; None when the key is absent."""
    if "test_phones" not in document:
        return None
    phones: dict[str, str] = {}
    seen: set[str] = set()
    for path, item in _mappings(document, "test_phones", "user and phone", problems):
        _unknown_keys(item, PHONE_KEYS, path, problems)
        user, raw = item.get("user"), item.get("phone")
        if not isinstance(user, str) or not SLACK_USER.fullmatch(user):
            problems.append(f"{path}.user: must be a Slack user ID like U012ABCDEF (got {user!r})")
            user = None
        elif user in seen:
            problems.append(f"{path}.user: {user} has a test phone earlier in the list; one phone per person")
            user = None
        else:
            seen.add(user)
        try:
            phone = test_phones.parse_phone(raw if isinstance(raw, str) else repr(raw))
        except test_phones.PhoneError as exc:
            quotes = "" if isinstance(raw, str) else " Write it in quotes: YAML reads +15551234567 as a number."
            problems.append(f"{path}.phone: {exc}{quotes}")
            continue
        if user is not None:
            phones[user] = phone
    return tuple(sorted(phones.items()))


def import_policy(session: Session, text: str, by: str) -> ImportSummary:
    """Make the policy exactly `text`, in the caller's transaction. Raises PolicyError before any change."""
    wanted = parse_policy(text)
    summary = ImportSummary()
    wanted_codes = {s.code for s in wanted.sender_codes}
    for row in sender_codes.list_sender_codes(session):
        if row.code not in wanted_codes:
            sender_codes.remove_sender_code(session, row.code, by)
            summary.removed.append(row.code)
    for rules in wanted.sender_codes:
        change = sender_codes.replace_sender_code(session, rules, by)
        if change.before is None:
            summary.added.append(rules.code)
        elif change.changed:
            summary.updated.append(rules.code)

    current = {GrantRow(g.user_id, g.role, g.sender_code) for g in grants.list_grants(session)}
    wanted_grants = set(wanted.grants)
    for grant in sorted(current - wanted_grants, key=lambda g: (g.user, g.role, g.sender_code)):
        grants.revoke(session, grant.user, grant.role, grant.sender_code, by)
        summary.revoked.append(grant)
    for grant in wanted.grants:
        if grant not in current:
            grants.grant(session, grant.user, grant.role, grant.sender_code, by)
            summary.granted.append(grant)
    if wanted.test_phones is not None:
        _import_test_phones(session, dict(wanted.test_phones), by, summary)
    session.flush()
    return summary


def _import_test_phones(session: Session, wanted: dict[str, str], by: str, summary: ImportSummary) -> None:
    for row in test_phones.list_test_phones(session):
        if row.user_id not in wanted and test_phones.remove_test_phone(session, row.user_id, by):
            summary.phones_removed.append(row.user_id)
    for user, phone in wanted.items():
        if test_phones.set_test_phone(session, user, phone, by):
            summary.phones_set.append(user)
