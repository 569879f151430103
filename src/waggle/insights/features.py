"""Behaviour features of opportunities as of an instant, and their levels.

:func:`compute_features` reads behaviour events and CRM history for many
opportunities at once (one set of grouped queries per chunk of ids) and never
uses anything that happened after ``as_of``: an event, a stage change or a
closed deal after the instant cannot change a feature. A deal closed before
``as_of`` is seen as it stood just before it closed (its *reference instant*
is its close minus one microsecond), which is the snapshot the win model
learns from. Windows ("last 28 days") count back from the reference instant.

What is read, and from where:

- touches: the rep reaching the customer (rep chat messages, calls, e-mails
  sent, meetings, visits, quotes, trials, logged activities) in the last 28
  days, per week, and its ratio to the *top-rep norm*: the median touches per
  week, in the 28 days before closing, of the deals won in the year before
  ``as_of`` by the top 20% of representatives by amount won in that year;
- interactions (touches plus customer messages, e-mails received and
  materials opened): days since the last one, distinct contacts in 28 and 90
  days, whether a decision maker (``Contact.decision_role`` or the
  opportunity's named decision maker) took part in the last 90 days;
- response times over the last 90 days of chats and e-mails: when one side
  starts writing and the other answers, the wait from the first message of
  the run to the first answer; the medians for the customer and the rep;
- stage velocity: days in the stage the deal was in at the reference instant
  over the median days won deals spent in that stage (closed before
  ``as_of``);
- tracker hits in the last 90 days that are not negated: objections,
  competitor mentions, pricing;
- materials opened in the last 90 days, with pages viewed and dwell;
- meetings and field visits in the last 90 days;
- the CRM fields amount, source and forecast category, at their current
  value (Waggle keeps no history of them; the forecast category is
  overwritten when a deal closes, so the win model leaves it out).

Levels for the naive-Bayes model (:func:`feature_levels`), thresholds as in
:data:`THRESHOLDS`:

====================  ========================================================
feature               levels
====================  ========================================================
touch_ratio           none (no touch in 28 d), low (< 0.5 of the norm),
                      below (< 1.0), at_norm (>= 1.0), unknown (no norm)
recency               recent (<= 3 d), week (<= 7 d), stale (<= 21 d),
                      silent (> 21 d), never
customer_response     fast (<= 4 h), day (<= 24 h), slow (> 24 h), none
rep_response          fast (<= 1 h), day (<= 8 h), slow (> 8 h), none
contacts              none, single, two, multi (>= 3) over 90 days
decision_maker        yes, no
stage_velocity        fast (< 0.5), on_pace (<= 1.0), slow (<= 2.0),
                      stalled (> 2.0), unknown (no norm for the stage)
objections            none, some (1-2), many (>= 3)
competitors           none, some (1-2), many (>= 3)
pricing               no, yes
materials             none, skimmed (< 180 s of dwell in all), read
meetings              none, one, several (>= 2)
visits                none, some (>= 1)
amount                small (< 100k), medium (< 500k), large (< 2M),
                      very_large (CNY as stored, currency not converted)
source                the source in lower case, or unknown
forecast_category     pipeline, best_case, commit, closed, omitted
====================  ========================================================
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Text,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from waggle.core.clock import as_utc
from waggle.core.db import UtcDateTime
from waggle.crm.models import (
    Contact,
    DecisionRole,
    Opportunity,
    OpportunityStatus,
    StageChange,
)
from waggle.signals.events import EventType
from waggle.signals.models import BehaviourEvent

DAY_SECONDS = 86_400.0
CHUNK = 900
JUST_BEFORE = dt.timedelta(microseconds=1)
# Events are selected by opportunity, so the column is never NULL in results.
_OPPORTUNITY_ID = type_coerce(BehaviourEvent.opportunity_id, Integer)
NORM_WINDOW = dt.timedelta(days=365)
TOP_REP_SHARE = 0.2

TOUCH_TYPES = (
    EventType.CALL,
    EventType.EMAIL_SENT,
    EventType.MEETING_HELD,
    EventType.FIELD_VISIT,
    EventType.QUOTE_SENT,
    EventType.TRIAL_STARTED,
    EventType.ACTIVITY_LOGGED,
)
INTERACTION_TYPES = (
    *TOUCH_TYPES,
    EventType.CHAT_MESSAGE,
    EventType.EMAIL_RECEIVED,
    EventType.MATERIAL_OPENED,
)
CONVERSATION_TYPES = (
    EventType.CHAT_MESSAGE,
    EventType.EMAIL_SENT,
    EventType.EMAIL_RECEIVED,
)

THRESHOLDS: dict[str, tuple[float, ...]] = {
    "touch_ratio": (0.5, 1.0),
    "recency_days": (3, 7, 21),
    "customer_response_hours": (4, 24),
    "rep_response_hours": (1, 8),
    "stage_velocity": (0.5, 1.0, 2.0),
    "mentions": (1, 3),
    "material_read_seconds": (180,),
    "amount": (100_000, 500_000, 2_000_000),
}

LEVELS: dict[str, tuple[str, ...]] = {
    "touch_ratio": ("none", "low", "below", "at_norm", "unknown"),
    "recency": ("recent", "week", "stale", "silent", "never"),
    "customer_response": ("fast", "day", "slow", "none"),
    "rep_response": ("fast", "day", "slow", "none"),
    "contacts": ("none", "single", "two", "multi"),
    "decision_maker": ("yes", "no"),
    "stage_velocity": ("fast", "on_pace", "slow", "stalled", "unknown"),
    "objections": ("none", "some", "many"),
    "competitors": ("none", "some", "many"),
    "pricing": ("no", "yes"),
    "materials": ("none", "skimmed", "read"),
    "meetings": ("none", "one", "several"),
    "visits": ("none", "some"),
    "amount": ("small", "medium", "large", "very_large"),
    "source": (),  # open vocabulary: whatever sources the CRM holds
    "forecast_category": ("pipeline", "best_case", "commit", "closed", "omitted"),
}


@dataclass(frozen=True, slots=True)
class Features:
    """What Waggle knew about one opportunity at its reference instant."""

    opportunity_id: int
    reference_at: dt.datetime
    touches_28d: int = 0
    touches_per_week: float = 0.0
    top_rep_touch_norm: float | None = None
    touch_ratio: float | None = None
    days_since_interaction: float | None = None
    customer_response_hours: float | None = None
    rep_response_hours: float | None = None
    contacts_28d: int = 0
    contacts_90d: int = 0
    is_decision_maker_engaged: bool = False
    stage_id: int | None = None
    days_in_stage: float | None = None
    stage_norm_days: float | None = None
    stage_velocity: float | None = None
    objection_hits: int = 0
    competitor_mentions: int = 0
    pricing_mentions: int = 0
    materials_opened: int = 0
    material_pages: int = 0
    material_dwell_seconds: int = 0
    meetings: int = 0
    visits: int = 0
    amount: Decimal = Decimal(0)
    source: str | None = None
    forecast_category: str | None = None


@dataclass(frozen=True, slots=True)
class _Deal:
    id: int
    owner_id: int | None
    stage_id: int
    stage_entered_at: dt.datetime
    created_at: dt.datetime
    closed_at: dt.datetime | None
    amount: Decimal
    source: str | None
    forecast_category: str | None


class _EpochSeconds(FunctionElement[float]):
    """Seconds since 1970 of a stored instant, on SQLite and PostgreSQL alike."""

    type = Float()
    name = "epoch_seconds"
    inherit_cache = True


@compiles(_EpochSeconds)
def _epoch_postgresql(element: _EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(_EpochSeconds, "sqlite")
def _epoch_sqlite(element: _EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps instants as UTC text; julianday reads them to the millisecond.
    instant = compiler.process(element.clauses, **kw)
    return f"((julianday({instant}) - 2440587.5) * 86400.0)"


def reference_instant(closed_at: dt.datetime | None, as_of: dt.datetime) -> dt.datetime:
    """Return the instant a deal is seen at: ``as_of``, or just before its close."""
    if closed_at is not None and as_utc(closed_at) <= as_of:
        return as_utc(closed_at) - JUST_BEFORE
    return as_of


def compute_features(
    session: Session, opportunity_ids: Iterable[int], *, as_of: dt.datetime
) -> dict[int, Features]:
    """Return the features of each opportunity as of ``as_of``, by id.

    Ids that name no opportunity, or one created after ``as_of``, are left
    out. Reads without a policy check: callers (the insights service) check
    the policy and scope first.
    """
    as_of = as_utc(as_of)
    wanted = sorted(set(opportunity_ids))
    stage_norms = stage_norm_days(session, as_of=as_of)
    touch_norm = top_rep_touch_norm(session, as_of=as_of)
    found: dict[int, Features] = {}
    for start in range(0, len(wanted), CHUNK):
        deals = _load_deals(session, wanted[start : start + CHUNK], as_of)
        found.update(_chunk_features(session, deals, as_of, stage_norms, touch_norm))
    return found


def _load_deals(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> list[_Deal]:
    rows = session.execute(
        select(
            Opportunity.id,
            Opportunity.owner_id,
            Opportunity.stage_id,
            Opportunity.stage_entered_at,
            Opportunity.created_at,
            Opportunity.closed_at,
            Opportunity.amount,
            Opportunity.source,
            Opportunity.forecast_category,
        )
        .where(Opportunity.id.in_(ids), Opportunity.created_at <= as_of)
        .order_by(Opportunity.id)
    )
    return [_Deal(*row) for row in rows]


def _chunk_features(
    session: Session,
    deals: list[_Deal],
    as_of: dt.datetime,
    stage_norms: dict[int, float],
    touch_norm: float | None,
) -> dict[int, Features]:
    if not deals:
        return {}
    ids = [deal.id for deal in deals]
    counts = _event_counts(session, ids, as_of)
    last_seen = _last_interactions(session, ids, as_of)
    responses = _response_hours(session, ids, as_of)
    materials = _material_totals(session, ids, as_of)
    stages = _stages_at(session, deals, as_of)
    return {
        deal.id: _assemble(
            deal,
            reference_instant(deal.closed_at, as_of),
            counts.get(deal.id, {}),
            last_seen.get(deal.id),
            responses.get(deal.id, (None, None)),
            materials.get(deal.id, (0, 0, 0)),
            stages.get(deal.id),
            stage_norms,
            touch_norm,
        )
        for deal in deals
    }


def _assemble(
    deal: _Deal,
    reference_at: dt.datetime,
    counts: dict[str, int],
    last_seen: dt.datetime | None,
    responses: tuple[float | None, float | None],
    materials: tuple[int, int, int],
    stage: tuple[int, dt.datetime] | None,
    stage_norms: dict[int, float],
    touch_norm: float | None,
) -> Features:
    touches = counts.get("touches_28d", 0)
    per_week = touches / 4.0
    stage_id, days_in_stage = (None, None)
    if stage is not None:
        stage_id = stage[0]
        days_in_stage = _days(reference_at - stage[1])
    norm_days = stage_norms.get(stage_id) if stage_id is not None else None
    return Features(
        opportunity_id=deal.id,
        reference_at=reference_at,
        touches_28d=touches,
        touches_per_week=per_week,
        top_rep_touch_norm=touch_norm,
        touch_ratio=_ratio(per_week, touch_norm),
        days_since_interaction=(
            None if last_seen is None else _days(reference_at - last_seen)
        ),
        customer_response_hours=responses[0],
        rep_response_hours=responses[1],
        contacts_28d=counts.get("contacts_28d", 0),
        contacts_90d=counts.get("contacts_90d", 0),
        is_decision_maker_engaged=bool(counts.get("decision_maker", 0)),
        stage_id=stage_id,
        days_in_stage=days_in_stage,
        stage_norm_days=norm_days,
        stage_velocity=_ratio(days_in_stage, norm_days),
        objection_hits=counts.get("objections", 0),
        competitor_mentions=counts.get("competitors", 0),
        pricing_mentions=counts.get("pricing", 0),
        materials_opened=materials[0],
        material_pages=materials[1],
        material_dwell_seconds=materials[2],
        meetings=counts.get("meetings", 0),
        visits=counts.get("visits", 0),
        amount=deal.amount,
        source=deal.source,
        forecast_category=deal.forecast_category,
    )


def _days(delta: dt.timedelta) -> float:
    return delta.total_seconds() / DAY_SECONDS


def _ratio(value: float | None, norm: float | None) -> float | None:
    if value is None or norm is None or norm <= 0:
        return None
    return value / norm


# --------------------------------------------------------------------------
# Grouped queries


def _horizon(as_of: dt.datetime) -> ColumnElement[bool]:
    """Events up to ``as_of`` and, for a closed deal, strictly before its close."""
    return and_(
        BehaviourEvent.occurred_at <= as_of,
        or_(
            Opportunity.closed_at.is_(None),
            BehaviourEvent.occurred_at < Opportunity.closed_at,
        ),
    )


def _within(days: int, as_of: dt.datetime) -> ColumnElement[bool]:
    """Events in the ``days`` before each deal's reference instant."""
    is_closed = and_(Opportunity.closed_at.is_not(None), Opportunity.closed_at <= as_of)
    reference = case(
        (is_closed, _EpochSeconds(Opportunity.closed_at)),
        else_=literal(as_of.timestamp(), Float()),
    )
    return _EpochSeconds(BehaviourEvent.occurred_at) > reference - days * DAY_SECONDS


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _tracker(category: str) -> ColumnElement[bool]:
    # Attributes are JSON text written by JsonText (sorted keys, ", " and ": "
    # separators), so a category is found by its exact serialised pair; this
    # keeps the count a grouped aggregate on both databases.
    text = type_coerce(BehaviourEvent.attributes, Text)
    return and_(
        BehaviourEvent.event_type == EventType.TRACKER_HIT,
        text.like(f'%"category": "{category}"%'),
        text.like('%"is_negated": false%'),
    )


def _is_touch() -> ColumnElement[bool]:
    return or_(
        BehaviourEvent.event_type.in_([str(kind) for kind in TOUCH_TYPES]),
        and_(
            BehaviourEvent.event_type == EventType.CHAT_MESSAGE,
            BehaviourEvent.speaker == "rep",
        ),
    )


def _event_counts(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, dict[str, int]]:
    interaction = BehaviourEvent.event_type.in_([str(k) for k in INTERACTION_TYPES])
    in_28, in_90 = _within(28, as_of), _within(90, as_of)
    engaged = and_(interaction, BehaviourEvent.contact_id.is_not(None))
    decider = and_(
        engaged,
        in_90,
        or_(
            Contact.decision_role == DecisionRole.DECISION_MAKER,
            BehaviourEvent.contact_id == Opportunity.decision_maker_contact_id,
        ),
    )
    columns = {
        "touches_28d": _count(and_(_is_touch(), in_28)),
        "contacts_28d": func.count(
            func.distinct(case((and_(engaged, in_28), BehaviourEvent.contact_id)))
        ),
        "contacts_90d": func.count(
            func.distinct(case((engaged, BehaviourEvent.contact_id)))
        ),
        "decision_maker": _count(decider),
        "objections": _count(_tracker("objection")),
        "competitors": _count(_tracker("competitor")),
        "pricing": _count(_tracker("pricing")),
        "meetings": _count(BehaviourEvent.event_type == EventType.MEETING_HELD),
        "visits": _count(BehaviourEvent.event_type == EventType.FIELD_VISIT),
    }
    query = (
        select(_OPPORTUNITY_ID, *columns.values())
        .join(Opportunity, Opportunity.id == BehaviourEvent.opportunity_id)
        .outerjoin(Contact, Contact.id == BehaviourEvent.contact_id)
        .where(BehaviourEvent.opportunity_id.in_(ids), _horizon(as_of), in_90)
        .group_by(BehaviourEvent.opportunity_id)
    )
    return {
        row[0]: {name: int(value) for name, value in zip(columns, row[1:], strict=True)}
        for row in session.execute(query)
    }


def _last_interactions(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, dt.datetime]:
    interaction = BehaviourEvent.event_type.in_([str(k) for k in INTERACTION_TYPES])
    rows = session.execute(
        select(
            _OPPORTUNITY_ID,
            type_coerce(func.max(BehaviourEvent.occurred_at), UtcDateTime),
        )
        .join(Opportunity, Opportunity.id == BehaviourEvent.opportunity_id)
        .where(BehaviourEvent.opportunity_id.in_(ids), _horizon(as_of), interaction)
        .group_by(BehaviourEvent.opportunity_id)
    )
    return {opportunity_id: last for opportunity_id, last in rows if last is not None}


def _response_hours(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, tuple[float | None, float | None]]:
    rows = session.execute(
        select(
            _OPPORTUNITY_ID,
            BehaviourEvent.occurred_at,
            BehaviourEvent.event_type,
            BehaviourEvent.speaker,
        )
        .join(Opportunity, Opportunity.id == BehaviourEvent.opportunity_id)
        .where(
            BehaviourEvent.opportunity_id.in_(ids),
            BehaviourEvent.event_type.in_([str(k) for k in CONVERSATION_TYPES]),
            _horizon(as_of),
            _within(90, as_of),
        )
        .order_by(
            BehaviourEvent.opportunity_id,
            BehaviourEvent.occurred_at,
            BehaviourEvent.id,
        )
    )
    turns: dict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
    for opportunity_id, occurred_at, event_type, speaker in rows:
        side = _side(event_type, speaker)
        if side is not None:
            turns[opportunity_id].append((occurred_at, side))
    return {key: response_medians(value) for key, value in turns.items()}


def _side(event_type: str, speaker: str | None) -> str | None:
    if event_type == EventType.EMAIL_SENT:
        return "rep"
    if event_type == EventType.EMAIL_RECEIVED:
        return "customer"
    return speaker if speaker in ("rep", "customer") else None


def response_medians(
    turns: Sequence[tuple[dt.datetime, str]],
) -> tuple[float | None, float | None]:
    """Return the median hours the customer and the rep took to answer.

    ``turns`` are (instant, side) in time order. A wait runs from the first
    message of one side's run to the other side's first answer.
    """
    waits: dict[str, list[float]] = {"customer": [], "rep": []}
    run_side, run_start = None, None
    for occurred_at, side in turns:
        if side == run_side:
            continue
        if run_side is not None and run_start is not None:
            waits[side].append((occurred_at - run_start).total_seconds() / 3600.0)
        run_side, run_start = side, occurred_at
    return (_median(waits["customer"]), _median(waits["rep"]))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _material_totals(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, tuple[int, int, int]]:
    rows = session.execute(
        select(_OPPORTUNITY_ID, BehaviourEvent.attributes)
        .join(Opportunity, Opportunity.id == BehaviourEvent.opportunity_id)
        .where(
            BehaviourEvent.opportunity_id.in_(ids),
            BehaviourEvent.event_type == EventType.MATERIAL_OPENED,
            _horizon(as_of),
            _within(90, as_of),
        )
    )
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for opportunity_id, attributes in rows:
        total = totals[opportunity_id]
        total[0] += 1
        total[1] += _whole(attributes.get("pages_viewed"))
        total[2] += _whole(attributes.get("dwell_seconds"))
    return {key: (value[0], value[1], value[2]) for key, value in totals.items()}


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def _stages_at(
    session: Session, deals: list[_Deal], as_of: dt.datetime
) -> dict[int, tuple[int, dt.datetime]]:
    """Return the stage each deal was in at its reference instant, and since when."""
    changes: dict[int, list[tuple[dt.datetime, int | None, int]]] = defaultdict(list)
    rows = session.execute(
        select(
            StageChange.opportunity_id,
            StageChange.changed_at,
            StageChange.from_stage_id,
            StageChange.to_stage_id,
        )
        .where(StageChange.opportunity_id.in_([deal.id for deal in deals]))
        .order_by(StageChange.opportunity_id, StageChange.changed_at, StageChange.id)
    )
    for opportunity_id, changed_at, from_stage, to_stage in rows:
        changes[opportunity_id].append((changed_at, from_stage, to_stage))
    found = {}
    for deal in deals:
        reference_at = reference_instant(deal.closed_at, as_of)
        stage = _stage_of(deal, changes.get(deal.id, []), reference_at)
        if stage is not None:
            found[deal.id] = stage
    return found


def _stage_of(
    deal: _Deal,
    changes: list[tuple[dt.datetime, int | None, int]],
    reference_at: dt.datetime,
) -> tuple[int, dt.datetime] | None:
    before = [change for change in changes if change[0] <= reference_at]
    if before:
        return before[-1][2], before[-1][0]
    later = [change for change in changes if change[1] is not None]
    if later:
        first_from = later[0][1]
        assert first_from is not None
        return first_from, deal.created_at
    if deal.stage_entered_at <= reference_at:
        return deal.stage_id, deal.stage_entered_at
    return None


def stage_norm_days(session: Session, *, as_of: dt.datetime) -> dict[int, float]:
    """Return, per stage, the median days won deals closed by ``as_of`` spent in it."""
    rows = session.execute(
        select(StageChange.from_stage_id, StageChange.seconds_in_previous_stage)
        .join(Opportunity, Opportunity.id == StageChange.opportunity_id)
        .where(
            Opportunity.status == OpportunityStatus.WON,
            Opportunity.closed_at <= as_of,
            StageChange.changed_at <= as_of,
            StageChange.from_stage_id.is_not(None),
            StageChange.seconds_in_previous_stage.is_not(None),
        )
    )
    spent: dict[int, list[float]] = defaultdict(list)
    for stage_id, seconds in rows:
        if stage_id is None or seconds is None:
            continue
        spent[stage_id].append(seconds / DAY_SECONDS)
    return {stage_id: statistics.median(days) for stage_id, days in spent.items()}


def top_rep_touch_norm(session: Session, *, as_of: dt.datetime) -> float | None:
    """Return the median touches a week of top reps' won deals before they closed.

    Top reps are the best 20% (at least one) by amount won in the year before
    ``as_of``, among reps who closed a deal in that year.
    """
    since = as_of - NORM_WINDOW
    closed_in_year = and_(
        Opportunity.closed_at > since,
        Opportunity.closed_at <= as_of,
        Opportunity.owner_id.is_not(None),
    )
    won_amount = func.sum(
        case((Opportunity.status == OpportunityStatus.WON, Opportunity.amount), else_=0)
    )
    ranked = session.execute(
        select(Opportunity.owner_id, won_amount)
        .where(closed_in_year)
        .group_by(Opportunity.owner_id)
        .order_by(won_amount.desc(), Opportunity.owner_id)
    ).all()
    top = [owner for owner, _amount in ranked[: math.ceil(len(ranked) * TOP_REP_SHARE)]]
    if not top:
        return None
    won_ids = list(
        session.scalars(
            select(Opportunity.id).where(
                closed_in_year,
                Opportunity.status == OpportunityStatus.WON,
                Opportunity.owner_id.in_(top),
            )
        )
    )
    return _median_touch_rate(session, won_ids, as_of)


def _median_touch_rate(
    session: Session, ids: list[int], as_of: dt.datetime
) -> float | None:
    rates: list[float] = []
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        counts = _event_counts(session, part, as_of)
        rates.extend(counts.get(i, {}).get("touches_28d", 0) / 4.0 for i in part)
    return statistics.median(rates) if rates else None


# --------------------------------------------------------------------------
# Levels


def feature_levels(features: Features) -> dict[str, str]:
    """Return the categorical level of each model feature (see the module table)."""
    return {
        "touch_ratio": _touch_level(features),
        "recency": _banded(
            features.days_since_interaction,
            THRESHOLDS["recency_days"],
            ("recent", "week", "stale", "silent"),
            missing="never",
        ),
        "customer_response": _banded(
            features.customer_response_hours,
            THRESHOLDS["customer_response_hours"],
            ("fast", "day", "slow"),
            missing="none",
        ),
        "rep_response": _banded(
            features.rep_response_hours,
            THRESHOLDS["rep_response_hours"],
            ("fast", "day", "slow"),
            missing="none",
        ),
        "contacts": ("none", "single", "two", "multi")[min(features.contacts_90d, 3)],
        "decision_maker": "yes" if features.is_decision_maker_engaged else "no",
        "stage_velocity": _velocity_level(features.stage_velocity),
        "objections": _mention_level(features.objection_hits),
        "competitors": _mention_level(features.competitor_mentions),
        "pricing": "yes" if features.pricing_mentions else "no",
        "materials": _material_level(features),
        "meetings": ("none", "one", "several")[min(features.meetings, 2)],
        "visits": "some" if features.visits else "none",
        "amount": _banded(
            float(features.amount),
            THRESHOLDS["amount"],
            ("small", "medium", "large", "very_large"),
            missing="small",
            inclusive=False,
        ),
        "source": (features.source or "unknown").strip().lower() or "unknown",
        "forecast_category": features.forecast_category or "pipeline",
    }


def _banded(
    value: float | None,
    bounds: tuple[float, ...],
    names: tuple[str, ...],
    *,
    missing: str,
    inclusive: bool = True,
) -> str:
    """Name the band of ``value``: ``names[i]`` for ``value <= bounds[i]``."""
    if value is None:
        return missing
    for bound, name in zip(bounds, names, strict=False):
        if value < bound or (inclusive and value == bound):
            return name
    return names[len(bounds)]


def _touch_level(features: Features) -> str:
    if features.touches_28d == 0:
        return "none"
    if features.touch_ratio is None:
        return "unknown"
    low, norm = THRESHOLDS["touch_ratio"]
    if features.touch_ratio < low:
        return "low"
    return "below" if features.touch_ratio < norm else "at_norm"


def _velocity_level(velocity: float | None) -> str:
    if velocity is None:
        return "unknown"
    fast, on_pace, slow = THRESHOLDS["stage_velocity"]
    if velocity < fast:
        return "fast"
    return _banded(
        velocity, (on_pace, slow), ("on_pace", "slow", "stalled"), missing=""
    )


def _mention_level(count: int) -> str:
    some, many = THRESHOLDS["mentions"]
    if count < some:
        return "none"
    return "some" if count < many else "many"


def _material_level(features: Features) -> str:
    if features.materials_opened == 0:
        return "none"
    (read_seconds,) = THRESHOLDS["material_read_seconds"]
    return "read" if features.material_dwell_seconds >= read_seconds else "skimmed"


__all__ = [
    "INTERACTION_TYPES",
    "LEVELS",
    "THRESHOLDS",
    "TOUCH_TYPES",
    "Features",
    "compute_features",
    "feature_levels",
    "reference_instant",
    "response_medians",
    "stage_norm_days",
    "top_rep_touch_norm",
]
