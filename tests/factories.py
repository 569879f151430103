"""Builders of test data: a small org chart with users of every role."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.db import transaction
from waggle.crm.service import ACCOUNTS, OPPORTUNITIES, create_account
from waggle.governance.records import create_record
from waggle.identity.models import Department, Employee, Region
from waggle.identity.service import actor_for_user, create_token, create_user

PASSWORD = "correct horse battery"


@dataclass
class Org:
    """A two-region org: a director over two managers, each with two reps."""

    regions: dict[str, int] = field(default_factory=dict)
    employees: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}


# (username, role, manager, region)
PEOPLE = [
    ("director_east", "director", None, "east"),
    ("manager_a", "manager", "director_east", "east"),
    ("rep_a1", "rep", "manager_a", "east"),
    ("rep_a2", "rep", "manager_a", "east"),
    ("manager_b", "manager", "director_east", "east"),
    ("rep_b1", "rep", "manager_b", "east"),
    ("director_west", "director", None, "west"),
    ("rep_w1", "rep", "director_west", "west"),
]
STAFF = [
    ("ops", "sales_ops"),
    ("admin", "it_admin"),
    ("owner", "data_owner"),
    ("compliance", "compliance"),
    ("auditor", "auditor"),
]


def build_org(sessions: sessionmaker[Session]) -> Org:
    """Create regions, a department, employees, users and a token per user."""
    org = Org()
    with transaction(sessions) as session:
        _build_chart(session, org)
        _build_users(session, org)
    return org


def _build_chart(session: Session, org: Org) -> None:
    for code, name in [("east", "华东大区"), ("west", "西部大区")]:
        region = Region(code=code, name=name)
        session.add(region)
        session.flush()
        org.regions[code] = region.id
    department = Department(code="sales", name="销售部")
    session.add(department)
    session.flush()
    for username, _role, manager, region in PEOPLE:
        employee = Employee(
            external_id=f"E-{username}",
            name=username,
            department_id=department.id,
            region_id=org.regions[region],
            manager_id=org.employees.get(manager) if manager else None,
        )
        session.add(employee)
        session.flush()
        org.employees[username] = employee.id


def _build_users(session: Session, org: Org) -> None:
    operator = system_actor("test")
    accounts = [(name, role, f"E-{name}") for name, role, _m, _r in PEOPLE]
    accounts += [(name, role, None) for name, role in STAFF]
    for username, role, employee in accounts:
        user = create_user(
            session,
            operator,
            username=username,
            password=PASSWORD,
            roles=[role],
            employee_external_id=employee,
        )
        org.actors[username] = actor_for_user(user)
        org.tokens[username] = create_token(
            session, operator, username=username, name="test"
        ).secret


def add_account(session: Session, actor: Actor, name: str, **values: object) -> int:
    account = create_account(session, actor, {"name": name, **values})
    return account.id


def add_opportunity(
    session: Session, actor: Actor, account_id: int, name: str, **values: object
) -> int:
    opportunity = create_record(
        session,
        actor,
        OPPORTUNITIES,
        {"name": name, "account_id": account_id, **values},
    )
    return opportunity.id


__all__ = ["ACCOUNTS", "PASSWORD", "Org", "add_account", "add_opportunity", "build_org"]
