"""The governance seam every business read and write passes through.

A service calls :func:`authorize` before touching data, narrows its queries
with :func:`row_filter`, checks single records with :func:`ensure_in_scope`
and leaves an audit row with :func:`record_audit` in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import PolicyDenied
from waggle.governance.chain import stage_entry
from waggle.governance.duties import ensure_duties_separated
from waggle.governance.models import AuditEntry
from waggle.governance.policy import Policy, load_policy

logger = logging.getLogger(__name__)

_policy_path: Path | None = None


def configure_policy(path: Path | None) -> None:
    """Use the policy file at ``path`` (``None``: the shipped default)."""
    global _policy_path
    _policy_path = path


def active_policy() -> Policy:
    return load_policy(_policy_path)


def authorize(session: Session, actor: Actor, action: str, resource: str) -> str:
    """Check that ``actor`` may do ``action`` on ``resource``; return the row scope.

    Raises:
        PolicyDenied: no role of the actor allows the action, or the actor's
            roles break separation of duties for it.
    """
    policy = active_policy()
    if not actor.roles & policy.roles_allowed(resource, action):
        raise PolicyDenied(
            f"{actor.username} may not {action} {resource}",
            action=action,
            resource=resource,
        )
    ensure_duties_separated(actor, action, resource)
    rule = policy.resources[resource]
    return policy.widest_scope(actor.roles) if rule.is_owned else "all"


def row_filter(
    session: Session,
    actor: Actor,
    scope: str,
    owner_column: InstrumentedAttribute[Any],
) -> ColumnElement[bool]:
    """Return the WHERE condition that limits owned rows to the actor's scope."""
    if scope == "all":
        return true()
    owners = visible_owner_ids(session, actor, scope)
    if not owners:
        return false()
    return owner_column.in_(sorted(owners))


def visible_owner_ids(session: Session, actor: Actor, scope: str) -> set[int]:
    """Return the employee ids whose records ``scope`` lets the actor see."""
    cache: dict[tuple[int | None, str], set[int]] = session.info.setdefault(
        "waggle_scope_cache", {}
    )
    key = (actor.employee_id, scope)
    if key not in cache:
        cache[key] = _compute_owner_ids(session, actor.employee_id, scope)
    return cache[key]


def ensure_in_scope(
    session: Session,
    actor: Actor,
    scope: str,
    *,
    owner_id: int | None,
    action: str,
    resource: str,
    record_id: object,
) -> None:
    """Refuse an action on one record outside the actor's scope.

    Raises:
        PolicyDenied: the record's owner is outside the scope.
    """
    if scope == "all" or (
        owner_id is not None and owner_id in visible_owner_ids(session, actor, scope)
    ):
        return
    raise PolicyDenied(
        f"{resource} {record_id} is outside what {actor.username} may {action}",
        action=action,
        resource=resource,
        record_ids=(str(record_id),),
    )


def record_audit(
    session: Session,
    actor: Actor,
    *,
    action: str,
    resource: str,
    record_ids: Iterable[object] = (),
    result: str = "ok",
    detail: str | None = None,
) -> AuditEntry:
    """Add one audit row to the session's transaction and return it.

    The row is chained and inserted when the transaction commits; a rollback
    drops it with the work it described.
    """
    entry = AuditEntry(
        occurred_at=now(),
        user_id=actor.user_id,
        username=actor.username,
        roles=",".join(sorted(actor.roles)),
        action=action,
        resource=resource,
        record_ids=[str(record_id) for record_id in record_ids],
        result=result,
        source_ip=actor.source_ip,
        request_id=actor.request_id,
        detail=detail,
    )
    stage_entry(session, entry)
    return entry


def record_denial(session: Session, actor: Actor, error: PolicyDenied) -> None:
    """Write the audit row of a refused action, in a transaction of its own."""
    record_audit(
        session,
        actor,
        action=error.action or "unknown",
        resource=error.resource or "unknown",
        record_ids=error.record_ids,
        result="denied",
        detail=error.message,
    )
    session.commit()
    logger.info(
        "policy denied",
        extra={
            "action": error.action,
            "resource": error.resource,
            "user": actor.username,
        },
    )


def _compute_owner_ids(
    session: Session, employee_id: int | None, scope: str
) -> set[int]:
    if employee_id is None or scope == "none":
        return set()
    if scope == "own":
        return {employee_id}
    if scope == "team":
        return _reporting_subtree(session, employee_id)
    if scope == "region":
        return _region_members(session, employee_id)
    return set()


def _reporting_subtree(session: Session, manager_id: int) -> set[int]:
    # Imported here: identity's services call this seam, so identity's
    # package cannot be loaded before governance's.
    from waggle.identity.models import Employee

    rows = session.execute(select(Employee.id, Employee.manager_id)).all()
    reports: dict[int, list[int]] = {}
    for employee, manager in rows:
        if manager is not None:
            reports.setdefault(manager, []).append(employee)
    found, frontier = {manager_id}, [manager_id]
    while frontier:
        current = frontier.pop()
        for child in reports.get(current, ()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _region_members(session: Session, employee_id: int) -> set[int]:
    from waggle.identity.models import Employee, Region

    region_id = session.scalar(
        select(Employee.region_id).where(Employee.id == employee_id)
    )
    if region_id is None:
        return {employee_id}
    children: dict[int, list[int]] = {}
    for region, parent in session.execute(select(Region.id, Region.parent_id)).all():
        if parent is not None:
            children.setdefault(parent, []).append(region)
    regions, frontier = {region_id}, [region_id]
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in regions:
                regions.add(child)
                frontier.append(child)
    members = session.scalars(
        select(Employee.id).where(Employee.region_id.in_(regions))
    )
    return set(members) | {employee_id}
