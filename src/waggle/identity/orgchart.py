"""The org chart as governed records: regions, departments and employees."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.errors import InvalidInput
from waggle.governance.records import RecordSpec
from waggle.identity.models import Department, Employee, EmploymentStatus, Region

Values = dict[str, Any]


def _refuse_missing(
    session: Session, model: type[Any], record_id: int | None, label: str
) -> None:
    if record_id is not None and session.get(model, record_id) is None:
        raise InvalidInput(f"{label}: no record with id {record_id}")


def _check_employee(session: Session, actor: Actor, values: Values) -> Values:
    _refuse_missing(
        session, Department, values.get("department_id"), "employees.department_id"
    )
    _refuse_missing(session, Region, values.get("region_id"), "employees.region_id")
    _refuse_missing(session, Employee, values.get("manager_id"), "employees.manager_id")
    departed = values.get("departed_on")
    if values.get("status") == EmploymentStatus.DEPARTED and departed is None:
        raise InvalidInput("employees.departed_on: required when status is departed")
    hired = values.get("hired_on")
    if hired and departed and departed < hired:
        raise InvalidInput("employees.departed_on: must not be before hired_on")
    return values


def _check_employee_update(
    session: Session, actor: Actor, employee: Employee, changes: Values
) -> Values:
    if changes.get("manager_id") == employee.id:
        raise InvalidInput(f"employee {employee.external_id}: cannot manage themself")
    merged = {
        "status": changes.get("status", employee.status),
        "hired_on": changes.get("hired_on", employee.hired_on),
        "departed_on": changes.get("departed_on", employee.departed_on),
        **{k: v for k, v in changes.items() if k.endswith("_id")},
    }
    _check_employee(session, actor, merged)
    return changes


def _check_parent_region(session: Session, actor: Actor, values: Values) -> Values:
    _refuse_missing(session, Region, values.get("parent_id"), "regions.parent_id")
    return values


def _check_parent_department(session: Session, actor: Actor, values: Values) -> Values:
    _refuse_missing(
        session, Department, values.get("parent_id"), "departments.parent_id"
    )
    return values


REGIONS: RecordSpec[Region] = RecordSpec(
    name="regions",
    model=Region,
    filters=("parent_id", "code"),
    search_columns=("name", "code"),
    sort_keys=("id", "code", "name"),
    before_create=_check_parent_region,
    immutable=frozenset({"code"}),
)

DEPARTMENTS: RecordSpec[Department] = RecordSpec(
    name="departments",
    model=Department,
    filters=("parent_id", "code"),
    search_columns=("name", "code"),
    sort_keys=("id", "code", "name"),
    before_create=_check_parent_department,
    immutable=frozenset({"code"}),
)

EMPLOYEES: RecordSpec[Employee] = RecordSpec(
    name="employees",
    model=Employee,
    filters=("department_id", "region_id", "manager_id", "status"),
    search_columns=("name", "email", "title"),
    sort_keys=("id", "name", "hired_on"),
    before_create=_check_employee,
    before_update=_check_employee_update,
    immutable=frozenset({"external_id"}),
)
