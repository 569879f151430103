"""Lineage of aggregate answers: provenance that shows no row, and exact replay.

Every answer of :func:`waggle.governance.aggregates.run_aggregate` is kept in
``aggregate_queries`` with its provenance. The row ids behind its groups are
evidence for the differencing check and for replay, not something to show:
an aggregate-only viewer was never granted a single row. So
:func:`aggregate_provenance` lists a group's ids only as far as the viewer
may read them under the resource's ordinary read policy (the others are
counted), and shows the groups' keys, values and sizes only to the asker:
an answer read by anyone else would escape the differencing check of their
own queries.

:func:`replay_aggregate` rebuilds the rows as they were when the query was
answered, undoing the field edits made since (also those of referenced
accounts, and rebuilding deleted rows from the values their deletion kept),
checks them against the stored digest, recomputes each group's measure and
tells whether today's answer over the same rows differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.db import Base
from waggle.core.errors import NotFound
from waggle.governance.aggregates import (
    REFERENCES,
    Row,
    aggregate_provenance_digest,
    aggregate_values_digest,
    fetch_rows,
    group_rows,
    measure_group,
    provenance_audit_detail,
    query_dimensions,
)
from waggle.governance.guard import (
    active_policy,
    authorize,
    record_audit,
    row_filter,
)
from waggle.governance.lineage import (
    OWNER_COLUMN,
    OWNER_COLUMNS,
    later_edits,
    model_for,
    stored_provenance_problems,
)
from waggle.governance.lineage import RESOURCE as LINEAGE
from waggle.governance.lineage_models import decode_value, plain_value
from waggle.governance.models import AggregateQuery

_CHUNK = 500


# Reading ----------------------------------------------------------------------


def _load(session: Session, actor: Actor, query_id: int) -> AggregateQuery:
    authorize(session, actor, "read", LINEAGE)
    query = session.get(AggregateQuery, query_id)
    if query is None:
        raise NotFound(f"aggregate query {query_id} does not exist")
    return query


def check_aggregate_provenance(session: Session, query: AggregateQuery) -> list[str]:
    """Return what is wrong with a stored aggregate query (empty when intact).

    The row's digest must match its columns, and the audit row written when
    it was answered (protected by the audit chain) must name the same digest.
    """
    return stored_provenance_problems(
        session,
        subject=f"aggregate query {query.id}",
        is_intact=query.provenance_digest == aggregate_provenance_digest(query),
        audit_prefix=f"aggregate_query={query.id} digest=",
        audit_detail=provenance_audit_detail(query),
    )


def values_visible(actor: Actor, query: AggregateQuery) -> bool:
    """Return whether ``actor`` may see the query's groups: keys, values, sizes.

    Only whoever asked it. An answer shown to anyone else would not enter
    their own query history, so they could ask a query differing from it by
    fewer than k rows and be answered: the differencing defence holds only if
    every released answer is one its reader asked.
    """
    if actor.user_id is not None:
        return actor.user_id == query.user_id
    return actor.username == query.username  # Waggle's own jobs, by name


def readable_ids(session: Session, actor: Actor, query: AggregateQuery) -> set[int]:
    """Return the query's record ids that ``actor`` may read today.

    The resource's ordinary read policy decides: an aggregate grant alone
    gives no ids, and rows outside the viewer's row scope are only counted.
    """
    if not actor.roles & active_policy().roles_allowed(query.resource, "read"):
        return set()
    scope = authorize(session, actor, "read", query.resource)
    table = Base.metadata.tables[query.resource]
    condition = _read_condition(session, actor, query.resource, scope)
    found: set[int] = set()
    for chunk in _chunks(_all_ids(query)):
        found.update(
            session.scalars(select(table.c.id).where(table.c.id.in_(chunk), condition))
        )
    return found


def _read_condition(
    session: Session, actor: Actor, resource: str, scope: str
) -> ColumnElement[bool]:
    if not active_policy().resources[resource].is_owned:
        return true()
    model = model_for(resource)
    if model is None:
        return false()  # an owned resource without a model: show nothing
    owner = OWNER_COLUMNS.get(resource, OWNER_COLUMN)  # events: their actor
    return row_filter(session, actor, scope, getattr(model, owner))


def _all_ids(query: AggregateQuery) -> list[int]:
    return sorted({int(record_id) for group in query.groups for record_id in group})


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


# Provenance -------------------------------------------------------------------


@dataclass(frozen=True)
class GroupProvenance:
    """One released group as a viewer may see it.

    With the values withheld, key, value and sizes are ``None``; the ids are
    only ever those the viewer may read.
    """

    key: dict[str, Any] | None
    value: int | str | None
    record_count: int | None
    record_ids: list[int]
    hidden_records: int | None


@dataclass(frozen=True)
class AggregateLineage:
    """A stored aggregate query's provenance, as one viewer may see it."""

    query: AggregateQuery
    groups: list[GroupProvenance]
    problems: list[str]
    is_value_withheld: bool

    def as_dict(self) -> dict[str, Any]:
        query, shown = self.query, not self.is_value_withheld
        return {
            "query_id": query.id,
            "resource": query.resource,
            "measure": query.measure,
            "filters": query.filters,
            "group_by": query.group_by,
            "min_group_size": query.min_group_size,
            "computed_at": plain_value(query.asked_at),
            "computed_by": {
                "user_id": query.user_id,
                "username": query.username,
                "roles": query.roles,
                "scope": query.scope,
            },
            "policy": {"version": query.policy_version, "digest": query.policy_digest},
            "audit": {
                "chain_seq": query.chain_seq,
                "chain_hash": query.chain_hash,
                "checkpoint_id": query.checkpoint_id,
            },
            "edit_seq": query.edit_seq,
            "values_digest": query.values_digest,
            "provenance_digest": query.provenance_digest,
            "record_count": len(_all_ids(query)) if shown else None,
            "suppressed_groups": query.suppressed_groups if shown else None,
            "groups": [dataclasses.asdict(group) for group in self.groups],
            "value_withheld": self.is_value_withheld,
            "is_intact": not self.problems,
            "problems": self.problems,
        }


def aggregate_provenance(
    session: Session, actor: Actor, query_id: int
) -> AggregateLineage:
    """Return an aggregate query's provenance and whether it is intact.

    Each released group lists the record ids the viewer may read under the
    resource's read policy and counts the others; keys, values and sizes are
    shown as :func:`values_visible` allows. The read is audited.

    Raises:
        PolicyDenied: the actor may not read lineage.
        NotFound: no such aggregate query.
    """
    query = _load(session, actor, query_id)
    problems = check_aggregate_provenance(session, query)
    readable = readable_ids(session, actor, query)
    shown = values_visible(actor, query)
    groups = [
        _group_provenance(members or [], answer, readable, is_shown=shown)
        for members, answer in zip_longest(query.groups, query.result)
    ]
    listed = sorted({rid for group in groups for rid in group.record_ids})
    _audit_read(
        session,
        actor,
        query,
        listed,
        detail=f"aggregate provenance: {len(listed)} record ids shown",
    )
    return AggregateLineage(
        query=query, groups=groups, problems=problems, is_value_withheld=not shown
    )


def _group_provenance(
    members: Sequence[int],
    answer: Mapping[str, Any] | None,
    readable: set[int],
    *,
    is_shown: bool,
) -> GroupProvenance:
    ids = sorted(rid for rid in members if rid in readable)
    if not is_shown:
        return GroupProvenance(None, None, None, ids, None)
    return GroupProvenance(
        key=(answer or {}).get("key"),
        value=(answer or {}).get("value"),
        record_count=len(members),
        record_ids=ids,
        hidden_records=len(members) - len(ids),
    )


def _audit_read(
    session: Session,
    actor: Actor,
    query: AggregateQuery,
    listed: Sequence[int],
    *,
    detail: str,
) -> None:
    record_audit(
        session,
        actor,
        action="read",
        resource=LINEAGE,
        record_ids=[query.id],
        detail=detail,
    )
    if listed:
        record_audit(
            session,
            actor,
            action="read",
            resource=query.resource,
            record_ids=listed,
            detail=f"record ids behind aggregate query {query.id}",
        )


# Reconstruction ---------------------------------------------------------------


@dataclass(frozen=True)
class Reconstruction:
    """The rows behind each released group, with their values when answered."""

    groups: list[list[Row]]
    edits_undone: int
    problems: list[str]


def reconstruct_aggregate(session: Session, query: AggregateQuery) -> Reconstruction:
    """Return each released group's rows as they were when the query was answered.

    The measured field, the own dimensions and the reference columns have
    the edits after ``edit_seq`` undone, newest first, and so have the
    referenced rows' dimension fields (``account.industry``); a row deleted
    since is rebuilt from the values its deletion kept. A field whose history
    is withheld (classified or personal) cannot be rebuilt and is named.
    """
    dims = query_dimensions(query.group_by, query.filters)
    ids = _all_ids(query)
    own, undone, withheld = _values_then(
        session, query.resource, ids, _own_fields(query.measure, dims), query.edit_seq
    )
    referenced: dict[str, dict[int, dict[str, Any]]] = {}
    for relation, columns in _referenced_fields(dims).items():
        via, target = REFERENCES[relation]
        targets = sorted({v[via] for v in own.values() if v.get(via) is not None})
        referenced[relation], count, hidden = _values_then(
            session, target, targets, columns, query.edit_seq
        )
        undone, withheld = undone + count, withheld + hidden
    rows = {
        rid: _row_then(rid, own.get(rid, {}), referenced, query.measure, dims)
        for rid in ids
    }
    return Reconstruction(
        groups=[[rows[int(rid)] for rid in group] for group in query.groups],
        edits_undone=undone,
        problems=[
            f"aggregate query {query.id}: the edit history of {name} is withheld "
            "(classified or personal), so its earlier values cannot be rebuilt"
            for name in withheld
        ],
    )


def _own_fields(measure: str, dims: Sequence[str]) -> list[str]:
    measured = measure.partition(":")[2]
    names = {measured} if measured else set()
    for name in dims:
        relation, dot, _column = name.partition(".")
        names.add(REFERENCES[relation][0] if dot else name)
    return sorted(names)


def _referenced_fields(dims: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {}
    for name in dims:
        relation, dot, column = name.partition(".")
        if dot:
            found.setdefault(relation, set()).add(column)
    return {relation: sorted(columns) for relation, columns in found.items()}


def _values_then(
    session: Session,
    resource: str,
    ids: Sequence[int],
    fields: Sequence[str],
    after: int,
) -> tuple[dict[int, dict[str, Any]], int, list[str]]:
    table = Base.metadata.tables[resource]
    values: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        statement = select(table.c.id, *(table.c[name] for name in fields)).where(
            table.c.id.in_(chunk)
        )
        for row in session.execute(statement):
            values[int(row[0])] = {
                name: plain_value(value)
                for name, value in zip(fields, row[1:], strict=True)
            }
    edits = later_edits(session, resource, ids, fields, after=after)
    withheld = set()
    for edit in edits:  # newest first: the oldest later edit's old value wins
        if edit.is_withheld:
            withheld.add(f"{resource}.{edit.field}")
        values.setdefault(edit.record_id, {})[edit.field] = decode_value(edit.old_value)
    return values, len(edits), sorted(withheld)


def _row_then(
    record_id: int,
    values: Mapping[str, Any],
    referenced: Mapping[str, Mapping[int, Mapping[str, Any]]],
    measure: str,
    dims: Sequence[str],
) -> Row:
    found = []
    for name in dims:
        relation, dot, column = name.partition(".")
        if not dot:
            found.append(values.get(name))
            continue
        via = values.get(REFERENCES[relation][0])
        target = referenced[relation].get(via, {}) if via is not None else {}
        found.append(target.get(column))
    measured = measure.partition(":")[2]
    return record_id, tuple(found), values.get(measured) if measured else None


# Replay -----------------------------------------------------------------------


@dataclass(frozen=True)
class GroupReplay:
    """One released group replayed; key and values ``None`` when withheld."""

    key: dict[str, Any] | None
    stored_value: int | str | None
    replayed_value: int | str | None
    record_count: int | None
    is_reproduced: bool


@dataclass(frozen=True)
class AggregateReplay:
    """What replaying an aggregate query found, and whether today differs.

    ``current_groups`` is today's answer over the same rows, shown only to a
    viewer who sees the values and may read every row behind them; ``changed``
    lists the readable rows whose values changed since, ``hidden_changes``
    counts the others.
    """

    query_id: int
    groups: list[GroupReplay]
    is_digest_matched: bool
    problems: list[str]
    edits_since: int
    is_reproduced: bool
    is_current: bool
    current_groups: list[dict[str, Any]] | None
    changed: list[int]
    hidden_changes: int
    is_value_withheld: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def replay_aggregate(session: Session, actor: Actor, query_id: int) -> AggregateReplay:
    """Recompute an aggregate answer from its rows as they were when answered.

    The rebuilt values must hash to the stored digest and give the stored
    value of every group. Today's answer over the same rows is computed too,
    to tell whether it differs; ids appear only where the viewer may read
    them, values only as :func:`values_visible` allows. Audited.

    Raises:
        PolicyDenied: the actor may not read lineage.
        NotFound: no such aggregate query.
    """
    query = _load(session, actor, query_id)
    then = reconstruct_aggregate(session, query)
    problems = [
        *check_aggregate_provenance(session, query),
        *then.problems,
        *_misplaced(query, then.groups),
    ]
    dims = query_dimensions(query.group_by, query.filters)
    is_matched = (
        aggregate_values_digest(query.measure, dims, then.groups) == query.values_digest
    )
    shown = values_visible(actor, query)
    groups = _replayed_groups(query, then.groups, is_shown=shown)
    is_reproduced = (
        not problems and is_matched and all(group.is_reproduced for group in groups)
    )

    today = _rows_today(session, query, dims)
    current = _answer(query, list(today.values()))
    readable = readable_ids(session, actor, query)
    changed = _changed(then.groups, today)
    shown_changes = [rid for rid in changed if rid in readable]
    replay = AggregateReplay(
        query_id=query.id,
        groups=groups,
        is_digest_matched=is_matched,
        problems=problems,
        edits_since=then.edits_undone,
        is_reproduced=is_reproduced,
        is_current=current == query.result,
        current_groups=current if shown and readable >= set(_all_ids(query)) else None,
        changed=shown_changes,
        hidden_changes=len(changed) - len(shown_changes),
        is_value_withheld=not shown,
    )
    _audit_replay(session, actor, query, replay)
    return replay


def _misplaced(query: AggregateQuery, groups: Sequence[Sequence[Row]]) -> list[str]:
    if len(groups) != len(query.result):
        return [
            f"aggregate query {query.id}: the stored answer has "
            f"{len(query.result)} groups, its stored records {len(groups)}"
        ]
    dims = query_dimensions(query.group_by, query.filters)
    problems = []
    for number, (members, answer) in enumerate(zip(groups, query.result, strict=True)):
        key = answer.get("key") or {}
        wanted = {**query.filters, **{name: key.get(name) for name in query.group_by}}
        wrong = [
            row
            for row in members
            if any(row[1][dims.index(name)] != value for name, value in wanted.items())
        ]
        if wrong:
            problems.append(
                f"aggregate query {query.id}: {len(wrong)} records of group "
                f"{number + 1} do not match its key or filters as replayed"
            )
    return problems


def _replayed_groups(
    query: AggregateQuery, groups: Sequence[Sequence[Row]], *, is_shown: bool
) -> list[GroupReplay]:
    replayed = []
    for members, answer in zip_longest(groups, query.result):
        stored = (answer or {}).get("value")
        value = measure_group(query.measure, members) if members is not None else None
        is_reproduced = members is not None and answer is not None and value == stored
        replayed.append(
            GroupReplay(
                key=(answer or {}).get("key") if is_shown else None,
                stored_value=stored if is_shown else None,
                replayed_value=value if is_shown else None,
                record_count=len(members or []) if is_shown else None,
                is_reproduced=is_reproduced,
            )
        )
    return replayed


def _rows_today(
    session: Session, query: AggregateQuery, dims: Sequence[str]
) -> dict[int, Row]:
    table = Base.metadata.tables[query.resource]
    found: dict[int, Row] = {}
    for chunk in _chunks(_all_ids(query)):
        rows = fetch_rows(
            session,
            query.resource,
            measure=query.measure,
            dimensions=dims,
            filters=query.filters,
            condition=table.c.id.in_(chunk),
        )
        for record_id, values, value in rows:
            plain = tuple(plain_value(v) for v in values)
            found[record_id] = (record_id, plain, plain_value(value))
    return found


def _answer(query: AggregateQuery, rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [
        {
            "key": dict(zip(query.group_by, key, strict=True)),
            "value": measure_group(query.measure, members),
        }
        for key, members in group_rows(rows, width=len(query.group_by))
        if len(members) >= query.min_group_size
    ]


def _changed(then: Sequence[Sequence[Row]], today: Mapping[int, Row]) -> list[int]:
    rows = {row[0]: row for members in then for row in members}
    return sorted(rid for rid, row in rows.items() if today.get(rid) != row)


def _audit_replay(
    session: Session, actor: Actor, query: AggregateQuery, replay: AggregateReplay
) -> None:
    record_audit(
        session,
        actor,
        action="aggregate",
        resource=query.resource,
        detail=f"replay of aggregate query {query.id} over "
        f"{len(_all_ids(query))} records",
    )
    _audit_read(
        session,
        actor,
        query,
        replay.changed,
        detail=f"aggregate replay: reproduced={replay.is_reproduced} "
        f"current={replay.is_current}",
    )


__all__ = [
    "AggregateLineage",
    "AggregateReplay",
    "GroupProvenance",
    "GroupReplay",
    "Reconstruction",
    "aggregate_provenance",
    "check_aggregate_provenance",
    "readable_ids",
    "reconstruct_aggregate",
    "replay_aggregate",
    "values_visible",
]
