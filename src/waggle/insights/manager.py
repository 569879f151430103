"""Manager views: reps and deals that depart from their peers, and region gaps.

Abnormal behaviour (:func:`find_anomalies`) uses robust z-scores: for each
metric, ``0.6745 * (x - median) / MAD`` over the peers (the reps the actor
sees; for deals, the open deals in the same stage). When the MAD is zero the
mean absolute deviation stands in (``(x - median) / (1.2533 * meanAD)``);
when that is zero too nobody departs. A value whose score reaches
``threshold`` (3.5 by default, after Iglewicz and Hoaglin) is listed with the
reason worded in zh-CN and en, the value and the peer median.

Region comparison (:func:`compare_regions`) takes the win rate (won over
won plus lost, deals closed in the window, each deal counted in the
top-level region of its owner) of two regions and splits the gap,
per factor (lead source, deal size, industry), into a *mix* effect (the
regions' deals fall into segments in different shares) and a *rate* effect
(the same segment converts differently): for each segment ``i``,
``mix_i = (wa_i - wb_i) * (ra_i + rb_i) / 2`` and
``rate_i = (ra_i - rb_i) * (wa_i + wb_i) / 2``; a segment one region lacks
takes the other's rate, so its part is all mix. The terms are exact
fractions and sum to the gap exactly.

Both read through the governance seam (``forecasts`` with the row filter on
the deal owner) and leave one audit row.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import as_utc, now
from waggle.core.errors import InvalidInput
from waggle.crm.models import Account, Opportunity, OpportunityStatus
from waggle.governance import authorize, record_audit, row_filter
from waggle.identity.models import Employee, Region
from waggle.insights.features import TOUCH_TYPES
from waggle.signals.events import EventType
from waggle.signals.models import BehaviourEvent

FORECASTS = "forecasts"
THRESHOLD = 3.5
MIN_PEERS = 3
MAD_SCALE = 0.6745
MEAN_AD_SCALE = 1.2533
TOUCH_WINDOW_DAYS = 28
WIN_WINDOW_DAYS = 180
REGION_WINDOW_DAYS = 365
DAY = 86_400.0

METRICS: dict[str, tuple[str, str]] = {
    "touches_per_open_deal": (
        "每个在途商机近28天触达次数",
        "touches per open deal in 28 days",
    ),
    "win_rate_180d": ("近180天赢单率", "win rate over 180 days"),
    "median_days_in_stage": (
        "在途商机停留阶段天数中位数",
        "median days open deals sat in stage",
    ),
    "overdue_share": ("逾期商机占比", "share of open deals past their close date"),
    "days_in_stage": ("停留当前阶段天数", "days in the current stage"),
    "days_since_interaction": ("距上次互动天数", "days since the last interaction"),
    "touches_28d": ("近28天触达次数", "touches in 28 days"),
}
FACTORS: dict[str, tuple[str, str]] = {
    "source": ("线索来源", "lead source"),
    "deal_size": ("商机金额段", "deal size"),
    "industry": ("行业", "industry"),
}
SIZE_BANDS = (
    (Decimal(100_000), "small"),
    (Decimal(500_000), "medium"),
    (Decimal(2_000_000), "large"),
)


@dataclass(frozen=True)
class Anomaly:
    """One rep or deal whose metric departs from its peers, and why."""

    kind: str
    subject_id: int
    name: str
    metric: str
    value: float
    median: float
    z: float
    peers: int

    @property
    def reason(self) -> dict[str, str]:
        zh, en = METRICS[self.metric]
        value, median = _show(self.value), _show(self.median)
        return {
            "zh-CN": f"{zh}为{value}，同类中位数{median}（稳健z值{self.z:+.1f}）",
            "en": (
                f"{en} is {value} against a peer median of {median} "
                f"(robust z {self.z:+.1f})"
            ),
        }


def _show(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}".rstrip("0")


def robust_scores(values: Mapping[int, float]) -> dict[int, float]:
    """Return each value's robust z-score against all the values (empty: no spread)."""
    if not values:
        return {}
    median = statistics.median(values.values())
    deviations = [abs(v - median) for v in values.values()]
    mad = statistics.median(deviations)
    if mad > 0:
        return {k: MAD_SCALE * (v - median) / mad for k, v in values.items()}
    mean_ad = statistics.fmean(deviations)
    if mean_ad == 0:
        return {}
    return {k: (v - median) / (MEAN_AD_SCALE * mean_ad) for k, v in values.items()}


def _flag(
    kind: str,
    metric: str,
    values: Mapping[int, float],
    names: Mapping[int, str],
    threshold: float,
) -> list[Anomaly]:
    if len(values) < MIN_PEERS:
        return []
    median = statistics.median(values.values())
    return [
        Anomaly(
            kind,
            key,
            names.get(key, str(key)),
            metric,
            values[key],
            median,
            round(z, 4),
            len(values),
        )
        for key, z in robust_scores(values).items()
        if abs(z) >= threshold
    ]


def _visible(session: Session, actor: Actor) -> ColumnElement[bool]:
    scope = authorize(session, actor, "read", FORECASTS)
    return row_filter(session, actor, scope, Opportunity.owner_id)


# --------------------------------------------------------------------------
# Abnormal behaviour


@dataclass(frozen=True)
class _OpenDeal:
    id: int
    name: str
    owner_id: int | None
    stage_id: int
    days_in_stage: float
    is_overdue: bool


def find_anomalies(
    session: Session,
    actor: Actor,
    *,
    as_of: dt.datetime | None = None,
    threshold: float = THRESHOLD,
) -> list[Anomaly]:
    """Return the reps and open deals that depart from their peers, strongest first.

    Raises:
        PolicyDenied: the actor may not read forecasts.
        InvalidInput: the threshold is not above 0.
    """
    if threshold <= 0:
        raise InvalidInput(f"anomalies.threshold: {threshold} must be above 0")
    as_of = as_utc(as_of or now())
    visible = _visible(session, actor)
    deals = _open_deals(session, visible, as_of)
    touches = _touches(session, [d.id for d in deals], as_of)
    found = _rep_anomalies(session, visible, deals, touches, as_of, threshold)
    found += _deal_anomalies(session, deals, touches, as_of, threshold)
    found.sort(key=lambda a: (-abs(a.z), a.kind, a.subject_id, a.metric))
    record_audit(
        session,
        actor,
        action="read",
        resource=FORECASTS,
        record_ids=sorted({a.subject_id for a in found if a.kind == "deal"}),
        detail=f"anomalies: {len(found)}",
    )
    return found


def _open_deals(
    session: Session, visible: ColumnElement[bool], as_of: dt.datetime
) -> list[_OpenDeal]:
    rows = session.execute(
        select(
            Opportunity.id,
            Opportunity.name,
            Opportunity.owner_id,
            Opportunity.stage_id,
            Opportunity.stage_entered_at,
            Opportunity.expected_close_on,
        )
        .where(
            visible,
            Opportunity.status == OpportunityStatus.OPEN,
            Opportunity.created_at <= as_of,
        )
        .order_by(Opportunity.id)
    )
    return [
        _OpenDeal(
            id=row[0],
            name=row[1],
            owner_id=row[2],
            stage_id=row[3],
            days_in_stage=round((as_of - as_utc(row[4])).total_seconds() / DAY, 2),
            is_overdue=row[5] is not None and row[5] < as_of.date(),
        )
        for row in rows
    ]


def _touches(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, tuple[int, dt.datetime | None]]:
    """Return each deal's rep touches in 28 days and its last interaction."""
    if not ids:
        return {}
    since = as_of - dt.timedelta(days=TOUCH_WINDOW_DAYS)
    touch_types = [str(kind) for kind in TOUCH_TYPES]
    is_touch = (BehaviourEvent.event_type.in_(touch_types)) | (
        (BehaviourEvent.event_type == EventType.CHAT_MESSAGE)
        & (BehaviourEvent.speaker == "rep")
    )
    found: dict[int, tuple[int, dt.datetime | None]] = {}
    for start in range(0, len(ids), 900):
        rows = session.execute(
            select(
                BehaviourEvent.opportunity_id,
                func.sum(
                    case((is_touch & (BehaviourEvent.occurred_at > since), 1), else_=0)
                ),
                func.max(BehaviourEvent.occurred_at),
            )
            .where(
                BehaviourEvent.opportunity_id.in_(list(ids[start : start + 900])),
                BehaviourEvent.occurred_at <= as_of,
                BehaviourEvent.event_type != EventType.TRACKER_HIT,
            )
            .group_by(BehaviourEvent.opportunity_id)
        )
        for opportunity_id, count, last in rows:
            found[opportunity_id] = (int(count or 0), as_utc(last) if last else None)
    return found


def _rep_anomalies(
    session: Session,
    visible: ColumnElement[bool],
    deals: Sequence[_OpenDeal],
    touches: Mapping[int, tuple[int, dt.datetime | None]],
    as_of: dt.datetime,
    threshold: float,
) -> list[Anomaly]:
    by_rep: dict[int, list[_OpenDeal]] = defaultdict(list)
    for deal in deals:
        if deal.owner_id is not None:
            by_rep[deal.owner_id].append(deal)
    names = _employee_names(session)
    metrics: dict[str, dict[int, float]] = {
        "touches_per_open_deal": {
            rep: sum(touches.get(d.id, (0, None))[0] for d in owned) / len(owned)
            for rep, owned in by_rep.items()
        },
        "median_days_in_stage": {
            rep: statistics.median(d.days_in_stage for d in owned)
            for rep, owned in by_rep.items()
        },
        "overdue_share": {
            rep: sum(d.is_overdue for d in owned) / len(owned)
            for rep, owned in by_rep.items()
        },
        "win_rate_180d": _win_rates(session, visible, as_of),
    }
    found: list[Anomaly] = []
    for metric, values in metrics.items():
        found += _flag("rep", metric, values, names, threshold)
    return found


def _win_rates(
    session: Session, visible: ColumnElement[bool], as_of: dt.datetime
) -> dict[int, float]:
    since = as_of - dt.timedelta(days=WIN_WINDOW_DAYS)
    rows = session.execute(
        select(Opportunity.owner_id, Opportunity.status, func.count())
        .where(
            visible,
            Opportunity.status.in_([OpportunityStatus.WON, OpportunityStatus.LOST]),
            Opportunity.closed_at > since,
            Opportunity.closed_at <= as_of,
        )
        .group_by(Opportunity.owner_id, Opportunity.status)
    )
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {"won": 0, "lost": 0})
    for owner_id, status, count in rows:
        if owner_id is not None:
            counts[owner_id][status] = count
    return {rep: c["won"] / (c["won"] + c["lost"]) for rep, c in counts.items()}


def _deal_anomalies(
    session: Session,
    deals: Sequence[_OpenDeal],
    touches: Mapping[int, tuple[int, dt.datetime | None]],
    as_of: dt.datetime,
    threshold: float,
) -> list[Anomaly]:
    names = {deal.id: deal.name for deal in deals}
    by_stage: dict[int, list[_OpenDeal]] = defaultdict(list)
    for deal in deals:
        by_stage[deal.stage_id].append(deal)
    found: list[Anomaly] = []
    for peers in by_stage.values():
        found += _flag(
            "deal",
            "days_in_stage",
            {d.id: d.days_in_stage for d in peers},
            names,
            threshold,
        )
        found += _flag(
            "deal",
            "touches_28d",
            {d.id: float(touches.get(d.id, (0, None))[0]) for d in peers},
            names,
            threshold,
        )
        silent = {
            d.id: round((as_of - last).total_seconds() / DAY, 2)
            for d in peers
            if (last := touches.get(d.id, (0, None))[1]) is not None
        }
        found += _flag("deal", "days_since_interaction", silent, names, threshold)
    return found


def _employee_names(session: Session) -> dict[int, str]:
    return {
        row[0]: row[1] for row in session.execute(select(Employee.id, Employee.name))
    }


# --------------------------------------------------------------------------
# Region comparison


@dataclass(frozen=True)
class SegmentGap:
    """One segment of a factor: each region's share and rate, and its two effects."""

    segment: str
    share_a: Fraction
    share_b: Fraction
    rate_a: Fraction | None
    rate_b: Fraction | None
    mix: Fraction
    rate: Fraction


@dataclass(frozen=True)
class FactorGap:
    """The gap split by one factor into mix and rate effects (they sum to it)."""

    factor: str
    segments: list[SegmentGap]

    @property
    def mix(self) -> Fraction:
        return sum((s.mix for s in self.segments), Fraction(0))

    @property
    def rate(self) -> Fraction:
        return sum((s.rate for s in self.segments), Fraction(0))

    def summary(self) -> dict[str, str]:
        zh, en = FACTORS[self.factor]
        mix, rate = _points(self.mix), _points(self.rate)
        return {
            "zh-CN": (
                f"按{zh}: 结构差异贡献{mix}个百分点，{zh}内转化率差异贡献{rate}个百分点"
            ),
            "en": (
                f"by {en}: mix contributes {mix} points, "
                f"rate within each {en} {rate} points"
            ),
        }


def _points(value: Fraction) -> str:
    return f"{float(value) * 100:+.1f}"


@dataclass(frozen=True)
class RegionComparison:
    """Two regions' win rates, their gap and its decomposition per factor."""

    region_a: str
    region_b: str
    won_a: int
    decided_a: int
    won_b: int
    decided_b: int
    factors: list[FactorGap] = field(default_factory=list)

    @property
    def rate_a(self) -> Fraction:
        return Fraction(self.won_a, self.decided_a) if self.decided_a else Fraction(0)

    @property
    def rate_b(self) -> Fraction:
        return Fraction(self.won_b, self.decided_b) if self.decided_b else Fraction(0)

    @property
    def gap(self) -> Fraction:
        return self.rate_a - self.rate_b


@dataclass(frozen=True)
class _Decided:
    region: str
    is_won: bool
    segments: dict[str, str]


def region_rates(
    session: Session, actor: Actor, *, as_of: dt.datetime | None = None
) -> dict[str, tuple[int, int]]:
    """Return (won, decided) per region code for deals closed in the window.

    Raises:
        PolicyDenied: the actor may not read forecasts.
    """
    decided = _decided(session, actor, as_utc(as_of or now()))
    found: dict[str, tuple[int, int]] = {}
    for deal in decided:
        won, total = found.get(deal.region, (0, 0))
        found[deal.region] = (won + deal.is_won, total + 1)
    return dict(sorted(found.items()))


def compare_regions(
    session: Session,
    actor: Actor,
    region_a: str | None = None,
    region_b: str | None = None,
    *,
    as_of: dt.datetime | None = None,
) -> RegionComparison | None:
    """Compare two regions' win rates (default: the best against the worst).

    Returns None when fewer than two regions have closed deals in scope.

    Raises:
        PolicyDenied: the actor may not read forecasts.
        InvalidInput: a named region has no closed deal in scope.
    """
    as_of = as_utc(as_of or now())
    decided = _decided(session, actor, as_of)
    rates = _rates(decided)
    if region_a is None or region_b is None:
        if len(rates) < 2:
            return None
        ranked = sorted(rates, key=lambda code: (-rates[code], code))
        region_a, region_b = region_a or ranked[0], region_b or ranked[-1]
    for name, code in (("region_a", region_a), ("region_b", region_b)):
        if code not in rates:
            raise InvalidInput(
                f"regions.{name}: {code!r} has no closed deal in the last "
                f"{REGION_WINDOW_DAYS} days"
            )
    a = [d for d in decided if d.region == region_a]
    b = [d for d in decided if d.region == region_b]
    comparison = RegionComparison(
        region_a=region_a,
        region_b=region_b,
        won_a=sum(d.is_won for d in a),
        decided_a=len(a),
        won_b=sum(d.is_won for d in b),
        decided_b=len(b),
        factors=[_decompose(factor, a, b) for factor in FACTORS],
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=FORECASTS,
        detail=f"regions {region_a} vs {region_b}",
    )
    return comparison


def _rates(decided: Sequence[_Decided]) -> dict[str, Fraction]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for deal in decided:
        counts[deal.region][0] += deal.is_won
        counts[deal.region][1] += 1
    return {region: Fraction(won, total) for region, (won, total) in counts.items()}


def _decided(session: Session, actor: Actor, as_of: dt.datetime) -> list[_Decided]:
    visible = _visible(session, actor)
    since = as_of - dt.timedelta(days=REGION_WINDOW_DAYS)
    roots = _root_regions(session)
    rows = session.execute(
        select(
            Employee.region_id,
            Opportunity.status,
            Opportunity.source,
            Opportunity.amount,
            Account.industry,
        )
        .join(Employee, Employee.id == Opportunity.owner_id)
        .join(Account, Account.id == Opportunity.account_id)
        .where(
            visible,
            Employee.region_id.is_not(None),
            Opportunity.status.in_([OpportunityStatus.WON, OpportunityStatus.LOST]),
            Opportunity.closed_at > since,
            Opportunity.closed_at <= as_of,
        )
        .order_by(Opportunity.id)
    )
    return [
        _Decided(
            region=roots.get(region_id or 0, "-"),
            is_won=status == OpportunityStatus.WON,
            segments={
                "source": (source or "unknown").lower(),
                "deal_size": _size(amount),
                "industry": industry or "unknown",
            },
        )
        for region_id, status, source, amount, industry in rows
    ]


def _root_regions(session: Session) -> dict[int, str]:
    """Return, per region id, the code of its top-level region (大区)."""
    rows = session.execute(select(Region.id, Region.code, Region.parent_id)).all()
    parents = {region_id: parent for region_id, _code, parent in rows}
    codes = {region_id: code for region_id, code, _parent in rows}
    roots: dict[int, str] = {}
    for region_id in codes:
        current, seen = region_id, {region_id}
        while (parent := parents[current]) is not None and parent not in seen:
            current = parent
            seen.add(current)
        roots[region_id] = codes[current]
    return roots


def _size(amount: Decimal) -> str:
    for limit, band in SIZE_BANDS:
        if amount < limit:
            return band
    return "very_large"


def _decompose(factor: str, a: Sequence[_Decided], b: Sequence[_Decided]) -> FactorGap:
    return decompose_gap(
        factor,
        [(deal.segments[factor], deal.is_won) for deal in a],
        [(deal.segments[factor], deal.is_won) for deal in b],
    )


def decompose_gap(
    factor: str,
    deals_a: Sequence[tuple[str, bool]],
    deals_b: Sequence[tuple[str, bool]],
) -> FactorGap:
    """Split the win-rate gap of two groups of (segment, is_won) into mix and rate.

    The effects are exact fractions and sum to the gap (an empty group has a
    rate of 0).
    """
    shares_a, rates_a = _segment_stats(deals_a)
    shares_b, rates_b = _segment_stats(deals_b)
    segments = []
    for segment in sorted(set(shares_a) | set(shares_b)):
        wa, wb = shares_a.get(segment, Fraction(0)), shares_b.get(segment, Fraction(0))
        ra, rb = rates_a.get(segment), rates_b.get(segment)
        # A segment one group lacks takes the other's rate: its part is all mix.
        ea = ra if ra is not None else rb or Fraction(0)
        eb = rb if rb is not None else ea
        segments.append(
            SegmentGap(
                segment=segment,
                share_a=wa,
                share_b=wb,
                rate_a=ra,
                rate_b=rb,
                mix=(wa - wb) * (ea + eb) / 2,
                rate=(ea - eb) * (wa + wb) / 2,
            )
        )
    return FactorGap(factor, segments)


def _segment_stats(
    deals: Sequence[tuple[str, bool]],
) -> tuple[dict[str, Fraction], dict[str, Fraction]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for segment, is_won in deals:
        counts[segment][0] += is_won
        counts[segment][1] += 1
    total = len(deals)
    shares = {segment: Fraction(n, total) for segment, (_won, n) in counts.items()}
    rates = {segment: Fraction(won, n) for segment, (won, n) in counts.items()}
    return shares, rates


def region_names(session: Session) -> dict[str, str]:
    """Return region names by code."""
    return {row[0]: row[1] for row in session.execute(select(Region.code, Region.name))}


__all__ = [
    "FACTORS",
    "METRICS",
    "Anomaly",
    "FactorGap",
    "RegionComparison",
    "SegmentGap",
    "compare_regions",
    "decompose_gap",
    "find_anomalies",
    "region_names",
    "region_rates",
    "robust_scores",
]
