"""Lineage of figures: provenance, drill-down to source records, exact replay.

A figure is a value computed from a query given as data (:class:`FigureSpec`:
resource, measure, filters, grouping). :func:`compute_figure` computes it
through the governance seam (the policy check, the actor's row filter, audit
rows) and stores its provenance: who computed it in which roles and scope,
the policy's version and digest, where the audit chain stood (head and last
signed checkpoint), the contributing record ids and a digest of their
contributing field values.

Every change of a tracked record's field is kept in ``field_edits`` (see
:mod:`waggle.governance.lineage_models`), so :func:`replay_figure` can undo
the edits made since a figure was computed, check the reconstructed values
against the stored digest and recompute the value exactly; it also says
whether today's value differs and which records were added, removed or
changed. Only unclassified (public or internal) fields may contribute to a
figure, because classified values are never copied into the edit history.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Numeric,
    and_,
    func,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import Base, Money
from waggle.core.errors import InvalidInput, NotFound
from waggle.governance.catalogue import active_catalogue
from waggle.governance.chain import GENESIS_HASH, HEAD_ID
from waggle.governance.guard import active_policy, authorize, record_audit, row_filter
from waggle.governance.lineage_models import (
    FieldEdit,
    FigureProvenance,
    decode_value,
    plain_value,
)
from waggle.governance.masking import mask_records
from waggle.governance.models import AuditChainHead, AuditCheckpoint, AuditEntry
from waggle.governance.policy import Policy
from waggle.governance.records import audited_ids

logger = logging.getLogger(__name__)

RESOURCE = "lineage"
MEASURE_KINDS = ("count", "sum", "avg", "share", "weighted", "expected")
RANGE_BOUNDS = ("from", "to", "before")
OWNER_COLUMN = "owner_id"
# Owned tables whose owner is named otherwise: an event belongs to the
# employee who acted.
OWNER_COLUMNS = {"behaviour_events": "actor_id"}
LABEL_COLUMNS = ("name", "subject", "sku", "period")
MAX_GROUP_BY = 3
_CHUNK = 500
_MONEY = Decimal("0.01")

Plain = Any
Row = tuple[int, dict[str, Plain]]


# The query as data ------------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    """What a figure computes: over which records, which measure, how grouped.

    ``filters`` maps a field to a value, a list of values (any of them) or a
    range ``{"from": a, "to": b, "before": c}`` (any of the bounds: ``from``
    and ``to`` inclusive, ``before`` exclusive) over a number, date or
    instant; ``part`` is the share's numerator filter (``measure="share"``);
    ``weights`` maps the weight field's values to percent weights
    (``measure="weighted:amount:stage_id"``). ``measure="expected:amount:
    stage_id"`` is the expected amount of a pipeline: each record's amount
    times its probability, rounded to the cent record by record, where
    ``scores`` maps record ids to the probability a model gave (a decimal
    fraction) and records without a score take their weight field's percent
    from ``weights``. ``places`` rounds averages and shares.
    """

    resource: str
    measure: str = "count"
    filters: dict[str, Any] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    part: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    scores: dict[str, str] = field(default_factory=dict)
    places: int = 2

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> FigureSpec:
        """Build a spec from its JSON form.

        Raises:
            InvalidInput: an unknown key or a value of the wrong shape.
        """
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidInput(f"figure spec: unknown keys {unknown}")
        try:
            return cls(
                resource=str(data["resource"]),
                measure=str(data.get("measure") or "count"),
                filters=dict(data.get("filters") or {}),
                group_by=tuple(str(name) for name in data.get("group_by") or ()),
                part=dict(data.get("part") or {}),
                weights={
                    str(k): int(v) for k, v in (data.get("weights") or {}).items()
                },
                scores={str(k): str(v) for k, v in (data.get("scores") or {}).items()},
                places=int(data.get("places", 2)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"figure spec: expected resource, measure, filters, group_by, part, "
                f"weights, scores and places of the documented shapes ({exc})"
            ) from exc

    def as_dict(self) -> dict[str, Any]:
        shape = {
            "resource": self.resource,
            "measure": self.measure,
            "filters": self.filters,
            "group_by": list(self.group_by),
            "part": self.part,
            "weights": self.weights,
            "places": self.places,
        }
        # A spec without scores keeps the shape (and digests) it always had.
        return shape | ({"scores": self.scores} if self.scores else {})

    @property
    def kind(self) -> str:
        return self.measure.split(":")[0]

    def fields(self) -> tuple[str, ...]:
        """Return the contributing fields (measured, filtered, grouped), sorted."""
        _kind, *measured = self.measure.split(":")
        names = {*measured, *self.filters, *self.part, *self.group_by}
        return tuple(sorted(names))


def _check_spec(spec: FigureSpec) -> None:
    parts = spec.measure.split(":")
    shapes = {"count": 1, "share": 1, "sum": 2, "avg": 2, "weighted": 3, "expected": 3}
    if parts[0] not in MEASURE_KINDS or len(parts) != shapes[parts[0]]:
        raise InvalidInput(
            f"figure spec.measure: {spec.measure!r} is not count, share, "
            "sum:<field>, avg:<field>, weighted:<field>:<weight field> or "
            "expected:<field>:<weight field>"
        )
    if spec.kind == "share" and not spec.part:
        raise InvalidInput("figure spec.part: a share needs the numerator's filters")
    if spec.kind in ("weighted", "expected") and not (spec.weights or spec.scores):
        raise InvalidInput("figure spec.weights: a weighted sum needs weights")
    if spec.scores and spec.kind != "expected":
        raise InvalidInput("figure spec.scores: only an expected amount takes scores")
    _check_scores(spec.scores)
    for where, wanted in (("filters", spec.filters), ("part", spec.part)):
        for name, value in wanted.items():
            if isinstance(value, dict):
                _check_range(f"figure spec.{where}.{name}", value)
    if len(spec.group_by) > MAX_GROUP_BY or not 0 <= spec.places <= 6:
        raise InvalidInput(
            f"figure spec: at most {MAX_GROUP_BY} group_by fields, places 0 to 6"
        )


def _check_scores(scores: Mapping[str, str]) -> None:
    for record_id, probability in scores.items():
        try:
            fraction = Decimal(probability)
            valid = record_id.isdigit() and Decimal(0) <= fraction <= Decimal(1)
        except ArithmeticError:
            valid = False
        if not valid:
            raise InvalidInput(
                f"figure spec.scores: {record_id!r}: {probability!r} is not a record "
                "id with a probability between 0 and 1"
            )


def _check_range(where: str, bounds: Mapping[str, Any]) -> None:
    unknown = sorted(set(bounds) - set(RANGE_BOUNDS))
    if unknown or not bounds:
        raise InvalidInput(
            f"{where}: a range takes from, to and before (got {sorted(bounds)})"
        )
    for bound, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidInput(f"{where}.{bound}: {value!r} is not a number or date")


# Sources ----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The table behind a figure's resource and how its rows are owned."""

    resource: str
    model: type[Base]
    is_owned: bool

    def column(self, name: str) -> InstrumentedAttribute[Any]:
        attribute: InstrumentedAttribute[Any] = getattr(self.model, name)
        return attribute

    @property
    def owner_column(self) -> str | None:
        if not self.is_owned:
            return None
        return OWNER_COLUMNS.get(self.resource, OWNER_COLUMN)


def _source(session: Session, spec: FigureSpec, *, classified: bool = False) -> Source:
    policy = active_policy()
    model = model_for(spec.resource)
    if spec.resource not in policy.resources or model is None:
        raise InvalidInput(
            f"figure spec.resource: {spec.resource!r} is not a governed table"
        )
    columns = set(Base.metadata.tables[spec.resource].columns.keys())
    unknown = sorted(set(spec.fields()) - columns)
    if unknown:
        raise InvalidInput(f"figure spec: {unknown} are not fields of {spec.resource}")
    catalogue = active_catalogue(session)
    for name in () if classified else spec.fields():
        entry = catalogue.field(spec.resource, name)
        if entry is None or entry.is_classified or entry.is_personal:
            raise InvalidInput(
                f"figure spec: {spec.resource}.{name} is classified, personal or "
                "unknown to the catalogue; figures use public or internal fields "
                "that hold no personal information"
            )
    table = Base.metadata.tables[spec.resource]
    for wanted in (spec.filters, spec.part):
        for name, value in wanted.items():
            if isinstance(value, dict):
                _typed_bounds(table.columns[name], value)
    _kind, *measured = spec.measure.split(":")
    for name in measured[:1]:
        column_type = table.columns[name].type
        stored_as = getattr(column_type, "impl_instance", column_type)  # Money
        if not isinstance(stored_as, Integer | Numeric):
            raise InvalidInput(
                f"figure spec.measure: {spec.resource}.{name} is not a number; "
                "sums, averages and weighted sums need a numeric field"
            )
    source = Source(
        resource=spec.resource,
        model=model,
        is_owned=policy.resources[spec.resource].is_owned,
    )
    if source.owner_column is not None and source.owner_column not in columns:
        raise InvalidInput(
            f"figure spec.resource: {spec.resource} has no {source.owner_column}"
        )
    return source


def model_for(table: str) -> type[Base] | None:
    """Return the mapped class of ``table`` (None when no model maps it)."""
    for mapper in Base.registry.mappers:
        if getattr(mapper.local_table, "name", None) == table:
            model: type[Base] = mapper.class_
            return model
    return None


def _visible(
    session: Session, actor: Actor, source: Source, scope: str
) -> ColumnElement[bool]:
    if source.owner_column is None:
        return true()
    return row_filter(session, actor, scope, source.column(source.owner_column))


def _typed_bounds(column: Column[Any], bounds: Mapping[str, Any]) -> dict[str, Any]:
    """Return a range's bounds as values of ``column``'s type.

    Raises:
        InvalidInput: the column is not a number, date or instant, or a bound
            is not a value of its type.
    """
    column_type = column.type
    stored_as = getattr(column_type, "impl_instance", column_type)
    convert: Any
    if isinstance(stored_as, DateTime):
        convert = _instant_bound
    elif isinstance(stored_as, Date):
        convert = _date_bound
    elif isinstance(stored_as, Integer | Numeric):
        places = 2 if isinstance(column_type, Money) else None
        convert = functools.partial(_number_bound, places=places)
    else:
        raise InvalidInput(
            f"figure spec: {column.table.name}.{column.name} takes no range; ranges "
            "apply to numbers, dates and instants"
        )
    try:
        return {bound: convert(value) for bound, value in bounds.items()}
    except (ArithmeticError, ValueError) as exc:
        raise InvalidInput(
            f"figure spec: a bound of {column.name} is not of its type ({exc})"
        ) from exc


# A bound is checked against its column's type here, where the database's
# comparison and the replay's (:func:`_within`, which reads numbers, dates
# and instants from their text) must agree: numbers finite and, on amounts,
# whole cents; dates and instants in ISO form with dashes, never a bare
# number such as 20260105.


def _number_bound(value: Any, *, places: int | None) -> Decimal:
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if places is not None and number != number.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"{value!r} has more than {places} decimal places")
    return number


def _date_bound(value: Any) -> dt.date:
    return dt.date.fromisoformat(_iso_text(value))


def _instant_bound(value: Any) -> dt.datetime:
    return _instant(_iso_text(value))


def _iso_text(value: Any) -> str:
    text = str(value)
    if isinstance(value, int | float) or _is_number(text):
        raise ValueError(f"{value!r} is a number; write dates as 2026-01-31")
    return text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def _instant(value: Any) -> dt.datetime:
    moment = dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _in_range(column: Any, bounds: Mapping[str, Any]) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if "from" in bounds:
        parts.append(column >= bounds["from"])
    if "to" in bounds:
        parts.append(column <= bounds["to"])
    if "before" in bounds:
        parts.append(column < bounds["before"])
    return and_(true(), *parts)


def _condition(source: Source, wanted: Mapping[str, Any]) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    for name, value in sorted(wanted.items()):
        column = source.column(name)
        if isinstance(value, dict):
            table = Base.metadata.tables[source.resource]
            bounds = _typed_bounds(table.columns[name], value)
            parts.append(_in_range(column, bounds))
        elif isinstance(value, list):
            parts.append(column.in_(value))
        elif value is None:
            parts.append(column.is_(None))
        else:
            parts.append(column == value)
    return and_(true(), *parts)


def _fetch(
    session: Session,
    source: Source,
    names: Sequence[str],
    condition: ColumnElement[bool],
) -> list[Row]:
    columns = [source.column(name) for name in names]
    statement = (
        select(source.column("id"), *columns)
        .where(condition)
        .order_by(source.column("id"))
    )
    return [
        (int(row[0]), {n: plain_value(v) for n, v in zip(names, row[1:], strict=True)})
        for row in session.execute(statement)
    ]


# Evaluation (pure) ------------------------------------------------------------------


def matches(values: Mapping[str, Plain], wanted: Mapping[str, Any]) -> bool:
    """Return whether encoded ``values`` satisfy the filters ``wanted``.

    Filters are equality, membership in a list or a range (see
    :class:`FigureSpec`); ranges compare numbers as decimals and dates and
    instants as instants, as the database does.
    """
    for name, expected in wanted.items():
        actual = values.get(name)
        if isinstance(expected, dict):
            if not _within(actual, expected):
                return False
        elif isinstance(expected, list):
            if actual not in [plain_value(item) for item in expected]:
                return False
        elif actual != plain_value(expected):
            return False
    return True


def _within(actual: Plain, bounds: Mapping[str, Any]) -> bool:
    if actual is None:
        return False  # as NULL compares in SQL
    try:
        value = _ordinal(actual)
        return (
            ("from" not in bounds or value >= _ordinal(bounds["from"]))
            and ("to" not in bounds or value <= _ordinal(bounds["to"]))
            and ("before" not in bounds or value < _ordinal(bounds["before"]))
        )
    except (TypeError, ValueError, ArithmeticError):  # a number against a date
        return False


def _ordinal(value: Plain) -> Any:
    """Return a plain number, date or instant as a comparable value."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    text = str(value)
    try:
        return Decimal(text)
    except ArithmeticError:
        return _instant(text)


def evaluate(spec: FigureSpec, rows: Sequence[Row]) -> Any:
    """Return the figure's value over ``rows`` (a string, or a dict by group).

    A share of no rows and an average of no values are ``None``.
    """
    if not spec.group_by:
        return _measure(spec, list(rows))
    groups: dict[tuple[Plain, ...], list[Row]] = {}
    for record_id, values in rows:
        key = tuple(values[name] for name in spec.group_by)
        groups.setdefault(key, []).append((record_id, values))
    named = {
        json.dumps(list(key), ensure_ascii=False): _measure(spec, members)
        for key, members in groups.items()
    }
    return dict(sorted(named.items()))


def _measure(spec: FigureSpec, members: list[Row]) -> str | None:
    kind, *measured = spec.measure.split(":")
    if kind == "count":
        return str(len(members))
    if kind == "share":
        if not members:
            return None
        part = sum(1 for _id, values in members if matches(values, spec.part))
        return str(_round(Decimal(100 * part) / len(members), spec.places))
    if kind == "expected":
        return str(_expected(spec, members, *measured))
    amounts = [v[measured[0]] for _id, v in members if v[measured[0]] is not None]
    numbers = [_number(amount) for amount in amounts]
    if kind == "sum":
        return str(sum(numbers, Decimal(0)).quantize(_MONEY))
    if kind == "avg":
        return (
            str(_round(sum(numbers, Decimal(0)) / len(numbers), spec.places))
            if (numbers)
            else None
        )
    weighted = sum(
        (
            _number(v[measured[0]]) * spec.weights.get(str(v[measured[1]]), 0) / 100
            for _id, v in members
            if v[measured[0]] is not None
        ),
        Decimal(0),
    )
    return str(weighted.quantize(_MONEY))


def _expected(
    spec: FigureSpec, members: list[Row], amount: str, weight: str
) -> Decimal:
    """Sum each record's amount times its probability, rounded record by record.

    A record's probability is its model score when ``scores`` has one, else
    its weight field's percent in ``weights`` (0 when neither names it).
    """
    total = Decimal(0)
    for record_id, values in members:
        if values[amount] is None:
            continue
        score = spec.scores.get(str(record_id))
        if score is not None:
            probability = Decimal(score)
        else:
            probability = Decimal(spec.weights.get(str(values[weight]), 0)) / 100
        total += (_number(values[amount]) * probability).quantize(_MONEY)
    return total.quantize(_MONEY)


def _number(value: Plain) -> Decimal:
    return Decimal(str(value))


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def values_digest(spec: FigureSpec, rows: Sequence[Row]) -> str:
    """Return the SHA-256 over the contributing values of ``rows``, by record id."""
    names = spec.fields()
    ordered = sorted((record_id, [v[n] for n in names]) for record_id, v in rows)
    return canonical_sha256([names, ordered])


def canonical_sha256(value: Any) -> str:
    """Return the SHA-256 of ``value`` as canonical JSON (keys sorted, compact)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The policy and the chain -----------------------------------------------------

_policy_digests: dict[int, tuple[Policy, str]] = {}


def policy_digest(policy: Policy) -> str:
    """Return the SHA-256 of the policy's content (sets sorted, keys sorted)."""
    cached = _policy_digests.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    digest = canonical_sha256(_plain(dataclasses.asdict(policy)))
    _policy_digests[id(policy)] = (policy, digest)
    return digest


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    return value


def _chain_head(session: Session) -> tuple[int, str, AuditCheckpoint | None]:
    head = session.get(AuditChainHead, HEAD_ID)
    checkpoint = session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq_to.desc()).limit(1)
    ).first()
    if head is None:
        return 0, GENESIS_HASH, checkpoint
    return head.seq, head.entry_hash, checkpoint


def _last_edit(session: Session) -> int:
    return int(session.scalar(select(func.max(FieldEdit.id))) or 0)


# Computing --------------------------------------------------------------------


PROVENANCE_FIELDS = (
    "name",
    "resource",
    "spec",
    "value",
    "user_id",
    "username",
    "roles",
    "scope",
    "policy_version",
    "policy_digest",
    "chain_seq",
    "chain_hash",
    "checkpoint_id",
    "checkpoint_seq",
    "record_ids",
    "values_digest",
    "edit_seq",
    "figure_key",
    "computed_at",
)


def provenance_digest(figure: FigureProvenance) -> str:
    """Return the SHA-256 over every provenance field but the digest itself."""
    values = {name: getattr(figure, name) for name in PROVENANCE_FIELDS}
    values["computed_at"] = plain_value(figure.computed_at)
    return canonical_sha256(values)


def compute_figure(
    session: Session,
    actor: Actor,
    *,
    name: str,
    spec: FigureSpec,
    reuse: bool = False,
) -> FigureProvenance:
    """Compute a figure as ``actor`` may see it and store its provenance.

    With ``reuse`` an identical earlier computation (same actor, query,
    policy, records and values) is returned instead of a new row, which keeps
    pages that show the same figures often from filling the table.

    Raises:
        PolicyDenied: the actor may not create lineage or read the resource.
        InvalidInput: the spec is malformed or names a classified field.
    """
    return compute_figures(session, actor, {name: spec}, reuse=reuse)[name]


def compute_figures(
    session: Session,
    actor: Actor,
    specs: Mapping[str, FigureSpec],
    *,
    reuse: bool = False,
) -> dict[str, FigureProvenance]:
    """Compute several figures by name (see :func:`compute_figure`).

    Figures over the same resource with the same filters share one read of
    the records, as a page of headline figures has.

    Raises:
        PolicyDenied, InvalidInput: as for :func:`compute_figure`.
    """
    authorize(session, actor, "create", RESOURCE)
    # Every spec is checked, and every resource authorised, before anything
    # is stored: a refusal leaves the transaction as it was.
    sources: dict[str, Source] = {}
    for spec in specs.values():
        _check_spec(spec)
        sources[spec.resource] = _source(session, spec)
    scopes = {
        resource: authorize(session, actor, "read", resource)
        for resource in sorted(sources)
    }
    position = chain_position(session)
    reads: dict[str, tuple[str, list[Row]]] = {}
    # Figures reading the same records and fields (a sum and its weighted
    # sum) share the narrowed rows and their digest.
    narrowed: dict[tuple[str, tuple[str, ...]], tuple[list[Row], str]] = {}
    figures: dict[str, FigureProvenance] = {}
    for name, spec in specs.items():
        key = _read_key(spec)
        if key not in reads:
            sharing = [other for other in specs.values() if _read_key(other) == key]
            source, scope = sources[spec.resource], scopes[spec.resource]
            rows = _read(session, actor, source, scope, spec.filters, sharing)
            reads[key] = (scope, rows)
        scope, wide = reads[key]
        fields = spec.fields()
        if (key, fields) not in narrowed:
            is_whole = not wide or len(wide[0][1]) == len(fields)  # read no more
            rows = (
                wide if is_whole else [(r, {f: v[f] for f in fields}) for r, v in wide]
            )
            narrowed[(key, fields)] = (rows, values_digest(spec, rows))
        rows, digest = narrowed[(key, fields)]
        fresh = _record_figure(
            session,
            actor,
            name,
            spec,
            scope=scope,
            rows=rows,
            digest=digest,
            position=position,
        )
        figure = (_identical(session, fresh) if reuse else None) or fresh
        if figure is fresh:
            _store(session, actor, figure)
        record_audit(
            session,
            actor,
            action="read",
            resource=spec.resource,
            detail=f"aggregate: figure {name} over {len(rows)} records (lineage "
            f"{figure.id})",
        )
        figures[name] = figure
    return figures


def figure_values(
    session: Session, actor: Actor, specs: Mapping[str, FigureSpec]
) -> dict[str, Any]:
    """Return each figure's value as :func:`compute_figures` does, storing nothing.

    For a page whose figures lineage cannot take (a field they use was
    classified, and classified values never enter the edit history replay
    needs): the same queries, row filters and audit rows, without
    provenance.

    Raises:
        PolicyDenied: the actor may not read a resource.
        InvalidInput: a spec is malformed.
    """
    scopes: dict[str, str] = {}
    reads: dict[str, list[Row]] = {}
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        _check_spec(spec)
        source = _source(session, spec, classified=True)
        if spec.resource not in scopes:
            scopes[spec.resource] = authorize(session, actor, "read", spec.resource)
        key = _read_key(spec)
        if key not in reads:
            sharing = [other for other in specs.values() if _read_key(other) == key]
            reads[key] = _read(
                session, actor, source, scopes[spec.resource], spec.filters, sharing
            )
        values[name] = evaluate(spec, reads[key])
        record_audit(
            session,
            actor,
            action="read",
            resource=spec.resource,
            detail=f"aggregate: figure {name} over {len(reads[key])} records "
            "(no lineage)",
        )
    return values


def _read_key(spec: FigureSpec) -> str:
    return canonical_sha256([spec.resource, spec.filters])


def _read(
    session: Session,
    actor: Actor,
    source: Source,
    scope: str,
    filters: Mapping[str, Any],
    sharing: Sequence[FigureSpec],
) -> list[Row]:
    condition = and_(
        _visible(session, actor, source, scope), _condition(source, filters)
    )
    names = tuple(sorted({n for shared in sharing for n in shared.fields()}))
    return _fetch(session, source, names, condition)


@dataclass(frozen=True)
class ChainPosition:
    """Where the audit chain and the edit history stand at a computation."""

    chain_seq: int
    chain_hash: str
    checkpoint: AuditCheckpoint | None
    edit_seq: int


def chain_position(session: Session) -> ChainPosition:
    """Return the chain's head, its last signed checkpoint and the last edit."""
    chain_seq, chain_hash, checkpoint = _chain_head(session)
    return ChainPosition(chain_seq, chain_hash, checkpoint, _last_edit(session))


def _record_figure(
    session: Session,
    actor: Actor,
    name: str,
    spec: FigureSpec,
    *,
    scope: str,
    rows: Sequence[Row],
    digest: str,
    position: ChainPosition,
) -> FigureProvenance:
    policy = active_policy()
    checkpoint = position.checkpoint
    figure = FigureProvenance(
        name=name,
        resource=spec.resource,
        spec=spec.as_dict(),
        value=evaluate(spec, rows),
        user_id=actor.user_id,
        username=actor.username,
        roles=",".join(sorted(actor.roles)),
        scope=scope,
        policy_version=policy.version,
        policy_digest=policy_digest(policy),
        chain_seq=position.chain_seq,
        chain_hash=position.chain_hash,
        checkpoint_id=checkpoint.id if checkpoint else None,
        checkpoint_seq=checkpoint.seq_to if checkpoint else None,
        record_ids=[record_id for record_id, _values in rows],
        values_digest=digest,
        edit_seq=position.edit_seq,
        computed_at=now(),
    )
    figure.figure_key = canonical_sha256(
        [
            name,
            figure.username,
            figure.roles,
            scope,
            figure.spec,
            figure.policy_digest,
            figure.values_digest,
            figure.record_ids,
            figure.value,
        ]
    )
    return figure


def _identical(session: Session, figure: FigureProvenance) -> FigureProvenance | None:
    earlier = session.scalars(
        select(FigureProvenance)
        .where(FigureProvenance.figure_key == figure.figure_key)
        .order_by(FigureProvenance.id.desc())
        .limit(1)
    ).first()
    if earlier is None or earlier.provenance_digest != provenance_digest(earlier):
        return None
    return earlier


def _store(session: Session, actor: Actor, figure: FigureProvenance) -> None:
    figure.provenance_digest = ""
    session.add(figure)
    session.flush()
    figure.provenance_digest = provenance_digest(figure)
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=RESOURCE,
        record_ids=[figure.id],
        detail=_audit_detail(figure),
    )
    logger.info(
        "figure computed",
        extra={"figure_id": figure.id, "records": len(figure.record_ids)},
    )


def _audit_detail(figure: FigureProvenance) -> str:
    return f"figure={figure.id} digest={figure.provenance_digest}"


# Reading ----------------------------------------------------------------------


def get_figure(session: Session, actor: Actor, figure_id: int) -> FigureProvenance:
    """Return one figure's provenance; the read is audited.

    Whoever may read lineage reads the provenance, but its value only with
    :func:`value_visible`; the source records keep their own policy (see
    :func:`drill_down`).

    Raises:
        PolicyDenied: the actor may not read lineage.
        NotFound: no such figure.
    """
    authorize(session, actor, "read", RESOURCE)
    figure = session.get(FigureProvenance, figure_id)
    if figure is None:
        raise NotFound(f"figure {figure_id} does not exist")
    record_audit(
        session, actor, action="read", resource=RESOURCE, record_ids=[figure_id]
    )
    return figure


def value_visible(
    session: Session,
    actor: Actor,
    figure: FigureProvenance,
    *,
    readable: Sequence[int] | None = None,
) -> bool:
    """Whether ``actor`` may see the figure's value (and replayed values).

    Yes for whoever computed it, and for anyone else only when every record
    behind it lies within their own row scope: the value would otherwise tell
    what the policy hides (a manager's team total, one deal's amount).
    ``readable`` is :func:`readable_record_ids`, when the caller has it.
    """
    if actor.user_id is not None and actor.user_id == figure.user_id:
        return True
    if actor.user_id is None and actor.username == figure.username:
        return True  # Waggle's own jobs, by name
    if readable is None:
        readable = readable_record_ids(session, actor, figure)
    return len(readable) == len(figure.record_ids)


def readable_record_ids(
    session: Session, actor: Actor, figure: FigureProvenance
) -> list[int]:
    """Return the figure's record ids that ``actor`` may read today.

    A provenance names its records, but a viewer learns only the ids within
    their own row scope; the others are merely counted.
    """
    if not actor.roles & active_policy().roles_allowed(figure.resource, "read"):
        return []
    source = _source(session, FigureSpec.of(figure.spec))
    scope = authorize(session, actor, "read", figure.resource)
    found: list[int] = []
    for start in range(0, len(figure.record_ids), _CHUNK):
        chunk = list(figure.record_ids[start : start + _CHUNK])
        found += session.scalars(
            select(source.column("id"))
            .where(source.column("id").in_(chunk))
            .where(_visible(session, actor, source, scope))
            .order_by(source.column("id"))
        )
    return found


def spec_for_viewer(
    figure: FigureProvenance, readable: Sequence[int], *, is_value_shown: bool
) -> dict[str, Any]:
    """Return the figure's spec as ``actor`` may see it.

    An expected amount's spec holds a model score per record; a viewer who
    may not see the value sees only the scores of the records they may read
    (``readable``), and how many were left out.
    """
    spec = dict(figure.spec)
    scores = spec.get("scores")
    if is_value_shown or not scores:
        return spec
    allowed = {str(record_id) for record_id in readable}
    spec["scores"] = {rid: p for rid, p in scores.items() if rid in allowed}
    spec["scores_withheld"] = len(scores) - len(spec["scores"])
    return spec


def check_provenance(session: Session, figure: FigureProvenance) -> list[str]:
    """Return what is wrong with a stored provenance (empty when intact).

    The row's digest must match its fields, and the audit row written when it
    was stored (protected by the audit chain) must name the same digest.
    """
    return stored_provenance_problems(
        session,
        subject=f"figure {figure.id}",
        is_intact=figure.provenance_digest == provenance_digest(figure),
        audit_prefix=f"figure={figure.id} digest=",
        audit_detail=_audit_detail(figure),
    )


def stored_provenance_problems(
    session: Session,
    *,
    subject: str,
    is_intact: bool,
    audit_prefix: str,
    audit_detail: str,
) -> list[str]:
    """Return what is wrong with a stored provenance row of ``subject``.

    ``is_intact`` says whether the row matches its own digest; the lineage
    audit row written with it (found by ``audit_prefix``) must read
    ``audit_detail``.
    """
    problems = []
    if not is_intact:
        problems.append(f"{subject}: the stored provenance does not match its digest")
    audited = session.scalars(
        select(AuditEntry.detail).where(
            AuditEntry.resource == RESOURCE,
            AuditEntry.action == "create",
            AuditEntry.detail.like(f"{audit_prefix}%"),
        )
    ).first()
    if audited is None:
        problems.append(f"{subject}: no audit entry records its provenance")
    elif audited != audit_detail:
        problems.append(f"{subject}: the audit entry names another provenance digest")
    return problems


# Drill-down -------------------------------------------------------------------


@dataclass(frozen=True)
class EditView:
    """One edit of a contributing field, as the drill-down shows it."""

    field: str
    kind: str
    old_value: Plain
    new_value: Plain
    is_withheld: bool
    changed_by: str | None
    changed_at: Any
    is_after_figure: bool

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["changed_at"] = plain_value(self.changed_at)
        return values


@dataclass(frozen=True)
class SourceRecord:
    """One contributing record as the viewer may see it, with its field edits."""

    record_id: int
    label: str | None
    values: dict[str, Plain]
    record: dict[str, Plain]
    edits: list[EditView]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "label": self.label,
            "values": self.values,
            "record": self.record,
            "edits": [edit.as_dict() for edit in self.edits],
        }


@dataclass(frozen=True)
class DrillDown:
    """The records behind a figure: those the viewer may read, and how many not."""

    figure: FigureProvenance
    fields: tuple[str, ...]
    records: list[SourceRecord]
    withheld: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure_id": self.figure.id,
            "fields": list(self.fields),
            "records": [record.as_dict() for record in self.records],
            "withheld": self.withheld,
        }


def drill_down(session: Session, actor: Actor, figure_id: int) -> DrillDown:
    """Return a figure's source records and their fields' edit history.

    The records pass the seam for the viewer: only those within the viewer's
    row scope are shown (the others are counted as withheld), masked as the
    policy masks them for the viewer, and the read is audited.

    Raises:
        PolicyDenied: the actor may not read lineage or the resource.
        NotFound: no such figure.
    """
    figure = get_figure(session, actor, figure_id)
    spec = FigureSpec.of(figure.spec)
    source = _source(session, spec)
    scope = authorize(session, actor, "read", spec.resource)
    found = _visible_records(session, actor, source, scope, figure.record_ids)
    shown, detail = mask_records(
        session, actor, found, owner_column=source.owner_column
    )
    ids = audited_ids(found)
    edits = _edits(session, spec.resource, ids, spec.fields())
    record_audit(
        session,
        actor,
        action="read",
        resource=spec.resource,
        record_ids=ids,
        detail=detail or f"lineage drill-down of figure {figure_id}",
    )
    records = [
        _source_record(record, spec.fields(), edits.get(record_id, []), figure)
        for record_id, record in zip(ids, shown, strict=True)
    ]
    return DrillDown(
        figure=figure,
        fields=spec.fields(),
        records=records,
        withheld=len(figure.record_ids) - len(records),
    )


def _visible_records(
    session: Session, actor: Actor, source: Source, scope: str, ids: Sequence[int]
) -> list[Base]:
    found: list[Base] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        found += session.scalars(
            select(source.model)
            .where(source.column("id").in_(chunk))
            .where(_visible(session, actor, source, scope))
            .order_by(source.column("id"))
        )
    return found


def _edits(
    session: Session, resource: str, ids: Sequence[int], fields: Iterable[str]
) -> dict[int, list[FieldEdit]]:
    found: dict[int, list[FieldEdit]] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.scalars(
            select(FieldEdit)
            .where(
                FieldEdit.resource == resource,
                FieldEdit.record_id.in_(list(ids[start : start + _CHUNK])),
                FieldEdit.field.in_(list(fields)),
            )
            .order_by(FieldEdit.record_id, FieldEdit.field, FieldEdit.id)
        )
        for edit in rows:
            found.setdefault(edit.record_id, []).append(edit)
    return found


def _source_record(
    record: Base,
    fields: Sequence[str],
    edits: Sequence[FieldEdit],
    figure: FigureProvenance,
) -> SourceRecord:
    table = Base.metadata.tables[figure.resource]
    everything = {c.name: plain_value(getattr(record, c.name)) for c in table.columns}
    label = next(
        (str(everything[c]) for c in LABEL_COLUMNS if everything.get(c) is not None),
        None,
    )
    return SourceRecord(
        record_id=int(everything["id"]),
        label=label,
        values={name: everything[name] for name in fields},
        record=everything,
        edits=[
            EditView(
                field=edit.field,
                kind=edit.kind,
                old_value=decode_value(edit.old_value),
                new_value=decode_value(edit.new_value),
                is_withheld=edit.is_withheld,
                changed_by=edit.changed_by,
                changed_at=edit.changed_at,
                is_after_figure=edit.id > figure.edit_seq,
            )
            for edit in edits
        ],
    )


# Replay -----------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """What replaying a figure's provenance found, and how today differs."""

    figure_id: int
    stored_value: Any
    replayed_value: Any
    is_digest_matched: bool
    problems: list[str]
    edits_since: int
    current_value: Any
    added: list[int]
    removed: list[int]
    changed: list[int]
    hidden_differences: int
    is_value_withheld: bool = False
    verdicts: tuple[bool, bool] | None = None  # kept when the values are withheld

    @property
    def is_reproduced(self) -> bool:
        if self.verdicts is not None:
            return self.verdicts[0]
        return (
            not self.problems
            and self.is_digest_matched
            and self.replayed_value == self.stored_value
        )

    @property
    def is_current(self) -> bool:
        if self.verdicts is not None:
            return self.verdicts[1]
        return self.current_value == self.stored_value and not (
            self.added or self.removed or self.changed or self.hidden_differences
        )

    def withheld(self) -> Replay:
        """The same verdicts with the figure's values hidden."""
        return dataclasses.replace(
            self,
            stored_value=None,
            replayed_value=None,
            current_value=None,
            is_value_withheld=True,
            verdicts=(self.is_reproduced, self.is_current),
        )

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["is_reproduced"] = self.is_reproduced
        values["is_current"] = self.is_current
        return values


def replay_figure(session: Session, actor: Actor, figure_id: int) -> Replay:
    """Recompute a figure from its stored records as they were when computed.

    Edits made since are undone from the edit history; the reconstructed
    values must hash to the stored digest and give the stored value. The
    figure is also computed afresh for the viewer to show what changed (ids
    are listed only for records the viewer may read).

    Raises:
        PolicyDenied: the actor may not read lineage or the resource.
        NotFound: no such figure.
    """
    figure = get_figure(session, actor, figure_id)
    spec = FigureSpec.of(figure.spec)
    source = _source(session, spec)
    scope = authorize(session, actor, "read", spec.resource)
    problems = check_provenance(session, figure)
    rows, edits_since = reconstruct(session, source, spec, figure)
    problems += _unmatched(spec, rows)
    condition = and_(
        _visible(session, actor, source, scope), _condition(source, spec.filters)
    )
    current = _fetch(session, source, spec.fields(), condition)
    replay = _compare(
        figure, spec, rows, current, problems=problems, edits_since=edits_since
    )
    gone = _visible_records(session, actor, source, scope, replay.removed)
    replay = dataclasses.replace(
        replay,
        removed=audited_ids(gone),
        hidden_differences=len(replay.removed) - len(gone),
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=spec.resource,
        detail=f"aggregate: replay of figure {figure_id} over "
        f"{len(figure.record_ids)} records",
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[figure_id],
        detail=f"replay: reproduced={replay.is_reproduced} current={replay.is_current}",
    )
    return replay if value_visible(session, actor, figure) else replay.withheld()


def reconstruct(
    session: Session, source: Source, spec: FigureSpec, figure: FigureProvenance
) -> tuple[list[Row], int]:
    """Return the figure's records with their values when it was computed.

    Edits after the figure's ``edit_seq`` are undone newest first; a record
    deleted since is rebuilt from the values its deletion kept. Also returns
    how many edits were undone.
    """
    ids = list(figure.record_ids)
    names = spec.fields()
    now_rows = dict(_fetch(session, source, names, source.column("id").in_(ids)))
    edits = later_edits(session, spec.resource, ids, names, after=figure.edit_seq)
    for edit in edits:
        values = now_rows.setdefault(edit.record_id, {})
        values[edit.field] = decode_value(edit.old_value)
    rows = [(record_id, now_rows.get(record_id, {})) for record_id in ids]
    complete = [(record_id, {n: v.get(n) for n in names}) for record_id, v in rows]
    return complete, len(edits)


def later_edits(
    session: Session,
    resource: str,
    ids: Sequence[int],
    fields: Sequence[str],
    *,
    after: int,
) -> list[FieldEdit]:
    """Return the edits of ``fields`` after edit ``after``, newest first."""
    found: list[FieldEdit] = []
    for start in range(0, len(ids), _CHUNK):
        found += session.scalars(
            select(FieldEdit).where(
                FieldEdit.id > after,
                FieldEdit.resource == resource,
                FieldEdit.record_id.in_(list(ids[start : start + _CHUNK])),
                FieldEdit.field.in_(list(fields)),
            )
        )
    return sorted(found, key=lambda edit: edit.id, reverse=True)


def _unmatched(spec: FigureSpec, rows: Sequence[Row]) -> list[str]:
    wrong = [record_id for record_id, v in rows if not matches(v, spec.filters)]
    if not wrong:
        return []
    return [f"records {wrong[:10]} do not match the figure's filters as replayed"]


def _compare(
    figure: FigureProvenance,
    spec: FigureSpec,
    rows: Sequence[Row],
    current: Sequence[Row],
    *,
    problems: list[str],
    edits_since: int,
) -> Replay:
    then, today = dict(rows), dict(current)
    removed = sorted(set(then) - set(today))
    changed = sorted(r for r in set(then) & set(today) if then[r] != today[r])
    return Replay(
        figure_id=figure.id,
        stored_value=figure.value,
        replayed_value=evaluate(spec, rows),
        is_digest_matched=values_digest(spec, rows) == figure.values_digest,
        problems=problems,
        edits_since=edits_since,
        current_value=evaluate(spec, current),
        added=sorted(set(today) - set(then)),
        removed=removed,
        changed=changed,
        hidden_differences=0,
    )


__all__ = [
    "ChainPosition",
    "DrillDown",
    "FigureSpec",
    "Replay",
    "canonical_sha256",
    "chain_position",
    "check_provenance",
    "compute_figure",
    "compute_figures",
    "drill_down",
    "evaluate",
    "figure_values",
    "get_figure",
    "later_edits",
    "model_for",
    "policy_digest",
    "provenance_digest",
    "readable_record_ids",
    "reconstruct",
    "replay_figure",
    "spec_for_viewer",
    "stored_provenance_problems",
    "value_visible",
]
