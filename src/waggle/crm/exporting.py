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

from sqlalchemy import ColumnElement, Select, null, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.crm.columns import Kind, Layout, format_value
from waggle.crm.layouts import chunked, layout_for
from waggle.crm.service import ACCOUNTS, CONTACTS, OPPORTUNITIES, PRODUCTS
from waggle.crm.tabular import Cell, write_table
from waggle.governance import authorize, record_audit
from waggle.governance.masking import RowMasker, row_masker, table_name
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
    spec = RECORD_SPECS[resource]
    condition = visible_condition(session, actor, spec, scope)
    statement, kinds = _statement(session, layout, condition, owner=spec.owner_column)
    # Masked as reads are: a field the actor may not see whole is masked here too.
    mask = row_masker(session, actor, table_name(layout.model))
    record_ids: list[int] = []
    rows = _cells(session, statement, kinds, record_ids, progress, mask=mask)
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
    session: Session,
    layout: Layout,
    condition: ColumnElement[bool],
    *,
    owner: str | None = None,
) -> tuple[Select[Any], list[Kind]]:
    """Select id, owner and the layout's columns, joining referenced tables."""
    table = layout.model.__table__
    columns: list[Any] = [table.c.id, table.c[owner] if owner else null()]
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
    *,
    mask: RowMasker | None = None,
) -> Iterator[list[Cell]]:
    result = session.execute(statement.execution_options(yield_per=FETCH_ROWS))
    names = [column.name for column in list(statement.selected_columns)[2:]]
    for record in result:
        record_ids.append(record[0])
        values = list(record[2:])
        if mask is not None:
            # Reference columns are labelled with the layout's name, which is
            # never a column of this table, so they pass unmasked.
            values = [mask(record[1], n, v) for n, v in zip(names, values, strict=True)]
        yield [
            format_value(kind, value) for kind, value in zip(kinds, values, strict=True)
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
