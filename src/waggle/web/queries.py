"""Read models the pages need beyond single records and pages of records.

Names for ids, stage totals and counts. Every function passes the governance
seam as :mod:`waggle.governance.records` does: the policy check, the row
filter of the actor's scope, and an audit row in the caller's transaction.
Aggregates are single grouped queries so that pages stay fast on a company
with tens of thousands of opportunities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.crm.models import Opportunity, Pipeline, PipelineStage
from waggle.crm.pipelines import list_pipelines
from waggle.crm.service import OPPORTUNITIES
from waggle.governance import (
    active_policy,
    authorize,
    record_audit,
    visible_owner_ids,
)
from waggle.governance.records import MAX_PAGE_SIZE as _CHUNK
from waggle.governance.records import RecordSpec, list_records, visible_condition
from waggle.identity.models import Employee
from waggle.identity.orgchart import EMPLOYEES


@dataclass(frozen=True)
class StageTotal:
    """How many opportunities a stage holds and their summed amount."""

    count: int
    amount: Decimal


def may(actor: Actor, action: str, resource: str) -> bool:
    """Return whether the policy lets ``actor`` do ``action`` on ``resource``."""
    return bool(actor.roles & active_policy().roles_allowed(resource, action))


def names_by_id(
    session: Session,
    actor: Actor,
    spec: RecordSpec[Any],
    ids: Iterable[int | None],
) -> dict[int, str]:
    """Return the names of the records among ``ids`` that the actor may read.

    Records outside the actor's scope are simply absent from the result.
    """
    wanted = sorted({record_id for record_id in ids if record_id is not None})
    if not wanted or not may(actor, "read", spec.name):
        return {}
    names: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        page = list_records(
            session,
            actor,
            spec,
            extra_condition=spec.column("id").in_(chunk),
            limit=len(chunk),
        )
        names.update({record.id: record.name for record in page.items})
    return names


def stage_totals(
    session: Session,
    actor: Actor,
    *,
    pipeline_id: int,
    owner_id: int | None = None,
) -> dict[int, StageTotal]:
    """Return count and amount per stage of the opportunities the actor may read.

    Raises:
        PolicyDenied: the actor may not read opportunities.
    """
    scope = authorize(session, actor, "read", OPPORTUNITIES.name)
    statement = (
        select(
            Opportunity.stage_id,
            func.count(Opportunity.id),
            func.sum(Opportunity.amount),
        )
        .where(visible_condition(session, actor, OPPORTUNITIES, scope))
        .where(Opportunity.pipeline_id == pipeline_id)
        .group_by(Opportunity.stage_id)
    )
    if owner_id is not None:
        statement = statement.where(Opportunity.owner_id == owner_id)
    totals = {
        stage_id: StageTotal(count=int(count), amount=amount or Decimal("0.00"))
        for stage_id, count, amount in session.execute(statement)
    }
    record_audit(
        session,
        actor,
        action="read",
        resource=OPPORTUNITIES.name,
        detail=f"aggregate: count and amount by stage of pipeline {pipeline_id}",
    )
    return totals


def count_visible(session: Session, actor: Actor, spec: RecordSpec[Any]) -> int:
    """Return how many records of ``spec`` the actor may read.

    Raises:
        PolicyDenied: the actor may not read the resource.
    """
    scope = authorize(session, actor, "read", spec.name)
    total = session.scalar(
        select(func.count())
        .select_from(spec.model)
        .where(visible_condition(session, actor, spec, scope))
    )
    record_audit(
        session, actor, action="read", resource=spec.name, detail="aggregate: count"
    )
    return int(total or 0)


def owner_choices(
    session: Session, actor: Actor, resource: str
) -> list[tuple[int, str]]:
    """Return the employees whose records of ``resource`` the actor can see.

    Empty when the actor sees only their own records (no owner filter needed).
    """
    scope = authorize(session, actor, "read", resource)
    if scope in ("own", "none") or not may(actor, "read", EMPLOYEES.name):
        return []
    condition = None
    if scope != "all":
        condition = Employee.id.in_(sorted(visible_owner_ids(session, actor, scope)))
    page = list_records(
        session,
        actor,
        EMPLOYEES,
        sort="name",
        limit=_CHUNK,
        extra_condition=condition,
    )
    return [(employee.id, employee.name) for employee in page.items]


def readable_pipelines(session: Session, actor: Actor) -> list[Pipeline]:
    """Return the pipelines, the default one first."""
    pipelines = list_pipelines(session, actor)
    return sorted(
        pipelines, key=lambda pipeline: (not pipeline.is_default, pipeline.id)
    )


def stage_index(pipelines: Iterable[Pipeline]) -> dict[int, PipelineStage]:
    return {stage.id: stage for pipeline in pipelines for stage in pipeline.stages}
