"""Import CRM and org-chart records from CSV or XLSX files.

Rows are matched to records by external id (``code`` for regions and
departments): a new id inserts, a known one updates, and a row equal to the
stored record changes nothing, so importing the same file twice is harmless.
Only the columns a file carries are compared and written; an absent column
leaves the stored value alone, an empty cell clears it (unless the field
cannot be empty, then it too is left alone).

Every row ends in exactly one of four counts, kept on the :class:`ImportRun`:
``rows_read = inserted + updated + unchanged + rejected``. A rejected row is
stored whole with its row number, field, reason code and message, and can be
replayed later, as it was or from a corrected file. When an id appears twice
in a file, the first row claims it and every later one is rejected (whatever
became of the first), so the outcome never depends on which row is valid.

A file that lacks a required column is refused as a whole before anything is
written: nothing is half-imported, and the error names the missing columns.

Writes go in chunks through SQLAlchemy Core (prefetch by key, bulk insert
with RETURNING, executemany updates), with one audit row per chunk listing
the records it touched. The whole import is one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from itertools import islice
from typing import IO, Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import InvalidInput, NotFound
from waggle.crm.columns import CellError, Column, Context, Layout, Row, parse_cell
from waggle.crm.layouts import LAYOUTS, chunked, layout_for
from waggle.crm.mapping import (
    ColumnMapping,
    ColumnPlan,
    MappingDocument,
    check_mapping,
    plan_columns,
)
from waggle.crm.models import ImportReject, ImportRun
from waggle.crm.tabular import Cell, read_table, write_table
from waggle.crm.tabular import Table as FileTable
from waggle.governance import (
    active_policy,
    authorize,
    record_audit,
    visible_owner_ids,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5000
AUDIT_IDS = 1000
REASON_LENGTH = 300
REJECT_META = ("_row", "_field", "_reason")

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ImportSummary:
    """What one import run did; the four outcomes add up to ``rows_read``."""

    run_id: int
    resource: str
    filename: str
    file_format: str
    encoding: str | None
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    imported_by: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    replay_of_id: int | None = None
    unknown_columns: list[str] = field(default_factory=list)
    left_open: int = 0

    @property
    def reconciles(self) -> bool:
        outcomes = self.inserted + self.updated + self.unchanged + self.rejected
        return self.rows_read == outcomes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciles": self.reconciles}


@dataclass
class _Counts:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


def import_file(
    session: Session,
    actor: Actor,
    resource: str,
    data: bytes,
    *,
    filename: str,
    file_format: str | None = None,
    mapping: ColumnMapping | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import one CSV or XLSX file of ``resource`` records.

    Raises:
        PolicyDenied: the actor may not import the resource.
        InvalidInput: unknown resource, unreadable file, a mapping that does
            not fit, or required columns missing (then nothing is written).
    """
    layout = layout_for(resource)
    scope = authorize(session, actor, "import", resource)
    mapping = mapping or ColumnMapping()
    check_mapping(mapping, resource=resource, fields=layout.fields, origin=filename)
    table = read_table(data, filename=filename, file_format=file_format)
    plan = plan_columns(table.header, mapping, fields=layout.fields, origin=filename)
    _refuse_missing_columns(layout, plan, mapping, filename=filename, table=table)
    run = _start_run(session, actor, layout, filename, table, plan, mapping)
    importer = _Importer(session, actor, layout, scope, plan, mapping, run, table)
    importer.import_rows(table.rows, total=table.row_estimate, progress=progress)
    return _finish(session, actor, run, importer, plan)


def _refuse_missing_columns(
    layout: Layout,
    plan: ColumnPlan,
    mapping: ColumnMapping,
    *,
    filename: str,
    table: FileTable,
) -> None:
    present = set(plan.fields) | set(mapping.document.defaults)
    missing = [
        column.name
        for column in layout.columns
        if column.required and column.name not in present
    ]
    missing += [
        reference.description
        for reference in layout.references
        if reference.required and not present.intersection(reference.columns)
    ]
    if layout.key not in present and layout.key_fallback not in present:
        missing.insert(0, layout.key)
    if missing:
        rows = sum(1 for _ in table.rows)
        raise InvalidInput(
            f"{layout.name} file {filename}: missing required columns "
            f"{', '.join(dict.fromkeys(missing))}; the file was refused and none "
            f"of its {rows} rows was imported",
            code="missing_columns",
            missing_columns=list(dict.fromkeys(missing)),
            rows_read=rows,
            imported=0,
        )


def _start_run(
    session: Session,
    actor: Actor,
    layout: Layout,
    filename: str,
    table: FileTable,
    plan: ColumnPlan,
    mapping: ColumnMapping,
    *,
    replay_of: ImportRun | None = None,
) -> ImportRun:
    run = ImportRun(
        resource=layout.name,
        filename=filename[-300:],
        encoding=table.encoding,
        file_format=table.file_format,
        started_at=now(),
        imported_by=actor.username,
        columns=plan.header,
        mapping=mapping.stored(),
        replay_of_id=None if replay_of is None else replay_of.id,
    )
    session.add(run)
    session.flush()
    return run


def _finish(
    session: Session,
    actor: Actor,
    run: ImportRun,
    importer: _Importer,
    plan: ColumnPlan,
    *,
    left_open: int = 0,
) -> ImportSummary:
    counts = importer.counts
    run.rows_read, run.inserted, run.updated = (
        counts.read,
        counts.inserted,
        counts.updated,
    )
    run.unchanged, run.rejected = counts.unchanged, counts.rejected
    run.finished_at = now()
    record_audit(
        session,
        actor,
        action="import",
        resource=run.resource,
        detail=f"run {run.id} {run.filename}: read {counts.read} = inserted "
        f"{counts.inserted} + updated {counts.updated} + unchanged "
        f"{counts.unchanged} + rejected {counts.rejected}",
    )
    session.flush()
    logger.info(
        "import finished",
        extra={
            "run_id": run.id,
            "resource": run.resource,
            "rows_read": counts.read,
            "rejected": counts.rejected,
        },
    )
    return summarize(run, unknown_columns=plan.unknown, left_open=left_open)


def summarize(
    run: ImportRun, *, unknown_columns: list[str] | None = None, left_open: int = 0
) -> ImportSummary:
    """Return the summary of a stored run."""
    return ImportSummary(
        run_id=run.id,
        resource=run.resource,
        filename=run.filename,
        file_format=run.file_format,
        encoding=run.encoding,
        rows_read=run.rows_read,
        inserted=run.inserted,
        updated=run.updated,
        unchanged=run.unchanged,
        rejected=run.rejected,
        imported_by=run.imported_by,
        started_at=run.started_at,
        finished_at=run.finished_at,
        replay_of_id=run.replay_of_id,
        unknown_columns=list(unknown_columns or []),
        left_open=left_open,
    )


class _Importer:
    """Carries one run's rows through parse, check and write, chunk by chunk."""

    def __init__(
        self,
        session: Session,
        actor: Actor,
        layout: Layout,
        scope: str,
        plan: ColumnPlan,
        mapping: ColumnMapping,
        run: ImportRun,
        table: FileTable,
    ):
        self.session, self.layout, self.plan, self.run = session, layout, plan, run
        self.table: Table = layout.model.__table__  # type: ignore[assignment]
        self.is_strict_shape = table.file_format == "csv"
        present = frozenset(plan.fields) | frozenset(mapping.document.defaults)
        self.context = Context(
            session=session,
            actor=actor,
            scope=scope,
            now=now(),
            mapping=mapping,
            plan=plan,
            present=present,
        )
        self.columns = [
            layout.column(name) for name in layout.fields if name in present
        ]
        self.nullable = {c.name: c.nullable for c in self.table.columns}
        self.first_row: dict[str, int] = {}
        self.counts = _Counts()

    # Flow -------------------------------------------------------------------

    def import_rows(
        self,
        rows: Iterator[tuple[int, list[Cell]]],
        *,
        total: int | None,
        progress: Progress | None,
    ) -> None:
        """Import every row; a self-referencing file (managers) goes as one chunk."""
        size = None if self.layout.has_self_reference else CHUNK_ROWS
        while chunk := list(islice(rows, size)):
            self._process([Row(number, cells) for number, cells in chunk])
            if progress is not None:
                progress(self.counts.read, total)

    def _process(self, rows: list[Row]) -> None:
        self.counts.read += len(rows)
        for row in rows:
            self._parse(row)
        self._attach_existing(rows)
        self._prefetch_references(rows)
        for row in rows:
            if not row.is_rejected:
                self._fill(row)
        for rule in self.layout.batch_rules:
            rule([row for row in rows if not row.is_rejected], self.context)
        if self.layout.has_self_reference:
            self._reject_orphans(rows)
        self._write(rows)

    # Reading a row ----------------------------------------------------------

    def _parse(self, row: Row) -> None:
        width = len(self.plan.header)
        if self.is_strict_shape and len(row.cells) != width:
            row.reject(
                None,
                "bad_row_shape",
                f"the row has {len(row.cells)} cells but the header has {width} "
                "(a quote or line break out of place?)",
            )
        elif any(_has_value(cell) for cell in row.cells[width:]):
            row.reject(None, "bad_row_shape", f"cells beyond the {width} columns")
        for column in self.columns:
            self._parse_cell(row, column)
        self._claim_key(row)

    def _parse_cell(self, row: Row, column: Column) -> None:
        index = self.plan.fields.get(column.name)
        cell = (
            row.cells[index] if index is not None and index < len(row.cells) else None
        )
        try:
            value = parse_cell(column, cell, self.context.mapping)
        except CellError as error:
            row.reject(column.name, error.code, f"{column.name}: {error.message}")
            return
        if value is None and column.required:
            row.reject(column.name, "required", f"{column.name}: required")
        row.parsed[column.name] = value

    def _claim_key(self, row: Row) -> None:
        layout = self.layout
        key = row.parsed.get(layout.key)
        if key is None and layout.key_fallback is not None:
            key = row.parsed.get(layout.key_fallback)
            row.parsed[layout.key] = key
        for reference in layout.references:
            given = [name for name in reference.columns if name in self.context.present]
            if (
                reference.required
                and given
                and all(row.parsed.get(name) is None for name in given)
            ):
                row.reject(given[0], "required", f"{reference.description}: required")
        if key is None:
            if not any(p.field == layout.key for p in row.problems):
                row.reject(layout.key, "required", f"{layout.key}: required")
            return
        row.key = str(key)
        first = self.first_row.setdefault(row.key, row.number)
        if first != row.number:
            row.reject(
                layout.key,
                "duplicate_key",
                f"{layout.key}: {row.key!r} already appears on row {first}",
            )

    # Looking things up ------------------------------------------------------

    def _attach_existing(self, rows: list[Row]) -> None:
        keys = sorted({row.key for row in rows if row.key and not row.is_rejected})
        key_column = self.table.c[self.layout.key]
        stored: dict[str, dict[str, Any]] = {}
        for part in chunked(keys):
            result = self.session.execute(
                select(self.table).where(key_column.in_(part))
            )
            for record in result.mappings():
                stored[record[self.layout.key]] = dict(record)
        for row in rows:
            if row.key is not None:
                row.existing = stored.get(row.key)

    def _prefetch_references(self, rows: list[Row]) -> None:
        for reference in self.layout.references:
            if reference.by_rules:
                continue
            for via in reference.via:
                if via.column not in self.context.present:
                    continue
                found = self.context.lookups.setdefault(via.column, {})
                wanted = {
                    via.normalize(value) if via.normalize else value
                    for row in rows
                    if (value := row.parsed.get(via.column)) is not None
                }
                missing = sorted(wanted - set(found))
                self._look_up(
                    reference.target, via.attribute, reference.extra, missing, found
                )

    def _look_up(
        self,
        target: Any,
        attribute: str,
        extra: tuple[str, ...],
        values: list[str],
        found: dict[str, list[dict[str, Any]]],
    ) -> None:
        table: Table = target.__table__
        columns = [table.c.id, table.c[attribute], *(table.c[name] for name in extra)]
        for value in values:
            found[value] = []
        for part in chunked(values):
            statement = select(*columns).where(table.c[attribute].in_(part))
            for record in self.session.execute(statement).mappings():
                found[record[attribute]].append(dict(record))

    # Checking a row ---------------------------------------------------------

    def _fill(self, row: Row) -> None:
        for column in self.columns:
            if column.target in self.nullable and not column.is_derived:
                row.values[column.target] = row.parsed[column.name]
        for reference in self.layout.references:
            if not reference.by_rules and not row.is_rejected:
                self._resolve(row, reference)
        for check in (*self.layout.row_rules, self._check_immutable, self._check_scope):
            if not row.is_rejected:
                check(row, self.context)
        for name in [n for n, v in row.values.items() if v is None]:
            if not self.nullable.get(name, True):
                del row.values[name]

    def _resolve(self, row: Row, reference: Any) -> None:
        given = [via for via in reference.via if via.column in self.context.present]
        if not given:
            return
        for via in given:
            raw = row.parsed.get(via.column)
            if raw is None:
                continue
            value = via.normalize(raw) if via.normalize else raw
            matches = self.context.lookups[via.column].get(value, [])
            is_self = reference.target is self.layout.model
            if is_self and via.attribute == self.layout.key:
                if value == row.key:
                    row.reject(
                        via.column,
                        "self_reference",
                        f"{via.column}: {raw!r} is the row itself",
                    )
                    return
                if not matches and value in self.first_row:
                    row.pending[reference.attribute] = value
                    row.values[reference.attribute] = None
                    return
            if len(matches) != 1:
                self._reject_reference(row, reference, via.column, raw, len(matches))
                return
            row.values[reference.attribute] = matches[0]["id"]
            row.resolved[reference.attribute] = matches[0]
            return
        row.values[reference.attribute] = None

    def _reject_reference(
        self, row: Row, reference: Any, column: str, raw: str, count: int
    ) -> None:
        target = reference.target.__tablename__
        if count == 0:
            row.reject(
                column,
                "unknown_reference",
                f"{column}: no record in {target} matches {raw!r}",
            )
        else:
            row.reject(
                column,
                "ambiguous_reference",
                f"{column}: {count} records in {target} match {raw!r}; "
                f"give {reference.columns[0]} instead",
            )

    def _check_immutable(self, row: Row, context: Context) -> None:
        if row.existing is None:
            return
        for attribute in sorted(self.layout.immutable):
            if (
                attribute in row.values
                and row.values[attribute] != row.existing[attribute]
            ):
                name = self.layout.field_of(attribute)
                row.reject(name, "immutable", f"{name}: cannot be changed by an import")

    def _check_scope(self, row: Row, context: Context) -> None:
        owner = self.layout.owner_attribute
        if owner is None or context.scope == "all":
            return
        allowed = visible_owner_ids(context.session, context.actor, context.scope)
        owners = {row.current(owner)}
        if row.existing is not None:
            owners.add(row.existing[owner])
        if not owners <= allowed:
            name = self.layout.field_of(owner)
            row.reject(
                name,
                "out_of_scope",
                f"{name}: the record belongs to someone outside what "
                f"{context.actor.username} may import",
            )

    def _reject_orphans(self, rows: list[Row]) -> None:
        """Reject rows whose parent row (manager, parent region) was rejected."""
        by_key = {
            row.key: row
            for row in rows
            if row.key and self.first_row[row.key] == row.number
        }
        changed = True
        while changed:
            changed = False
            for row in rows:
                if row.is_rejected:
                    continue
                for attribute, key in row.pending.items():
                    parent = by_key.get(key)
                    if parent is None or parent.is_rejected:
                        name = self.layout.field_of(attribute)
                        where = "" if parent is None else f" (row {parent.number})"
                        row.reject(
                            name,
                            "unknown_reference",
                            f"{name}: {key!r}{where} was rejected",
                        )
                        changed = True
                        break

    # Writing ----------------------------------------------------------------

    def _write(self, rows: list[Row]) -> None:
        inserts, updates = [], []
        for row in rows:
            if row.is_rejected:
                self.counts.rejected += 1
            elif row.existing is None:
                inserts.append(row)
            elif row.pending or _differs(row.values, row.existing):
                updates.append(row)
            else:
                self.counts.unchanged += 1
        new_ids = self._insert(inserts)
        self._update(updates)
        self._link_pending([r for r in inserts + updates if r.pending], new_ids)
        if self.layout.after_write is not None:
            self.layout.after_write(updates, self.context)
        self._store_rejects([row for row in rows if row.is_rejected])
        touched = list(new_ids.values()) + [
            row.existing["id"] for row in updates if row.existing
        ]
        self._audit(touched, rows)

    def _insert(self, rows: list[Row]) -> dict[str, int]:
        """Insert new rows; return their ids by key.

        A plain executemany and then a lookup by key (unique, not null) is
        several times faster than INSERT ... RETURNING: psycopg parses each
        many-row RETURNING statement anew, and SQLite would send one row per
        statement if asked to keep the order.
        """
        for group in _grouped([row.values for row in rows]):
            for part in chunked(group, 1000):
                self.session.execute(insert(self.table), part)
        key_column = self.table.c[self.layout.key]
        keys = [row.values[self.layout.key] for row in rows]
        ids: dict[str, int] = {}
        for part in chunked(keys):
            statement = select(key_column, self.table.c.id).where(key_column.in_(part))
            ids.update({key: id_ for key, id_ in self.session.execute(statement)})
        self.counts.inserted += len(rows)
        return ids

    def _update(self, rows: list[Row]) -> None:
        parameters = [
            {
                "_id": row.existing["id"],
                **{f"v_{name}": value for name, value in row.values.items()},
            }
            for row in rows
            if row.existing is not None
        ]
        for group in _grouped(parameters):
            names = [name[2:] for name in group[0] if name != "_id"]
            statement = (
                update(self.table)
                .where(self.table.c.id == bindparam("_id"))
                .values({name: bindparam(f"v_{name}") for name in names})
            )
            for part in chunked(group, 1000):
                self.session.execute(statement, part)
        self.counts.updated += len(rows)

    def _link_pending(self, rows: list[Row], new_ids: dict[str, int]) -> None:
        """Point rows at parents inserted by the same file (now that they have ids)."""
        links: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            own_id = new_ids.get(row.key or "") or (row.existing or {}).get("id")
            for attribute, key in row.pending.items():
                links.setdefault(attribute, []).append(
                    {"_id": own_id, "v": new_ids[key]}
                )
        for attribute, parameters in links.items():
            statement = (
                update(self.table)
                .where(self.table.c.id == bindparam("_id"))
                .values({attribute: bindparam("v")})
            )
            self.session.execute(statement, parameters)

    def _store_rejects(self, rows: list[Row]) -> None:
        records = [
            {
                "run_id": self.run.id,
                "row_number": row.number,
                "field": row.problems[0].field,
                "code": row.problems[0].code,
                "reason": _reason(row),
                "raw": _raw(self.plan.header, row.cells),
            }
            for row in rows
        ]
        for part in chunked(records, 1000):
            self.session.execute(insert(ImportReject), part)
        for row in rows:
            logger.debug(
                "import row rejected",
                extra={
                    "run_id": self.run.id,
                    "row": row.number,
                    "code": row.problems[0].code,
                },
            )

    def _audit(self, record_ids: list[int], rows: list[Row]) -> None:
        for part in chunked(sorted(record_ids), AUDIT_IDS):
            record_audit(
                self.session,
                self.context.actor,
                action="import",
                resource=self.layout.name,
                record_ids=part,
                detail=f"run {self.run.id}: rows {rows[0].number}-{rows[-1].number}",
            )


def _has_value(cell: Cell) -> bool:
    return cell is not None and not (isinstance(cell, str) and not cell.strip())


def _differs(values: dict[str, Any], stored: dict[str, Any]) -> bool:
    return any(stored.get(name) != value for name, value in values.items())


def _grouped(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Group parameter sets by their keys (executemany needs one shape), in order."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(frozenset(item), []).append(item)
    yield from groups.values()


def _reason(row: Row) -> str:
    first, *others = row.problems
    text = first.message
    if others:
        text += " (also " + "; ".join(problem.message for problem in others) + ")"
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 1] + "…"


def _raw(header: list[str], cells: list[Cell]) -> dict[str, object]:
    raw: dict[str, object] = {}
    for index, cell in enumerate(cells):
        name = header[index] if index < len(header) else f"column_{index + 1}"
        raw[name] = _jsonable(cell)
    return raw


def _jsonable(cell: Cell) -> object:
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    if isinstance(cell, Decimal):
        return str(cell)
    return cell


# Runs, rejects and replays -------------------------------------------------


def get_run(session: Session, actor: Actor, run_id: int) -> ImportRun:
    """Return an import run the actor may see (whoever may import its resource).

    Raises:
        NotFound: no such run.
        PolicyDenied: the actor may not import that resource.
    """
    run = session.get(ImportRun, run_id)
    if run is None:
        raise NotFound(f"import run {run_id} does not exist")
    authorize(session, actor, "import", run.resource)
    return run


def list_runs(session: Session, actor: Actor, *, limit: int = 50) -> list[ImportRun]:
    """Return the latest runs of the resources the actor may import."""
    allowed = [name for name in LAYOUTS if _may_import(session, actor, name)]
    statement = (
        select(ImportRun)
        .where(ImportRun.resource.in_(allowed))
        .order_by(ImportRun.id.desc())
        .limit(max(1, min(limit, 500)))
    )
    return list(session.scalars(statement))


def _may_import(session: Session, actor: Actor, resource: str) -> bool:
    return bool(actor.roles & active_policy().roles_allowed(resource, "import"))


def list_rejects(
    session: Session,
    actor: Actor,
    run_id: int,
    *,
    only_open: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[ImportReject]:
    """Return a run's rejected rows in file order.

    Raises:
        NotFound, PolicyDenied: as for :func:`get_run`.
    """
    get_run(session, actor, run_id)
    statement = (
        select(ImportReject)
        .where(ImportReject.run_id == run_id)
        .order_by(ImportReject.row_number, ImportReject.id)
        .offset(offset)
    )
    if only_open:
        statement = statement.where(ImportReject.replayed_at.is_(None))
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.scalars(statement))


def write_rejects(
    session: Session,
    actor: Actor,
    run_id: int,
    target: IO[bytes],
    *,
    file_format: str = "csv",
    encoding: str = "utf-8-sig",
) -> int:
    """Write a run's open rejects as a file to correct and replay.

    It has the original columns, preceded by ``_row``, ``_field`` and
    ``_reason``; the importer ignores those three, and a replay uses ``_row``
    to close the rejects it corrects.

    Raises:
        NotFound, PolicyDenied: as for :func:`get_run`.
    """
    run = get_run(session, actor, run_id)
    rejects = list_rejects(session, actor, run_id, only_open=True)
    header = [*REJECT_META, *run.columns]
    extra = sorted({name for r in rejects for name in r.raw} - set(run.columns))
    rows = (
        [
            r.row_number,
            r.field,
            r.reason,
            *(_cell(r.raw.get(n)) for n in run.columns + extra),
        ]
        for r in rejects
    )
    return write_table(
        target, header + extra, rows, file_format=file_format, encoding=encoding
    )


def _cell(value: object) -> Cell:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# Rejects that a plain replay would get wrong; only a corrected file closes them.
NEEDS_CORRECTION = frozenset({"bad_row_shape", "duplicate_key"})


def replay_rejects(
    session: Session,
    actor: Actor,
    run_id: int,
    *,
    data: bytes | None = None,
    filename: str | None = None,
    file_format: str | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import a run's open rejects again, as stored or from a corrected file.

    Without ``data`` every open reject is tried again against the current
    database (say, after the missing account was imported); rows refused for
    their shape or for repeating an external id need a corrected file and stay
    open (replayed as stored, a repeated id would overwrite the row it
    repeated). With ``data`` the file
    is imported with the run's mapping, and the rejects it names (by ``_row``
    or by external id) are closed. Either way the attempt is a new run that
    reconciles on its own; rows failing again are rejected there.

    Raises:
        NotFound, PolicyDenied: as for :func:`get_run`.
        InvalidInput: as for :func:`import_file`.
    """
    original = get_run(session, actor, run_id)
    layout = layout_for(original.resource)
    scope = authorize(session, actor, "import", original.resource)
    mapping = ColumnMapping(MappingDocument.model_validate(original.mapping or {}))
    open_rejects = list_rejects(session, actor, run_id, only_open=True)
    if data is None:
        table, chosen = _stored_table(original, open_rejects)
        name = f"replay of run {original.id}"
    else:
        name = filename or f"replay of run {original.id}"
        table = read_table(data, filename=name, file_format=file_format)
        rows = list(table.rows)
        table.rows = iter(rows)
        chosen = _named_rejects(open_rejects, rows, table.header, mapping, layout)
    plan = plan_columns(table.header, mapping, fields=layout.fields, origin=name)
    _refuse_missing_columns(layout, plan, mapping, filename=name, table=table)
    run = _start_run(
        session, actor, layout, name, table, plan, mapping, replay_of=original
    )
    importer = _Importer(session, actor, layout, scope, plan, mapping, run, table)
    importer.import_rows(table.rows, total=table.row_estimate, progress=progress)
    replayed_at = now()
    for reject in chosen:
        reject.replayed_at = replayed_at
    left_open = len(open_rejects) - len(chosen)
    return _finish(session, actor, run, importer, plan, left_open=left_open)


def _stored_table(
    run: ImportRun, rejects: list[ImportReject]
) -> tuple[FileTable, list[ImportReject]]:
    chosen = [reject for reject in rejects if reject.code not in NEEDS_CORRECTION]
    rows = [
        (reject.row_number, [_cell(reject.raw.get(name)) for name in run.columns])
        for reject in chosen
    ]
    table = FileTable(
        header=list(run.columns),
        rows=iter(rows),
        file_format="stored",
        encoding=run.encoding,
        row_estimate=len(rows),
    )
    return table, chosen


def _named_rejects(
    rejects: list[ImportReject],
    rows: list[tuple[int, list[Cell]]],
    header: list[str],
    mapping: ColumnMapping,
    layout: Layout,
) -> list[ImportReject]:
    """Return the rejects a correction file names by ``_row`` or by key."""
    names = [name.strip() for name in header]
    numbers = {
        str(cells[names.index("_row")]).strip()
        for _, cells in rows
        if "_row" in names and names.index("_row") < len(cells)
    }
    keys = _keys_of(rows, names, mapping, layout)
    return [
        reject
        for reject in rejects
        if str(reject.row_number) in numbers
        or _raw_key(reject, mapping, layout) in keys
    ]


def _keys_of(
    rows: Iterable[tuple[int, list[Cell]]],
    header: list[str],
    mapping: ColumnMapping,
    layout: Layout,
) -> set[str]:
    plan = plan_columns(header, mapping, fields=layout.fields, origin="replay")
    index = plan.fields.get(layout.key, plan.fields.get(layout.key_fallback or ""))
    if index is None:
        return set()
    return {
        str(cells[index]).strip()
        for _, cells in rows
        if index < len(cells) and cells[index]
    }


def _raw_key(
    reject: ImportReject, mapping: ColumnMapping, layout: Layout
) -> str | None:
    cells = [_cell(value) for value in reject.raw.values()]
    keys = _keys_of([(reject.row_number, cells)], list(reject.raw), mapping, layout)
    return next(iter(keys), None)
