"""Aggregate-only access: counts, sums and averages without a single row.

The policy's ``aggregates`` section names, per resource, the roles that may
ask aggregates and over which rows (a row scope; ``all`` gives aggregate-only
access to every row, as for a director looking at all contacts), the
dimensions to group and filter by, and the measures. Two defences keep rows
from being singled out:

* k-anonymity: a group of fewer than ``min_group_size`` rows is suppressed;
* differencing: filters are equality on allowed dimensions only, and a query
  is refused when one of its groups differs from a group of one of the user's
  recent queries by fewer than k rows (either way round, or after taking out
  the other query's groups nested inside it), since subtracting the two
  answers would describe those few rows.

Every answer is kept in ``aggregate_queries`` as its provenance: the query,
who asked in which roles and scope, the policy's version and digest, where
the audit chain and the field edit history stood, the released answer, the
row ids behind each released group (for the differencing check and for
replay, see :mod:`waggle.governance.aggregate_lineage`) and a digest of their
contributing values. Rows are never pruned; the differencing check reads the
user's last ``history`` queries. The answer carries a summary of its
provenance that names no row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, select, true
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import Base
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.governance.guard import active_policy, record_audit, visible_owner_ids
from waggle.governance.lineage import RESOURCE as LINEAGE
from waggle.governance.lineage import (
    ChainPosition,
    canonical_sha256,
    chain_position,
    policy_digest,
)
from waggle.governance.lineage_models import plain_value
from waggle.governance.models import AggregateQuery
from waggle.governance.policy import SCOPE_ORDER

logger = logging.getLogger(__name__)

MEASURES = ("count", "sum", "avg")
MAX_GROUP_BY = 3
# Dimensions through a reference: ``account.industry`` reads the account's
# industry through the row's ``account_id``.
REFERENCES = {"account": ("account_id", "accounts")}


@dataclass(frozen=True)
class AggregateGrant:
    """What aggregates one resource offers, and to whom over which rows."""

    roles: dict[str, str]
    dimensions: tuple[str, ...]
    measures: tuple[str, ...]
    owner_column: str = "owner_id"


@dataclass(frozen=True)
class AggregateRules:
    """The policy's ``aggregates`` section."""

    min_group_size: int = 5
    history: int = 50
    resources: dict[str, AggregateGrant] = field(default_factory=dict)


@dataclass(frozen=True)
class AggregateGroup:
    key: dict[str, Any]
    value: int | str


@dataclass(frozen=True)
class AggregateProvenance:
    """Where an answer came from, told without the ids of the rows behind it."""

    query_id: int
    computed_at: dt.datetime
    policy_version: str
    policy_digest: str
    chain_seq: int
    chain_hash: str
    checkpoint_id: int | None
    record_count: int
    values_digest: str
    provenance_digest: str

    @classmethod
    def of(cls, query: AggregateQuery) -> AggregateProvenance:
        return cls(
            query_id=query.id,
            computed_at=query.asked_at,
            policy_version=query.policy_version,
            policy_digest=query.policy_digest,
            chain_seq=query.chain_seq,
            chain_hash=query.chain_hash,
            checkpoint_id=query.checkpoint_id,
            record_count=sum(len(group) for group in query.groups),
            values_digest=query.values_digest,
            provenance_digest=query.provenance_digest,
        )

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["computed_at"] = plain_value(self.computed_at)
        return values


@dataclass(frozen=True)
class AggregateResult:
    """An answer: the released groups, how many were suppressed, its provenance."""

    resource: str
    measure: str
    group_by: tuple[str, ...]
    min_group_size: int
    groups: list[AggregateGroup]
    suppressed_groups: int
    provenance: AggregateProvenance | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "measure": self.measure,
            "group_by": list(self.group_by),
            "min_group_size": self.min_group_size,
            "groups": [{"key": g.key, "value": g.value} for g in self.groups],
            "suppressed_groups": self.suppressed_groups,
            "provenance": self.provenance.as_dict() if self.provenance else None,
        }


def parse_aggregates(document: Mapping[str, Any] | None) -> AggregateRules | None:
    """Validate a policy's ``aggregates`` section (``None`` when it has none).

    Raises:
        InvalidInput: an unknown scope, measure or a bad group size.
    """
    if document is None:
        return None
    k = int(document.get("min_group_size", 5))
    if k < 2:
        raise InvalidInput(f"policy aggregates.min_group_size: {k} is below 2")
    grants = {
        str(name): _parse_grant(str(name), body)
        for name, body in (document.get("resources") or {}).items()
    }
    return AggregateRules(
        min_group_size=k, history=int(document.get("history", 50)), resources=grants
    )


def _parse_grant(name: str, body: Mapping[str, Any]) -> AggregateGrant:
    roles = {str(role): str(scope) for role, scope in (body.get("roles") or {}).items()}
    for role, scope in roles.items():
        if scope not in SCOPE_ORDER:
            raise InvalidInput(
                f"policy aggregates.resources.{name}.roles.{role}: unknown scope "
                f"{scope!r}, expected one of {', '.join(SCOPE_ORDER)}"
            )
    measures = tuple(str(m) for m in body.get("measures") or ("count",))
    for measure in measures:
        if measure.partition(":")[0] not in MEASURES:
            raise InvalidInput(
                f"policy aggregates.resources.{name}.measures: unknown {measure!r}, "
                "expected count, sum:<column> or avg:<column>"
            )
    return AggregateGrant(
        roles=roles,
        dimensions=tuple(str(d) for d in body.get("dimensions") or ()),
        measures=measures,
        owner_column=str(body.get("owner_column", "owner_id")),
    )


def run_aggregate(
    session: Session,
    actor: Actor,
    *,
    resource: str,
    measure: str = "count",
    group_by: Sequence[str] = (),
    filters: Mapping[str, Any] | None = None,
) -> AggregateResult:
    """Answer one aggregate query within the policy's aggregate grant.

    The answer's provenance is stored and audited in the caller's
    transaction; the result carries its summary, never a row id.

    Raises:
        PolicyDenied: no role of the actor may aggregate the resource, or the
            query would single out rows by differencing (code
            ``aggregate_differencing``).
        InvalidInput: an unknown resource, measure, dimension or filter.
    """
    rules = active_policy().aggregates or AggregateRules()
    grant = _grant(rules, actor, resource)
    scope = _scope(grant, actor)
    given = dict(filters or {})
    _check_query(resource, grant, measure, group_by, given)
    position = chain_position(session)  # before the read, as figures do

    table = Base.metadata.tables[resource]
    rows = fetch_rows(
        session,
        resource,
        measure=measure,
        dimensions=query_dimensions(group_by, given),
        filters=given,
        condition=_scope_condition(session, actor, table, grant, scope),
    )
    groups = group_rows(rows, width=len(group_by))
    k = rules.min_group_size
    released = [(key, members) for key, members in groups if len(members) >= k]

    sets = [frozenset(row[0] for row in members) for _key, members in released]
    _refuse_differencing(session, actor, resource, sets, k=k, history=rules.history)
    result = AggregateResult(
        resource=resource,
        measure=measure,
        group_by=tuple(group_by),
        min_group_size=k,
        groups=[
            AggregateGroup(
                key=dict(zip(group_by, key, strict=True)),
                value=measure_group(measure, members),
            )
            for key, members in released
        ],
        suppressed_groups=len(groups) - len(released),
    )
    query = _remember(
        session,
        actor,
        result,
        [members for _key, members in released],
        filters=given,
        scope=scope,
        position=position,
    )
    _audit(session, actor, result, given, query_id=query.id)
    return dataclasses.replace(result, provenance=AggregateProvenance.of(query))


def _grant(rules: AggregateRules, actor: Actor, resource: str) -> AggregateGrant:
    grant = rules.resources.get(resource)
    if grant is None:
        raise InvalidInput(
            f"aggregates.resource: {resource!r} offers no aggregates; resources are "
            f"{', '.join(sorted(rules.resources)) or 'none'}"
        )
    if not actor.roles & set(grant.roles):
        raise PolicyDenied(
            f"{actor.username} may not aggregate {resource}",
            action="aggregate",
            resource=resource,
        )
    return grant


def _scope(grant: AggregateGrant, actor: Actor) -> str:
    """Return the widest row scope the actor's roles aggregate the grant over."""
    scopes = [grant.roles[role] for role in actor.roles if role in grant.roles]
    return max(scopes, key=SCOPE_ORDER.index, default="none")


def _check_query(
    resource: str,
    grant: AggregateGrant,
    measure: str,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
) -> None:
    if measure not in grant.measures:
        raise InvalidInput(
            f"aggregates.measure: {measure!r} is not offered on {resource}; "
            f"measures are {', '.join(grant.measures)}"
        )
    if len(group_by) > MAX_GROUP_BY or len(set(group_by)) != len(group_by):
        raise InvalidInput(
            f"aggregates.group_by: at most {MAX_GROUP_BY} distinct dimensions"
        )
    for place, names in (("group_by", group_by), ("filters", list(filters))):
        unknown = sorted(set(names) - set(grant.dimensions))
        if unknown:
            raise InvalidInput(
                f"aggregates.{place}: {unknown} are not dimensions of {resource}; "
                f"dimensions are {', '.join(grant.dimensions)}"
            )


# Rows: (record id, values of the query's dimensions, measured value).
Row = tuple[int, tuple[Any, ...], Any]


def query_dimensions(
    group_by: Sequence[str], filters: Mapping[str, Any]
) -> tuple[str, ...]:
    """Return the dimensions a query reads: those grouped by, then filtered ones."""
    return (*group_by, *sorted(set(filters) - set(group_by)))


def fetch_rows(
    session: Session,
    resource: str,
    *,
    measure: str,
    dimensions: Sequence[str],
    filters: Mapping[str, Any],
    condition: ColumnElement[bool],
) -> list[Row]:
    """Return the live rows of ``resource`` within ``condition`` and ``filters``.

    A count measures nothing: its rows carry ``None`` as measured value.
    """
    table = Base.metadata.tables[resource]
    source: Any = table
    joined: dict[str, Any] = {}
    for name in dimensions:
        relation = name.partition(".")[0] if "." in name else None
        if relation and relation not in joined:
            via, target_name = REFERENCES[relation]
            target = Base.metadata.tables[target_name].alias(f"agg_{relation}")
            source = source.outerjoin(target, target.c.id == table.c[via])
            joined[relation] = target
    dims = [_dimension(table, joined, name) for name in dimensions]
    _kind, _sep, measured = measure.partition(":")
    value = table.c[measured] if measured else None
    where = and_(
        condition,
        *(_dimension(table, joined, name) == v for name, v in filters.items()),
    )
    if "merged_into_id" in table.c:
        where = and_(where, table.c.merged_into_id.is_(None))
    columns = [table.c.id, *dims, *([value] if value is not None else [])]
    statement = select(*columns).select_from(source).where(where)
    width = len(dims)
    return [
        (row[0], tuple(row[1 : 1 + width]), row[-1] if value is not None else None)
        for row in session.execute(statement)
    ]


def _dimension(table: Table, joined: Mapping[str, Any], name: str) -> Any:
    relation, _dot, column = name.rpartition(".")
    return joined[relation].c[column] if relation else table.c[column]


def _scope_condition(
    session: Session, actor: Actor, table: Table, grant: AggregateGrant, scope: str
) -> ColumnElement[bool]:
    if scope == "all":
        return true()
    owners = sorted(visible_owner_ids(session, actor, scope))
    return table.c[grant.owner_column].in_(owners)


def group_rows(
    rows: Sequence[Row], *, width: int
) -> list[tuple[tuple[Any, ...], list[Row]]]:
    """Return the rows grouped by their first ``width`` dimensions, keys sorted."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(row[1][:width], []).append(row)
    return sorted(groups.items(), key=lambda item: _sort_key(item[0]))


def measure_group(measure: str, members: Sequence[Row]) -> int | str:
    """Return the measure of one group: a count, or a sum or average to 0.01."""
    kind = measure.partition(":")[0]
    if kind == "count":
        return len(members)
    values = [Decimal(str(row[2])) for row in members if row[2] is not None]
    total = sum(values, Decimal("0"))
    if kind == "sum":
        return str(total.quantize(Decimal("0.01")))
    average = total / len(values) if values else Decimal("0")
    return str(average.quantize(Decimal("0.01")))


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((part is None, str(part)) for part in key)


# Differencing ------------------------------------------------------------------


def differencing_conflict(
    new: Sequence[frozenset[int]], old: Sequence[frozenset[int]], *, k: int
) -> bool:
    """Return whether answering ``new`` after ``old`` would describe < k rows.

    Subtracting two groups singles out their symmetric difference; subtracting
    the groups of one query nested in a group of the other singles out what
    is left of that group. Either being between 1 and k-1 rows is a conflict.
    """
    for group in new:
        for earlier in old:
            if 0 < len(group ^ earlier) < k:
                return True
    return _nested_remainder_small(new, old, k) or _nested_remainder_small(old, new, k)


def _nested_remainder_small(
    outer: Sequence[frozenset[int]], inner: Sequence[frozenset[int]], k: int
) -> bool:
    for group in outer:
        nested = [part for part in inner if part <= group]
        if nested:
            remainder = group - frozenset().union(*nested)
            if 0 < len(remainder) < k:
                return True
    return False


def _recent(
    session: Session, actor: Actor, resource: str, history: int
) -> list[AggregateQuery]:
    """Return the actor's last ``history`` aggregate queries of ``resource``."""
    return list(
        session.scalars(
            select(AggregateQuery)
            .where(
                AggregateQuery.username == actor.username,
                AggregateQuery.resource == resource,
            )
            .order_by(AggregateQuery.id.desc())
            .limit(history)
        )
    )


def _refuse_differencing(
    session: Session,
    actor: Actor,
    resource: str,
    sets: list[frozenset[int]],
    *,
    k: int,
    history: int,
) -> None:
    for earlier in _recent(session, actor, resource, history):
        old = [frozenset(group) for group in earlier.groups]
        if differencing_conflict(sets, old, k=k):
            raise PolicyDenied(
                f"aggregate query on {resource} refused: with your query "
                f"{earlier.id} it would describe fewer than {k} records",
                code="aggregate_differencing",
                action="aggregate",
                resource=resource,
            )


# Provenance -------------------------------------------------------------------

# The id is left out, as figures leave theirs out, so that a query is stored in
# one INSERT; the audit row ties the id to the digest.
PROVENANCE_FIELDS = (
    "user_id",
    "username",
    "resource",
    "measure",
    "filters",
    "group_by",
    "roles",
    "scope",
    "min_group_size",
    "policy_version",
    "policy_digest",
    "chain_seq",
    "chain_hash",
    "checkpoint_id",
    "edit_seq",
    "groups",
    "result",
    "suppressed_groups",
    "values_digest",
    "asked_at",
)


def aggregate_values_digest(
    measure: str, dimensions: Sequence[str], groups: Sequence[Sequence[Row]]
) -> str:
    """Return the SHA-256 over each released group's rows, by record id.

    Each row contributes its id, measured value (``None`` for a count) and
    dimension values, as plain JSON values.
    """
    plain = [
        sorted(
            [record_id, plain_value(value), [plain_value(v) for v in dims]]
            for record_id, dims, value in members
        )
        for members in groups
    ]
    return canonical_sha256([measure, list(dimensions), plain])


def aggregate_provenance_digest(query: AggregateQuery) -> str:
    """Return the SHA-256 over every column of the query but its id and digest."""
    values = {name: getattr(query, name) for name in PROVENANCE_FIELDS}
    values["asked_at"] = plain_value(query.asked_at)
    return canonical_sha256(values)


def provenance_audit_detail(query: AggregateQuery) -> str:
    """Return the detail of the audit row that vouches for a stored query."""
    return f"aggregate_query={query.id} digest={query.provenance_digest}"


def _remember(
    session: Session,
    actor: Actor,
    result: AggregateResult,
    released: Sequence[Sequence[Row]],
    *,
    filters: Mapping[str, Any],
    scope: str,
    position: ChainPosition,
) -> AggregateQuery:
    policy = active_policy()
    checkpoint = position.checkpoint
    query = AggregateQuery(
        user_id=actor.user_id,
        username=actor.username,
        resource=result.resource,
        measure=result.measure,
        filters={name: plain_value(value) for name, value in filters.items()},
        group_by=list(result.group_by),
        roles=sorted(actor.roles),
        scope=scope,
        min_group_size=result.min_group_size,
        policy_version=policy.version,
        policy_digest=policy_digest(policy),
        chain_seq=position.chain_seq,
        chain_hash=position.chain_hash,
        checkpoint_id=checkpoint.id if checkpoint else None,
        edit_seq=position.edit_seq,
        groups=[sorted(row[0] for row in members) for members in released],
        result=[
            {"key": {n: plain_value(v) for n, v in g.key.items()}, "value": g.value}
            for g in result.groups
        ],
        suppressed_groups=result.suppressed_groups,
        values_digest=aggregate_values_digest(
            result.measure, query_dimensions(result.group_by, filters), released
        ),
        asked_at=now(),
    )
    _store(session, actor, query)
    return query


def _store(session: Session, actor: Actor, query: AggregateQuery) -> None:
    query.provenance_digest = aggregate_provenance_digest(query)
    session.add(query)
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=LINEAGE,
        record_ids=[query.id],
        detail=provenance_audit_detail(query),
    )


def _audit(
    session: Session,
    actor: Actor,
    result: AggregateResult,
    filters: Mapping[str, Any],
    *,
    query_id: int,
) -> None:
    given = ",".join(f"{name}={value}" for name, value in sorted(filters.items()))
    record_audit(
        session,
        actor,
        action="aggregate",
        resource=result.resource,
        detail=(
            f"query={query_id} measure={result.measure} "
            f"group_by={','.join(result.group_by) or '-'} filters={given or '-'} "
            f"groups={len(result.groups)} suppressed={result.suppressed_groups}"
        ),
    )
    logger.info(
        "aggregate answered",
        extra={
            "resource": result.resource,
            "groups": len(result.groups),
            "query_id": query_id,
        },
    )
