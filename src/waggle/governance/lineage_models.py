"""Tables of lineage: the stored provenance of figures and the edits of fields.

The flush hook at the end writes a :class:`FieldEdit` for every changed or
deleted field of a tracked business table, in the transaction of the change,
whichever service made it through the ORM; ORM-enabled bulk ``UPDATE``
statements (``session.execute(update(Account)...)``, as merges and the
public pool use) are diffed row by row around their execution. Plain SQL
on the connection bypasses both; replay then finds values that do not match
the stored digest and says so instead of reproducing a wrong figure.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    event,
    select,
)
from sqlalchemy import inspect as inspect_model
from sqlalchemy.engine import Result
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    UOWTransaction,
    mapped_column,
)

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, Money, UtcDateTime

# Business tables whose field edits are kept (the sources of report figures).
TRACKED_TABLES = frozenset(
    {"accounts", "contacts", "opportunities", "quotas", "products", "activities"}
)
# Bookkeeping columns whose every change would only add noise.
UNTRACKED_COLUMNS = frozenset({"updated_at"})
EDITOR_KEY = "waggle.lineage.editor"
_CHUNK = 500


class FigureProvenance(Base):
    """One computed figure and everything needed to reproduce it.

    ``spec`` is the query as data (resource, measure, filters, grouping);
    ``record_ids`` the records that contributed and ``values_digest`` the hash
    of their contributing field values at ``computed_at``. ``chain_seq`` and
    ``checkpoint_id`` place the computation on the audit chain;
    ``provenance_digest`` covers every other field, and the audit row written
    with the provenance repeats it, so a changed row is detected.
    """

    __tablename__ = "figure_provenance"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(120))
    resource: Mapped[str] = mapped_column(String(60))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    value: Mapped[Any] = mapped_column(JsonText, nullable=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(80))
    roles: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(20))
    policy_version: Mapped[str] = mapped_column(String(200))
    policy_digest: Mapped[str] = mapped_column(String(64))
    chain_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    chain_hash: Mapped[str] = mapped_column(String(64))
    checkpoint_id: Mapped[int | None] = mapped_column(Integer)
    checkpoint_seq: Mapped[int | None] = mapped_column(BigInteger)
    record_ids: Mapped[list[int]] = mapped_column(JsonText, default=list)
    values_digest: Mapped[str] = mapped_column(String(64))
    # The newest field edit when the figure was computed: edits after it are
    # undone to see the values as they were.
    edit_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    figure_key: Mapped[str] = mapped_column(String(64), index=True)
    provenance_digest: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class FieldEdit(Base):
    """One change of one field of a tracked business record: old and new value.

    Written in the transaction of the change. Values are JSON-encoded as
    lineage hashes them; a classified (confidential or secret) field's values
    are never copied here: ``is_withheld`` says it changed, nothing more.
    ``kind`` is ``update`` or ``delete`` (then ``new_value`` is empty).
    """

    __tablename__ = "field_edits"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[int] = mapped_column(BigInteger)
    field: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(10), default="update")
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    is_withheld: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str | None] = mapped_column(String(80))
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (
        Index("ix_field_edits_record", "resource", "record_id", "field", "id"),
    )


# Values as lineage hashes and stores them ----------------------------------------


_JSON_SCALARS = frozenset({int, str, bool, float})


def plain_value(value: Any) -> Any:
    """Return ``value`` as a JSON scalar: amounts and times as canonical text."""
    if value is None or type(value) in _JSON_SCALARS:  # most values, at once
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float | str):
        return value
    return str(value)


def encode_value(value: Any) -> str:
    return json.dumps(plain_value(value), ensure_ascii=False)


def decode_value(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# Recording edits at flush -----------------------------------------------------------


def note_editor(session: Session, username: str) -> None:
    """Name who the session's next field edits are by (the governed writer)."""
    session.info[EDITOR_KEY] = username


@event.listens_for(Session, "before_flush")
def _record_field_edits(
    session: Session, _flush: UOWTransaction, _instances: object
) -> None:
    with session.no_autoflush:
        edits = [
            edit
            for record in session.dirty
            if _table_of(record) in TRACKED_TABLES
            for edit in _changed_fields(session, record)
        ]
        edits += [
            edit
            for record in session.deleted
            if _table_of(record) in TRACKED_TABLES
            for edit in _deleted_fields(session, record)
        ]
    session.add_all(edits)


@event.listens_for(Session, "do_orm_execute")
def _record_bulk_edits(state: ORMExecuteState) -> Result[Any] | None:
    if not state.is_update:
        return None
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if table is None or name not in TRACKED_TABLES:
        return None
    # The statement's table carries ORM annotations; the plain Table selects
    # rows, not entities.
    table = Base.metadata.tables[name]
    session = state.session
    before = _before_bulk(session, state, table)
    result = state.invoke_statement()
    if before:
        after = _rows_by_id(session, table, sorted(before))
        session.add_all(_bulk_edits(session, name, table, before, after))
    return result


def _before_bulk(
    session: Session, state: ORMExecuteState, table: Any
) -> dict[int, dict[str, Any]]:
    parameters = state.parameters
    if parameters:
        # A bulk UPDATE by primary key: one parameter set per row, each
        # naming its row's id.
        sets = parameters if isinstance(parameters, list) else [parameters]
        ids = [int(row["id"]) for row in sets if isinstance(row, dict) and "id" in row]
        return _rows_by_id(session, table, sorted(set(ids)))
    where = getattr(state.statement, "whereclause", None)
    statement = select(table) if where is None else select(table).where(where)
    return _rows(session, statement)


def _rows_by_id(
    session: Session, table: Any, ids: list[int]
) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.update(_rows(session, select(table).where(table.c.id.in_(chunk))))
    return found


def _rows(session: Session, statement: Any) -> dict[int, dict[str, Any]]:
    with session.no_autoflush:
        found = session.execute(statement.execution_options(autoflush=False))
        return {int(row["id"]): dict(row) for row in found.mappings()}


def _bulk_edits(
    session: Session,
    name: str,
    table: Any,
    before: dict[int, dict[str, Any]],
    after: dict[int, dict[str, Any]],
) -> list[FieldEdit]:
    edits = []
    for record_id, old_row in sorted(before.items()):
        new_row = after.get(record_id, {})
        for column in table.columns:
            if column.name in UNTRACKED_COLUMNS:
                continue
            old, new = old_row.get(column.name), new_row.get(column.name)
            if old != new:
                edits.append(_new_edit(session, name, record_id, column.name, old, new))
    return edits


def _table_of(record: object) -> str | None:
    table = getattr(type(record), "__table__", None)
    return getattr(table, "name", None)


def _changed_fields(session: Session, record: Any) -> list[FieldEdit]:
    state = inspect_model(record)
    found = []
    for prop in state.mapper.column_attrs:
        column = prop.columns[0]
        history = state.attrs[prop.key].history
        if column.name in UNTRACKED_COLUMNS or not history.has_changes():
            continue
        # An attribute set while expired has no old value in memory; the row
        # in the database still holds it until this flush.
        before = (
            history.deleted[0] if history.deleted else _stored(session, record, column)
        )
        old = _canonical(column, before)
        new = _canonical(column, history.added[0] if history.added else None)
        if old != new:
            found.append(_edit(session, record, column.name, old, new, "update"))
    return found


def _deleted_fields(session: Session, record: Any) -> list[FieldEdit]:
    state = inspect_model(record)
    return [
        _edit(
            session,
            record,
            prop.columns[0].name,
            _canonical(prop.columns[0], getattr(record, prop.key)),
            None,
            "delete",
        )
        for prop in state.mapper.column_attrs
        if prop.columns[0].name not in UNTRACKED_COLUMNS
    ]


def _stored(session: Session, record: Any, column: Any) -> Any:
    table = record.__table__
    return session.execute(
        select(column).where(table.c.id == record.id)
    ).scalar_one_or_none()


def _canonical(column: Any, value: Any) -> Any:
    if value is None or not isinstance(column.type, Money):
        return value
    return Decimal(value).quantize(Decimal("0.01"))


def _edit(
    session: Session, record: Any, field: str, old: Any, new: Any, kind: str
) -> FieldEdit:
    table, record_id = str(record.__table__.name), int(record.id)
    return _new_edit(session, table, record_id, field, old, new, kind)


def _new_edit(
    session: Session,
    table: str,
    record_id: int,
    field: str,
    old: Any,
    new: Any,
    kind: str = "update",
) -> FieldEdit:
    withheld = _is_classified(session, table, field)
    return FieldEdit(
        resource=table,
        record_id=record_id,
        field=field,
        kind=kind,
        old_value=None if withheld else encode_value(old),
        new_value=None if withheld or kind == "delete" else encode_value(new),
        is_withheld=withheld,
        changed_by=session.info.get(EDITOR_KEY),
        changed_at=now(),
    )


def _is_classified(session: Session, table: str, field: str) -> bool:
    # Imported here: the catalogue reads governance tables of its own.
    from waggle.governance.catalogue import active_catalogue

    entry = active_catalogue(session).field(table, field)
    # Personal information is never copied either: the edit history is
    # append-only, so a copy could not be erased with the record.
    return entry is None or entry.is_classified or entry.is_personal
