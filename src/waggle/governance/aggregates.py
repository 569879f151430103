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
  answers would describe those few rows. The row ids behind each released
  group are kept in ``aggregate_queries`` for that check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, select, true
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.db import Base
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.governance.guard import active_policy, record_audit, visible_owner_ids
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
class AggregateResult:
    """An answer: the released groups and how many were suppressed."""

    resource: str
    measure: str
    group_by: tuple[str, ...]
    min_group_size: int
    groups: list[AggregateGroup]
    suppressed_groups: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "measure": self.measure,
            "group_by": list(self.group_by),
            "min_group_size": self.min_group_size,
            "groups": [{"key": g.key, "value": g.value} for g in self.groups],
            "suppressed_groups": self.suppressed_groups,
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

    Raises:
        PolicyDenied: no role of the actor may aggregate the resource, or the
            query would single out rows by differencing (code
            ``aggregate_differencing``).
        InvalidInput: an unknown resource, measure, dimension or filter.
    """
    rules = active_policy().aggregates or AggregateRules()
    grant = _grant(rules, actor, resource)
    scope = _scope(grant, actor)
    _check_query(resource, grant, measure, group_by, filters or {})
    rows = _fetch(session, actor, resource, grant, scope, measure, group_by, filters)
    groups = _group(rows)
    k = rules.min_group_size
    released = {key: members for key, members in groups.items() if len(members) >= k}
    sets = [frozenset(rid for rid, _value in members) for members in released.values()]
    _refuse_differencing(session, actor, resource, sets, k=k, history=rules.history)
    _remember(session, actor, resource, measure, sets, history=rules.history)
    result = AggregateResult(
        resource=resource,
        measure=measure,
        group_by=tuple(group_by),
        min_group_size=k,
        groups=[
            AggregateGroup(
                key=dict(zip(group_by, key, strict=True)), value=_measure(measure, m)
            )
            for key, m in sorted(released.items(), key=lambda item: _sort_key(item[0]))
        ],
        suppressed_groups=len(groups) - len(released),
    )
    _audit(session, actor, result, filters or {})
    return result


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
    scopes = [grant.roles[role] for role in actor.roles if role in grant.roles]
    return max(scopes, key=SCOPE_ORDER.index)


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


Row = tuple[int, tuple[Any, ...], Any]


def _fetch(
    session: Session,
    actor: Actor,
    resource: str,
    grant: AggregateGrant,
    scope: str,
    measure: str,
    group_by: Sequence[str],
    filters: Mapping[str, Any] | None,
) -> list[Row]:
    table = Base.metadata.tables[resource]
    source: Any = table
    joined: dict[str, Any] = {}
    for name in {*group_by, *(filters or {})}:
        relation = name.partition(".")[0] if "." in name else None
        if relation and relation not in joined:
            via, target_name = REFERENCES[relation]
            target = Base.metadata.tables[target_name].alias(f"agg_{relation}")
            source = source.outerjoin(target, target.c.id == table.c[via])
            joined[relation] = target
    dims = [_dimension(table, joined, name) for name in group_by]
    _kind, _sep, measured = measure.partition(":")
    value = table.c[measured] if measured else table.c.id
    condition = and_(
        _scope_condition(session, actor, table, grant, scope),
        *(_dimension(table, joined, name) == v for name, v in (filters or {}).items()),
    )
    if "merged_into_id" in table.c:
        condition = and_(condition, table.c.merged_into_id.is_(None))
    statement = select(table.c.id, value, *dims).select_from(source).where(condition)
    return [(row[0], tuple(row[2:]), row[1]) for row in session.execute(statement)]


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


def _group(rows: list[Row]) -> dict[tuple[Any, ...], list[tuple[int, Any]]]:
    groups: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    for record_id, key, value in rows:
        groups.setdefault(key, []).append((record_id, value))
    return groups


def _measure(measure: str, members: list[tuple[int, Any]]) -> int | str:
    kind = measure.partition(":")[0]
    if kind == "count":
        return len(members)
    values = [Decimal(str(value)) for _id, value in members if value is not None]
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


def _remember(
    session: Session,
    actor: Actor,
    resource: str,
    measure: str,
    sets: list[frozenset[int]],
    *,
    history: int,
) -> None:
    session.add(
        AggregateQuery(
            user_id=actor.user_id,
            username=actor.username,
            resource=resource,
            measure=measure,
            groups=[sorted(group) for group in sets],
        )
    )
    session.flush()
    keep = [query.id for query in _recent(session, actor, resource, history)]
    session.execute(
        delete(AggregateQuery).where(
            AggregateQuery.username == actor.username,
            AggregateQuery.resource == resource,
            AggregateQuery.id.not_in(keep),
        )
    )


def _audit(
    session: Session, actor: Actor, result: AggregateResult, filters: Mapping[str, Any]
) -> None:
    given = ",".join(f"{name}={value}" for name, value in sorted(filters.items()))
    record_audit(
        session,
        actor,
        action="aggregate",
        resource=result.resource,
        detail=(
            f"measure={result.measure} group_by={','.join(result.group_by) or '-'} "
            f"filters={given or '-'} "
            f"groups={len(result.groups)} suppressed={result.suppressed_groups}"
        ),
    )
    logger.info(
        "aggregate answered",
        extra={"resource": result.resource, "groups": len(result.groups)},
    )
