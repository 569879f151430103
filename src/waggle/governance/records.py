"""Governed record access: the one path by which services read and write rows.

A :class:`RecordSpec` describes a resource (its table, policy name, owner
column, filters and sort keys). The functions here check the policy, narrow
queries to the actor's rows, page with opaque cursors and write the audit row
in the caller's transaction. Business contexts supply hooks for their own
rules (defaults, derived fields, validation of references).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    asc,
    desc,
    false,
    inspect,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from waggle.core.actor import Actor
from waggle.core.db import Base
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.governance.guard import authorize, ensure_in_scope, record_audit, row_filter
from waggle.governance.lineage_models import note_editor
from waggle.governance.masking import guard_masked_condition, mask_records, table_name
from waggle.governance.retention import ensure_writable

ModelT = TypeVar("ModelT", bound=Base)
Values = dict[str, Any]
Hook = Callable[[Session, Actor, Values], Values]
UpdateHook = Callable[[Session, Actor, Any, Values], Values]

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class RecordSpec(Generic[ModelT]):
    """How one resource is stored, filtered, sorted and governed."""

    name: str
    model: type[ModelT]
    owner_column: str | None = None
    filters: tuple[str, ...] = ()
    search_columns: tuple[str, ...] = ()
    sort_keys: tuple[str, ...] = ("id",)
    before_create: Hook | None = None
    before_update: UpdateHook | None = None
    immutable: frozenset[str] = field(default_factory=frozenset)
    # Rows that lists leave out (merged accounts); get_record still finds them.
    list_condition: ColumnElement[bool] | None = field(default=None, compare=False)

    def column(self, name: str) -> InstrumentedAttribute[Any]:
        attribute: InstrumentedAttribute[Any] = getattr(self.model, name)
        return attribute


@dataclass(frozen=True)
class Page(Generic[ModelT]):
    items: list[ModelT]
    next_cursor: str | None


def create_record(
    session: Session, actor: Actor, spec: RecordSpec[ModelT], values: Values
) -> ModelT:
    """Insert one record after the policy check and the resource's own hook.

    Raises:
        PolicyDenied: the actor may not create it (or not for that owner).
        InvalidInput: a hook refused the values.
        Conflict: a unique key is already taken.
    """
    scope = authorize(session, actor, "create", spec.name)
    note_editor(session, actor.username)
    owner_key = spec.owner_column or ""
    if values.get(owner_key) is not None:
        # An owner named by the caller is checked before the hook runs, so a
        # hook's own refusals (a duplicate, say) never reveal records that lie
        # outside the actor's scope.
        _check_owner(session, actor, spec, scope, values[owner_key], "create")
    if spec.before_create is not None:
        values = spec.before_create(session, actor, dict(values))
    _check_owner(session, actor, spec, scope, values.get(owner_key), "create")
    record = spec.model(**values)
    session.add(record)
    _flush(session, spec)
    record_audit(
        session, actor, action="create", resource=spec.name, record_ids=[_id(record)]
    )
    return record


def get_record(
    session: Session, actor: Actor, spec: RecordSpec[ModelT], record_id: int
) -> ModelT:
    """Return one record the actor may read.

    Raises:
        NotFound: it does not exist.
        PolicyDenied: it exists but lies outside the actor's scope.
    """
    scope = authorize(session, actor, "read", spec.name)
    record = _load(session, spec, record_id)
    _check_owner(
        session, actor, spec, scope, _owner_of(spec, record), "read", record_id
    )
    shown, detail = mask_records(
        session, actor, [record], owner_column=spec.owner_column
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=spec.name,
        record_ids=[record_id],
        detail=detail,
    )
    return shown[0]


def list_records(
    session: Session,
    actor: Actor,
    spec: RecordSpec[ModelT],
    *,
    filters: Mapping[str, Any] | None = None,
    search: str | None = None,
    sort: str = "id",
    cursor: str | None = None,
    limit: int = 50,
    extra_condition: ColumnElement[bool] | None = None,
) -> Page[ModelT]:
    """Return one page of the records the actor may read.

    ``sort`` names a sort key, ``-`` in front for descending. ``cursor`` is the
    ``next_cursor`` of the previous page.

    Raises:
        InvalidInput: an unknown filter or sort key, or a damaged cursor.
    """
    scope = authorize(session, actor, "read", spec.name)
    statement = select(spec.model).where(visible_condition(session, actor, spec, scope))
    guard = _masked_guard(session, actor, spec)
    statement = _apply_filters(statement, spec, filters or {}, search, guard=guard)
    if extra_condition is not None:
        statement = statement.where(extra_condition)
    if spec.list_condition is not None:
        statement = statement.where(spec.list_condition)
    sort_key, descending = _parse_sort(spec, sort)
    statement = _apply_cursor(statement, spec, sort_key, descending, cursor)
    items = list(
        session.scalars(
            _order(statement, spec, sort_key, descending).limit(_page_size(limit) + 1)
        )
    )
    next_cursor = None
    if len(items) > _page_size(limit):
        items = items[: _page_size(limit)]
        next_cursor = _encode_cursor(getattr(items[-1], sort_key), _id(items[-1]))
    record_ids = [_id(i) for i in items]
    items, detail = mask_records(session, actor, items, owner_column=spec.owner_column)
    record_audit(
        session,
        actor,
        action="read",
        resource=spec.name,
        record_ids=record_ids,
        detail=detail,
    )
    return Page(items=items, next_cursor=next_cursor)


Guard = Callable[[str, ColumnElement[bool]], ColumnElement[bool]]


def _masked_guard(session: Session, actor: Actor, spec: RecordSpec[Any]) -> Guard:
    """Keep filters and searches on masked fields to rows the actor sees in full."""
    owner = spec.column(spec.owner_column) if spec.owner_column else None
    table = table_name(spec.model)

    def guard(name: str, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        column = spec.column(name).property.columns[0].name
        return guard_masked_condition(
            session, actor, table, column, condition, owner=owner
        )

    return guard


def visible_condition(
    session: Session, actor: Actor, spec: RecordSpec[Any], scope: str
) -> ColumnElement[bool]:
    """Return the WHERE condition that keeps only rows within ``scope``."""
    if spec.owner_column is None:
        return and_(True)
    return row_filter(session, actor, scope, spec.column(spec.owner_column))


def update_record(
    session: Session,
    actor: Actor,
    spec: RecordSpec[ModelT],
    record_id: int,
    changes: Values,
) -> ModelT:
    """Apply ``changes`` to one record the actor may update.

    Raises:
        NotFound, PolicyDenied, InvalidInput, Conflict: as for create.
    """
    scope = authorize(session, actor, "update", spec.name)
    note_editor(session, actor.username)
    record = _load(session, spec, record_id)
    _check_owner(
        session, actor, spec, scope, _owner_of(spec, record), "update", record_id
    )
    _check_retention(session, actor, spec, record, "update", record_id)
    frozen = sorted(set(changes) & spec.immutable)
    if frozen:
        raise InvalidInput(
            f"{spec.name} {record_id}: fields {frozen} cannot be changed"
        )
    if spec.before_update is not None:
        changes = spec.before_update(session, actor, record, dict(changes))
    if spec.owner_column and spec.owner_column in changes:
        _check_owner(session, actor, spec, scope, changes[spec.owner_column], "update")
    changed = _assign(record, changes)
    _flush(session, spec)
    record_audit(
        session,
        actor,
        action="update",
        resource=spec.name,
        record_ids=[record_id],
        detail=",".join(changed) or "unchanged",
    )
    return record


def delete_record(
    session: Session, actor: Actor, spec: RecordSpec[Any], record_id: int
) -> None:
    """Delete one record the actor may delete.

    Raises:
        NotFound, PolicyDenied: as for get.
        Conflict: other records still refer to it.
    """
    scope = authorize(session, actor, "delete", spec.name)
    note_editor(session, actor.username)
    record = _load(session, spec, record_id)
    _check_owner(
        session, actor, spec, scope, _owner_of(spec, record), "delete", record_id
    )
    _check_retention(session, actor, spec, record, "delete", record_id)
    session.delete(record)
    _flush(session, spec)
    record_audit(
        session, actor, action="delete", resource=spec.name, record_ids=[record_id]
    )


def _load(session: Session, spec: RecordSpec[ModelT], record_id: int) -> ModelT:
    record = session.get(spec.model, record_id)
    if record is None:
        raise NotFound(f"{spec.name} {record_id} does not exist")
    return record


def _owner_of(spec: RecordSpec[Any], record: Any) -> int | None:
    return getattr(record, spec.owner_column) if spec.owner_column else None


def _check_owner(
    session: Session,
    actor: Actor,
    spec: RecordSpec[Any],
    scope: str,
    owner_id: int | None,
    action: str,
    record_id: object = "new",
) -> None:
    if spec.owner_column is None:
        return
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=owner_id,
        action=action,
        resource=spec.name,
        record_id=record_id,
    )


def _check_retention(
    session: Session,
    actor: Actor,
    spec: RecordSpec[Any],
    record: Any,
    action: str,
    record_id: int,
) -> None:
    # Read-only retention rules (a departed owner's records) bind every write.
    ensure_writable(
        session,
        actor,
        resource=spec.name,
        record_id=record_id,
        owner_id=_owner_of(spec, record),
        action=action,
    )


def _assign(record: Any, changes: Values) -> list[str]:
    changed = []
    for name, value in changes.items():
        if getattr(record, name) != value:
            setattr(record, name, value)
            changed.append(name)
    return sorted(changed)


def _flush(session: Session, spec: RecordSpec[Any]) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"{spec.name}: the change clashes with an existing record "
            f"(a unique key is taken or the record is still referenced)"
        ) from exc


def _id(record: Any) -> int:
    identity = inspect(record).identity
    return int(identity[0]) if identity else int(record.id)


def _apply_filters(
    statement: Select[Any],
    spec: RecordSpec[Any],
    filters: Mapping[str, Any],
    search: str | None,
    *,
    guard: Guard = lambda _name, condition: condition,
) -> Select[Any]:
    for name, value in filters.items():
        if name not in spec.filters:
            raise InvalidInput(
                f"{spec.name}: cannot filter on {name!r}; "
                f"filters are {', '.join(spec.filters) or 'none'}"
            )
        if value is not None:
            statement = statement.where(guard(name, spec.column(name) == value))
    if search:
        if not spec.search_columns:
            return statement.where(false())
        pattern = f"%{search}%"
        statement = statement.where(
            or_(
                *(
                    guard(name, spec.column(name).ilike(pattern))
                    for name in spec.search_columns
                )
            )
        )
    return statement


def _parse_sort(spec: RecordSpec[Any], sort: str) -> tuple[str, bool]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in spec.sort_keys:
        raise InvalidInput(
            f"{spec.name}: cannot sort on {key!r}; "
            f"sort keys are {', '.join(spec.sort_keys)}"
        )
    return key, descending


def _order(
    statement: Select[Any], spec: RecordSpec[Any], key: str, descending: bool
) -> Select[Any]:
    direction = desc if descending else asc
    column, identity = spec.column(key), spec.column("id")
    if key == "id":
        return statement.order_by(direction(identity))
    # NULLs sort last in both directions, on both databases.
    return statement.order_by(column.is_(None), direction(column), direction(identity))


def _apply_cursor(
    statement: Select[Any],
    spec: RecordSpec[Any],
    key: str,
    descending: bool,
    cursor: str | None,
) -> Select[Any]:
    if not cursor:
        return statement
    value, last_id = _decode_cursor(cursor, spec.name)
    column, identity = spec.column(key), spec.column("id")
    beyond_id = identity < last_id if descending else identity > last_id
    if key == "id":
        return statement.where(beyond_id)
    if value is None:
        return statement.where(column.is_(None), beyond_id)
    beyond_value = column < value if descending else column > value
    return statement.where(
        or_(beyond_value, and_(column == value, beyond_id), column.is_(None))
    )


def _encode_cursor(value: Any, record_id: int) -> str:
    tagged: list[Any]
    if isinstance(value, dt.datetime):
        tagged = ["datetime", value.isoformat()]
    elif isinstance(value, dt.date):
        tagged = ["date", value.isoformat()]
    elif isinstance(value, Decimal):
        tagged = ["decimal", str(value)]
    else:
        tagged = ["plain", value]
    raw = json.dumps([tagged, record_id], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor: str, resource: str) -> tuple[Any, int]:
    try:
        (kind, value), record_id = json.loads(base64.urlsafe_b64decode(cursor))
        parsers: dict[str, Callable[[Any], Any]] = {
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "decimal": Decimal,
            "plain": lambda plain: plain,
        }
        parsed = None if value is None else parsers[kind](value)
        return parsed, int(record_id)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(
            f"{resource}: the cursor is damaged; start from page one"
        ) from exc


def _page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE_SIZE))


def audited_ids(records: Sequence[Any]) -> list[int]:
    """Return the primary keys of ``records`` (for audit rows of bulk work)."""
    return [_id(record) for record in records]
