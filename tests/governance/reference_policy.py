"""A plain-Python model of the shipped policy, to check the real one against.

It knows the default row scopes, who may read the CRM resources, the shipped
grades of the classified CRM fields and the default masking matrix, and
computes from an org chart which rows a user sees and what each field shows.
It shares no code with :mod:`waggle.governance`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac

SCOPES = {
    "rep": "own",
    "manager": "team",
    "director": "region",
    "sales_ops": "all",
    "data_owner": "all",
    "compliance": "all",
    "auditor": "all",
    "it_admin": "none",
}
SCOPE_RANK = ["none", "own", "team", "region", "all"]
READERS = {
    "rep",
    "manager",
    "director",
    "sales_ops",
    "data_owner",
    "compliance",
    "auditor",
}
# (table, column) -> (grade, format) for the fields that are not public/internal.
CLASSIFIED = {
    ("contacts", "phone"): ("confidential", "phone"),
    ("contacts", "email"): ("confidential", "email"),
    ("contacts", "wechat_id"): ("confidential", "text"),
    ("opportunities", "customer_pain_points"): ("confidential", "text"),
}
MATRIX = {
    "confidential": {
        "default": "partial",
        "sales_ops": "full",
        "data_owner": "full",
        "auditor": "hash",
        "it_admin": "null",
    },
}
KIND_RANK = ["null", "hash", "partial", "full"]


@dataclass
class Person:
    employee_id: int
    manager_id: int | None
    region: str


@dataclass
class OrgModel:
    """Employees by id; enough to compute team and region scopes."""

    people: dict[int, Person] = field(default_factory=dict)

    def team(self, employee_id: int) -> set[int]:
        found = {employee_id}
        changed = True
        while changed:
            changed = False
            for person in self.people.values():
                if person.manager_id in found and person.employee_id not in found:
                    found.add(person.employee_id)
                    changed = True
        return found

    def region(self, employee_id: int) -> set[int]:
        home = self.people[employee_id].region
        return {p.employee_id for p in self.people.values() if p.region == home} | {
            employee_id
        }


@dataclass(frozen=True)
class User:
    role: str
    employee_id: int | None


def scope_of(user: User) -> str:
    return SCOPES[user.role]


def may_read(user: User) -> bool:
    return user.role in READERS


def sees_row(org: OrgModel, user: User, owner_id: int | None) -> bool:
    """Return whether the user's row scope covers a row owned by ``owner_id``."""
    scope = scope_of(user)
    if scope == "all":
        return True
    if user.employee_id is None or owner_id is None or scope == "none":
        return False
    if scope == "own":
        return owner_id == user.employee_id
    if scope == "team":
        return owner_id in org.team(user.employee_id)
    return owner_id in org.region(user.employee_id)


def mask_kind(user: User, grade: str, owner_id: int | None) -> str:
    if user.employee_id is not None and owner_id == user.employee_id:
        return "full"
    row = MATRIX[grade]
    return row.get(user.role, row["default"])


def expected_value(
    user: User,
    table: str,
    column: str,
    value: Any,
    owner_id: int | None,
    *,
    hash_key: bytes = b"",
) -> Any:
    """Return what the user should see of one stored field value.

    A hash is HMAC-SM3 under the instance's masking key ``hash_key``.
    """
    if (table, column) not in CLASSIFIED or value is None:
        return value
    grade, shape = CLASSIFIED[(table, column)]
    kind = mask_kind(user, grade, owner_id)
    if kind == "full":
        return value
    if kind == "null":
        return None
    if kind == "hash":
        mac = hmac.HMAC(hash_key, hashes.SM3())
        mac.update(f"{table}.{column}\x00{value}".encode())
        return mac.finalize().hex()[:16]
    return partial(shape, value)


def partial(shape: str, value: str) -> str:
    if shape == "phone" and len(value) >= 7:
        return value[:3] + "****" + value[-4:]
    if shape == "email" and "@" in value:
        at = value.rindex("@")
        return value[0] + "***" + value[at:]
    if shape == "name" or len(value) <= 4:
        return "*" if len(value) < 2 else value[0] + "*" * (len(value) - 1)
    return value[:2] + "****" + value[-2:]


def can_filter_on(user: User, table: str, column: str, owner_id: int | None) -> bool:
    """Return whether a row matched on ``column`` may be found by that filter."""
    if (table, column) not in CLASSIFIED:
        return True
    return mask_kind(user, CLASSIFIED[(table, column)][0], owner_id) == "full"
