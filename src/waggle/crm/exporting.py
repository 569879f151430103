"""Export CRM and org-chart records to CSV or XLSX, in the import layout.

An export has exactly the columns an import reads, references written by
external id or code, rows sorted by key in code-point order (the same on
SQLite and PostgreSQL), so export → import → export gives the same bytes.
Only the rows the actor's scope lets them see are written, and the export
leaves audit rows listing every record it contained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.crm.columns import Kind, Layout, format_value
from waggle.crm.layouts import chunked, layout_for
from waggle.crm.service import ACCOUNTS, CONTACTS, OPPORTUNITIES, PRODUCTS
from waggle.crm.tabular import Cell, write_table
from waggle.governance import authorize, record_audit
from waggle.governance.records import RecordSpec, visible_condition
from waggle.identity.orgchart import DEPARTMENTS, EMPLOYEES, REGIONS

logger = logging.getLogger(__name__)

AUDIT_IDS = 1000
FETCH_ROWS = 2000
RECORD_SPECS: dict[str, RecordSpec[Any]] = {
    spec.name: spec
    for spec in (
        ACCOUNTS,
        CONTACTS,
        OPPORTUNITIES,
        PRODUCTS,
        REGIONS,
        DEPARTMENTS,
        EMPLOYEES,
    )
}

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    resource: str
    rows: int
    file_format: str
    encoding: str | None


def export_records(
    session: Session,
    actor: Actor,
    resource: str,
    target: IO[bytes],
    *,
    file_format: str = "csv",
    encoding: str = "utf-8-sig",
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the ``resource`` records the actor may see to ``target``.

    ``encoding`` applies to CSV: ``utf-8-sig`` (the default, which Excel
    opens correctly), ``utf-8`` or ``gbk``.

    Raises:
        PolicyDenied: the actor may not export the resource.
        InvalidInput: unknown resource, format or encoding.
    """
    layout = layout_for(resource)
    scope = authorize(session, actor, "export", resource)
    condition = visible_condition(session, actor, RECORD_SPECS[resource], scope)
    statement, kinds = _statement(session, layout, condition)
    record_ids: list[int] = []
    rows = _cells(session, statement, kinds, record_ids, progress)
    count = write_table(
        target, list(layout.order), rows, file_format=file_format, encoding=encoding
    )
    _audit(session, actor, resource, record_ids, file_format)
    logger.info("export finished", extra={"resource": resource, "rows": count})
    return ExportSummary(
        resource=resource,
        rows=count,
        file_format=file_format,
        encoding=encoding if file_format == "csv" else None,
    )


def _statement(
    session: Session, layout: Layout, condition: ColumnElement[bool]
) -> tuple[Select[Any], list[Kind]]:
    """Select the layout's columns, joining referenced tables for their keys."""
    table = layout.model.__table__
    columns: list[Any] = [table.c.id]
    kinds: list[Kind] = []
    source: Any = table
    by_column = {column.name: column for column in layout.columns}
    for name in layout.order:
        if name in by_column:
            columns.append(table.c[by_column[name].target])
            kinds.append(by_column[name].kind)
            continue
        reference = next(r for r in layout.references if r.columns[0] == name)
        target = reference.target.__table__.alias(f"ref_{name}")
        source = source.outerjoin(target, target.c.id == table.c[reference.attribute])
        columns.append(target.c[reference.via[0].attribute].label(name))
        kinds.append(Kind.TEXT)
    key: Any = table.c[layout.key]
    if session.get_bind().dialect.name == "postgresql":
        key = key.collate("C")  # code-point order, as SQLite sorts
    statement = select(*columns).select_from(source).where(condition).order_by(key)
    return statement, kinds


def _cells(
    session: Session,
    statement: Select[Any],
    kinds: list[Kind],
    record_ids: list[int],
    progress: Progress | None,
) -> Iterator[list[Cell]]:
    result = session.execute(statement.execution_options(yield_per=FETCH_ROWS))
    for record in result:
        record_ids.append(record[0])
        yield [
            format_value(kind, value)
            for kind, value in zip(kinds, record[1:], strict=True)
        ]
        if progress is not None and len(record_ids) % FETCH_ROWS == 0:
            progress(len(record_ids), None)


def _audit(
    session: Session,
    actor: Actor,
    resource: str,
    record_ids: list[int],
    file_format: str,
) -> None:
    parts = list(chunked(sorted(record_ids), AUDIT_IDS)) or [[]]
    for part in parts:
        record_audit(
            session,
            actor,
            action="export",
            resource=resource,
            record_ids=part,
            detail=f"{len(record_ids)} rows as {file_format}",
        )
