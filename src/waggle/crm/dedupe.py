"""Duplicate detection (撞单检查) for accounts: company-name normalisation and matching.

Two records are the same company when their normalised names are equal, or
they share a unified social credit code, a phone number or an email domain
that is not a public mail provider.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from waggle.crm.models import Account

# Longest first, so 股份有限公司 is removed whole rather than leaving 股份.
_LEGAL_SUFFIXES = (
    "股份有限公司",
    "有限责任公司",
    "集团有限公司",
    "有限公司",
    "集团公司",
    "股份公司",
    "公司",
    "co.,ltd.",
    "co.,ltd",
    "co.ltd",
    "corporation",
    "company",
    "limited",
    "ltd.",
    "ltd",
    "inc.",
    "inc",
    "corp.",
    "corp",
    "llc",
    "gmbh",
)
_REGION_MARKERS = re.compile(r"[(（](中国|中國|china|prc)[)）]", re.IGNORECASE)
_BRANCH = re.compile(r"[\u4e00-\u9fff]{1,12}(分公司|分部|办事处|分厂|营业部)$")
_PUNCTUATION = re.compile(r"[\s\-_·•.,，。、'\"“”‘’()（）\[\]【】&]+")
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "qq.com",
        "163.com",
        "126.com",
        "sina.com",
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "foxmail.com",
        "yeah.net",
        "aliyun.com",
        "139.com",
        "sohu.com",
    }
)


def normalize_company_name(name: str) -> str:
    """Return the comparison key of a company name.

    Full-width characters become half-width, case and punctuation are dropped,
    and legal-form suffixes, "(中国)" markers and branch names are removed.
    """
    text = unicodedata.normalize("NFKC", name).strip().lower()
    text = _REGION_MARKERS.sub("", text)
    text = _strip_branch(text)
    text = _strip_suffixes(text)
    return _PUNCTUATION.sub("", text)


def _strip_branch(text: str) -> str:
    compact = _PUNCTUATION.sub("", text)
    match = _BRANCH.search(compact)
    if match is None or match.start() == 0:
        return text
    # Drop the branch from the first character of its place name onwards.
    head = compact[: match.start()]
    head = _strip_suffixes(head)
    return head


def _strip_suffixes(text: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        compact = text.rstrip(" .,")
        for suffix in _LEGAL_SUFFIXES:
            if compact.endswith(suffix) and len(compact) > len(suffix):
                text = compact[: -len(suffix)]
                stripped = True
                break
    return text


def normalize_phone(phone: str | None) -> str | None:
    """Return the digits of a phone number without a +86/0086 country prefix."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", phone))
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) >= 10:
            digits = digits[len(prefix) :]
            break
    return digits or None


@dataclass(frozen=True)
class DuplicateMatch:
    """An existing account that looks like the same company, and on which keys."""

    account_id: int
    name: str
    owner_id: int | None
    matched_on: tuple[str, ...]


def find_account_duplicates(
    session: Session,
    *,
    name: str,
    credit_code: str | None = None,
    phone: str | None = None,
    email_domain: str | None = None,
    exclude_id: int | None = None,
) -> list[DuplicateMatch]:
    """Return the accounts that match on any duplicate key, best evidence first."""
    keys = {"name": normalize_company_name(name)}
    conditions = [Account.normalized_name == keys["name"]]
    if credit_code:
        keys["credit_code"] = credit_code.upper()
        conditions.append(Account.credit_code == keys["credit_code"])
    if email_domain and email_domain.lower() not in PUBLIC_MAIL_DOMAINS:
        keys["email_domain"] = email_domain.lower()
        conditions.append(Account.email_domain == keys["email_domain"])
    phone_key = normalize_phone(phone)
    if phone_key:
        conditions.append(Account.phone_key == phone_key)
    statement = select(Account).where(
        or_(*conditions), Account.merged_into_id.is_(None)
    )
    if exclude_id is not None:
        statement = statement.where(Account.id != exclude_id)
    matches = []
    for account in session.scalars(statement):
        matched = _matched_keys(account, keys, phone_key)
        if matched:
            matches.append(
                DuplicateMatch(account.id, account.name, account.owner_id, matched)
            )
    return sorted(matches, key=lambda match: (-len(match.matched_on), match.account_id))


def _matched_keys(
    account: Account, keys: dict[str, str], phone_key: str | None
) -> tuple[str, ...]:
    matched = [
        key
        for key, value in keys.items()
        if value
        and getattr(account, "normalized_name" if key == "name" else key) == value
    ]
    if phone_key and account.phone_key == phone_key:
        matched.append("phone")
    return tuple(matched)
