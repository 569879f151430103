"""Write the generated demo company into a database, governed and audited.

Rows go in with Core bulk INSERTs in chunks (an executemany per chunk, not
an ORM flush per row, which is several times slower here), each chunk
leaving an audit row with its record ids. The tables must be empty: the
generator numbers rows from 1 so that references between them need no round
trips. On PostgreSQL the id sequences are then moved past the inserted ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import Base
from waggle.core.errors import Conflict, InvalidInput
from waggle.crm.models import (
    Account,
    Activity,
    Contact,
    LineItem,
    Opportunity,
    PoolEvent,
    Product,
    Quota,
    StageChange,
)
from waggle.crm.pipelines import default_pipeline
from waggle.demo.deals import PipelineShape, StageInfo
from waggle.demo.generator import DemoCompany, generate_company
from waggle.demo.orgchart import Login
from waggle.governance import authorize, record_audit
from waggle.identity.models import Department, Employee, Region
from waggle.identity.service import create_user

logger = logging.getLogger(__name__)

DEFAULT_SEED = 20260302
CHUNK_ROWS = 5_000

# table → (model, the policy resource whose "create" right covers it)
TABLES: dict[str, tuple[type[Base], str]] = {
    "regions": (Region, "regions"),
    "departments": (Department, "departments"),
    "employees": (Employee, "employees"),
    "products": (Product, "products"),
    "accounts": (Account, "accounts"),
    "contacts": (Contact, "contacts"),
    "opportunities": (Opportunity, "opportunities"),
    "line_items": (LineItem, "opportunities"),
    "stage_changes": (StageChange, "opportunities"),
    "quotas": (Quota, "quotas"),
    "activities": (Activity, "activities"),
    "pool_events": (PoolEvent, "accounts"),
}

ProgressCallback = Callable[[str, int], None]
"""Called with a step name and the number of rows it just wrote."""


@dataclass(frozen=True)
class DemoResult:
    """What a build wrote: rows per table and the logins created."""

    counts: dict[str, int]
    logins: list[Login]
    seed: int
    scale: float


def holds_employees(session: Session) -> bool:
    """Return whether the database already has an org chart."""
    return session.scalar(select(Employee.id).limit(1)) is not None


def build_demo_company(
    session: Session,
    actor: Actor,
    *,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    on_generated: Callable[[DemoCompany], None] | None = None,
    on_rows: ProgressCallback | None = None,
) -> DemoResult:
    """Generate the demo company and write it, with its logins, in ``session``.

    Raises:
        PolicyDenied: the actor may not create one of the demo's resources.
        Conflict: a table the demo fills already holds rows.
        InvalidInput: a bad scale, or a pipeline the generator cannot satisfy.
    """
    for resource in sorted({resource for _model, resource in TABLES.values()}):
        authorize(session, actor, "create", resource)
    authorize(session, actor, "create", "users")
    _refuse_filled_tables(session)
    company = generate_company(
        seed=seed, scale=scale, now=now(), pipeline=pipeline_shape(session)
    )
    if on_generated is not None:
        on_generated(company)
    detail = f"demo company seed={seed} scale={scale}"
    for table, rows in company.tables.items():
        _insert(session, actor, table, rows, detail=detail, on_rows=on_rows)
    _move_sequences_past_ids(session)
    _create_logins(session, actor, company.logins)
    counts = {table: len(rows) for table, rows in company.tables.items()}
    logger.info("demo company built", extra={"seed": seed, "scale": scale, **counts})
    return DemoResult(counts=counts, logins=company.logins, seed=seed, scale=scale)


def pipeline_shape(session: Session) -> PipelineShape:
    """Describe the default pipeline for the generator.

    Raises:
        NotFound: no pipeline is installed (run ``waggle db upgrade``).
        InvalidInput: it lacks an open, a won or a lost stage.
    """
    pipeline = default_pipeline(session)
    stages = sorted(pipeline.stages, key=lambda stage: stage.position)
    info = {
        stage.id: StageInfo(
            stage.id, stage.key, stage.probability, tuple(stage.required_fields)
        )
        for stage in stages
    }
    open_stages = tuple(info[s.id] for s in stages if not (s.is_won or s.is_lost))
    won = next((info[s.id] for s in stages if s.is_won), None)
    lost = next((info[s.id] for s in stages if s.is_lost), None)
    if not open_stages or won is None or lost is None:
        raise InvalidInput(
            f"pipeline {pipeline.key}: the demo needs open stages, a won stage "
            "and a lost stage"
        )
    return PipelineShape(pipeline.id, open_stages, won, lost)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _refuse_filled_tables(session: Session) -> None:
    for table, (model, _resource) in TABLES.items():
        if session.scalar(select(_table(model).c.id).limit(1)) is not None:
            raise Conflict(
                f"demo: table {table} already holds rows; build the demo company "
                "into an empty database (or pass --if-empty to skip)"
            )


def _insert(
    session: Session,
    actor: Actor,
    table: str,
    rows: list[dict[str, Any]],
    *,
    detail: str,
    on_rows: ProgressCallback | None,
) -> None:
    model, _resource = TABLES[table]
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        session.execute(insert(_table(model)), chunk)
        record_audit(
            session,
            actor,
            action="create",
            resource=table,
            record_ids=[row["id"] for row in chunk],
            detail=detail,
        )
        if on_rows is not None:
            on_rows(table, len(chunk))


def _move_sequences_past_ids(session: Session) -> None:
    """Let PostgreSQL hand out ids after the ones the demo chose itself."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for model, _resource in TABLES.values():
        table = _table(model)
        highest = func.max(table.c.id)
        session.execute(
            select(
                func.setval(
                    func.pg_get_serial_sequence(table.name, "id"),
                    func.coalesce(highest, 1),
                    highest.is_not(None),
                )
            )
        )


def _create_logins(session: Session, actor: Actor, logins: list[Login]) -> None:
    for login in logins:
        create_user(
            session,
            actor,
            username=login.username,
            password=login.password,
            roles=[login.role],
            employee_external_id=login.employee_external_id,
        )
