"""Forecasts: categories, the weighted pipeline, roll-ups against quotas, backtests.

A period is written as ``2026-Q1`` or ``2026-M03`` (as quotas are). For a
period, :func:`build_forecast` returns the open deals expected to close in it
(``expected_close_on`` inside the period) by forecast category (pipeline,
best case, commit), the deals won in it (closed), and the *weighted
pipeline*: each open deal's amount times its win probability, the latest
stored model score when there is one, else its stage's default probability.
The roll-up goes from rep to team (the rep's manager) to region (the rep's
region) and sets each line against the quotas of the same people that lie
inside the period.

:func:`backtest` replays history: for each past month or quarter it rebuilds
the forecast as it would have been made on the period's first day, from data
known then (deals created before the day and not yet closed, each in the
stage it stood in that day according to the stage history, weighted by that
stage's default probability), and compares it with the amount actually won in
the period. The absolute percentage error of each period and their mean
(MAPE) are reported, with whether each period fell inside the +/-10% band.
Amounts and expected close dates are read at their current value: Waggle
keeps no history of them, so a deal whose close date was moved is replayed
with the moved date.

Everything passes the governance seam: ``forecasts`` (and ``quotas``) are
authorised, rows are narrowed to the actor's scope (a rep sees their own
deals, a manager the team's) and one audit row is left per call.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import as_utc, now
from waggle.core.errors import InvalidInput
from waggle.crm.models import (
    ForecastCategory,
    Opportunity,
    OpportunityStatus,
    PipelineStage,
    Quota,
    StageChange,
)
from waggle.crm.service import period_bounds
from waggle.governance import authorize, record_audit, row_filter
from waggle.identity.models import Employee, Region
from waggle.insights.models import OpportunityScore

FORECASTS = "forecasts"
QUOTAS = "quotas"
BAND = Fraction(1, 10)
CENT = Decimal("0.01")
OPEN_CATEGORIES = (
    ForecastCategory.PIPELINE,
    ForecastCategory.BEST_CASE,
    ForecastCategory.COMMIT,
)
LEVELS = ("rep", "team", "region")


@dataclass(frozen=True)
class DealLine:
    """One open deal of the period with its probability and weighted amount."""

    opportunity_id: int
    name: str
    owner_id: int | None
    amount: Decimal
    probability: float
    weighted: Decimal
    category: str
    expected_close_on: dt.date | None
    probability_source: str


@dataclass
class RollupLine:
    """The forecast of one rep, team or region against its quota."""

    level: str
    key: int | None
    name: str
    quota: Decimal = Decimal(0)
    closed: Decimal = Decimal(0)
    commit: Decimal = Decimal(0)
    best_case: Decimal = Decimal(0)
    pipeline: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)

    @property
    def attainment(self) -> float | None:
        """Won so far over quota (None without a quota)."""
        return float(self.closed / self.quota) if self.quota else None

    @property
    def projected_attainment(self) -> float | None:
        """Won plus weighted pipeline over quota (None without a quota)."""
        if not self.quota:
            return None
        return float((self.closed + self.weighted) / self.quota)


@dataclass(frozen=True)
class Forecast:
    """The forecast of one period as the actor may see it."""

    period: str
    starts_on: dt.date
    ends_on: dt.date
    deals: list[DealLine]
    categories: dict[str, Decimal]
    weighted: Decimal
    rollup: list[RollupLine] = field(default_factory=list)
    by_month: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class BacktestPeriod:
    """The replayed forecast of one past period against what was won."""

    period: str
    forecast: Decimal
    actual: Decimal
    deals: int

    @property
    def error(self) -> float | None:
        """Signed error (forecast - actual) / actual; None when nothing was won."""
        if not self.actual:
            return None
        return float((self.forecast - self.actual) / self.actual)

    @property
    def is_within_band(self) -> bool | None:
        if not self.actual:
            return None
        ratio = Fraction(self.forecast - self.actual) / Fraction(self.actual)
        return abs(ratio) <= BAND


@dataclass(frozen=True)
class Backtest:
    """Per-period errors and their mean (MAPE over periods with a won amount)."""

    granularity: str
    periods: list[BacktestPeriod]

    @property
    def mape(self) -> float | None:
        errors = [abs(p.error) for p in self.periods if p.error is not None]
        return sum(errors) / len(errors) if errors else None


# --------------------------------------------------------------------------
# Periods


def period_of(day: dt.date, granularity: str) -> str:
    """Return the month (``2026-M03``) or quarter (``2026-Q1``) holding ``day``.

    Raises:
        InvalidInput: the granularity is neither ``month`` nor ``quarter``.
    """
    if granularity == "month":
        return f"{day.year}-M{day.month:02d}"
    if granularity == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    raise InvalidInput(
        f"backtest.granularity: {granularity!r} is not 'month' or 'quarter'"
    )


def periods_before(day: dt.date, *, granularity: str, count: int) -> list[str]:
    """Return the ``count`` complete periods ending before ``day``'s, oldest first.

    Raises:
        InvalidInput: bad granularity, or ``count`` below 1.
    """
    if count < 1:
        raise InvalidInput(f"backtest.periods: {count} is not a count of 1 or more")
    found: list[str] = []
    current = period_bounds(period_of(day, granularity))[0]
    while len(found) < count:
        current = period_bounds(period_of(current - dt.timedelta(days=1), granularity))[
            0
        ]
        found.append(period_of(current, granularity))
    return found[::-1]


# --------------------------------------------------------------------------
# The forecast of a period


def build_forecast(
    session: Session,
    actor: Actor,
    period: str | None = None,
    *,
    as_of: dt.datetime | None = None,
) -> Forecast:
    """Return the forecast of ``period`` (default: the quarter of ``as_of``).

    Raises:
        PolicyDenied: the actor may not read forecasts.
        InvalidInput: the period is not like ``2026-Q1`` or ``2026-M03``.
    """
    as_of = as_utc(as_of or now())
    period = period or period_of(as_of.date(), "quarter")
    starts_on, ends_on = period_bounds(period)
    visible = _visible(session, actor, Opportunity.owner_id)
    deals = _open_lines(session, visible, starts_on, ends_on)
    won = _won_amounts(session, visible, starts_on, ends_on)
    forecast = Forecast(
        period=period,
        starts_on=starts_on,
        ends_on=ends_on,
        deals=deals,
        categories=_categories(deals, sum(won.values(), Decimal(0))),
        weighted=sum((d.weighted for d in deals), Decimal(0)),
        rollup=_rollup(session, actor, deals, won, starts_on, ends_on),
        by_month=_by_month(deals),
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=FORECASTS,
        record_ids=[d.opportunity_id for d in deals],
        detail=f"forecast {period}",
    )
    return forecast


def _visible(session: Session, actor: Actor, column: object) -> ColumnElement[bool]:
    scope = authorize(session, actor, "read", FORECASTS)
    return row_filter(session, actor, scope, column)  # type: ignore[arg-type]


def _open_lines(
    session: Session,
    visible: ColumnElement[bool],
    starts_on: dt.date,
    ends_on: dt.date,
) -> list[DealLine]:
    rows = session.execute(
        select(Opportunity, PipelineStage.probability)
        .join(PipelineStage, PipelineStage.id == Opportunity.stage_id)
        .where(
            visible,
            Opportunity.status == OpportunityStatus.OPEN,
            Opportunity.expected_close_on >= starts_on,
            Opportunity.expected_close_on <= ends_on,
            Opportunity.forecast_category != ForecastCategory.OMITTED,
        )
        .order_by(Opportunity.expected_close_on, Opportunity.id)
    ).all()
    scores = _model_probabilities(session, [deal.id for deal, _p in rows])
    return [
        _line(deal, stage_probability, scores.get(deal.id))
        for deal, stage_probability in rows
    ]


def _line(deal: Opportunity, stage_probability: int, model: float | None) -> DealLine:
    if model is None:
        probability, source = Decimal(stage_probability) / 100, "stage"
    else:
        probability, source = Decimal(str(round(model, 4))), "model"
    category = deal.forecast_category
    if category not in OPEN_CATEGORIES:
        category = ForecastCategory.PIPELINE
    return DealLine(
        opportunity_id=deal.id,
        name=deal.name,
        owner_id=deal.owner_id,
        amount=deal.amount,
        probability=float(probability),
        weighted=(deal.amount * probability).quantize(CENT),
        category=str(category),
        expected_close_on=deal.expected_close_on,
        probability_source=source,
    )


def _model_probabilities(session: Session, ids: Sequence[int]) -> dict[int, float]:
    if not ids:
        return {}
    rows = session.execute(
        select(OpportunityScore.opportunity_id, OpportunityScore.probability).where(
            OpportunityScore.opportunity_id.in_(list(ids)),
            OpportunityScore.is_latest.is_(True),
        )
    )
    return {opportunity_id: probability for opportunity_id, probability in rows}


def _won_amounts(
    session: Session,
    visible: ColumnElement[bool],
    starts_on: dt.date,
    ends_on: dt.date,
) -> dict[int | None, Decimal]:
    start, end = period_instants(starts_on, ends_on)
    rows = session.execute(
        select(Opportunity.owner_id, Opportunity.amount).where(
            visible,
            Opportunity.status == OpportunityStatus.WON,
            Opportunity.closed_at >= start,
            Opportunity.closed_at < end,
        )
    )
    totals: dict[int | None, Decimal] = defaultdict(Decimal)
    for owner_id, amount in rows:
        totals[owner_id] += amount
    return dict(totals)


def period_instants(
    starts_on: dt.date, ends_on: dt.date
) -> tuple[dt.datetime, dt.datetime]:
    """Return a period's first instant and the next period's (UTC)."""
    start = dt.datetime.combine(starts_on, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(ends_on + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return start, end


def _categories(deals: Iterable[DealLine], closed: Decimal) -> dict[str, Decimal]:
    totals = {str(category): Decimal(0) for category in OPEN_CATEGORIES}
    for deal in deals:
        totals[deal.category] += deal.amount
    totals[str(ForecastCategory.CLOSED)] = closed
    return totals


def _by_month(deals: Iterable[DealLine]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for deal in deals:
        if deal.expected_close_on is not None:
            month = period_of(deal.expected_close_on, "month")
            totals[month] = totals.get(month, Decimal(0)) + deal.weighted
    return dict(sorted(totals.items()))


# --------------------------------------------------------------------------
# Roll-up: rep -> team -> region


@dataclass(frozen=True)
class _Person:
    name: str
    manager_id: int | None
    region_id: int | None


def _rollup(
    session: Session,
    actor: Actor,
    deals: Sequence[DealLine],
    won: dict[int | None, Decimal],
    starts_on: dt.date,
    ends_on: dt.date,
) -> list[RollupLine]:
    quotas = _quotas(session, actor, starts_on, ends_on)
    people = _people(session)
    regions = {
        row[0]: row[1] for row in session.execute(select(Region.id, Region.name))
    }
    lines: dict[tuple[str, int | None], RollupLine] = {}

    def targets(owner_id: int | None) -> list[RollupLine]:
        person = people.get(owner_id) if owner_id is not None else None
        team = person.manager_id if person and person.manager_id else owner_id
        region = person.region_id if person else None
        keys = (("rep", owner_id), ("team", team), ("region", region))
        return [_line_for(lines, level, key, people, regions) for level, key in keys]

    for quota_owner, amount in quotas.items():
        for line in targets(quota_owner):
            line.quota += amount
    for won_owner, amount in won.items():
        for line in targets(won_owner):
            line.closed += amount
    for deal in deals:
        for line in targets(deal.owner_id):
            _add_deal(line, deal)
    order = {level: index for index, level in enumerate(LEVELS)}
    return sorted(lines.values(), key=lambda x: (order[x.level], x.name, x.key or 0))


def _line_for(
    lines: dict[tuple[str, int | None], RollupLine],
    level: str,
    key: int | None,
    people: dict[int, _Person],
    regions: dict[int, str],
) -> RollupLine:
    if (level, key) not in lines:
        if level == "region":
            name = regions.get(key, "-") if key is not None else "-"
        else:
            name = people[key].name if key is not None and key in people else "-"
        lines[(level, key)] = RollupLine(level=level, key=key, name=name)
    return lines[(level, key)]


def _add_deal(line: RollupLine, deal: DealLine) -> None:
    if deal.category == ForecastCategory.COMMIT:
        line.commit += deal.amount
    elif deal.category == ForecastCategory.BEST_CASE:
        line.best_case += deal.amount
    else:
        line.pipeline += deal.amount
    line.weighted += deal.weighted


def _quotas(
    session: Session, actor: Actor, starts_on: dt.date, ends_on: dt.date
) -> dict[int, Decimal]:
    scope = authorize(session, actor, "read", QUOTAS)
    rows = session.execute(
        select(Quota.owner_id, Quota.amount).where(
            row_filter(session, actor, scope, Quota.owner_id),
            Quota.starts_on >= starts_on,
            Quota.ends_on <= ends_on,
        )
    )
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for owner_id, amount in rows:
        totals[owner_id] += amount
    return dict(totals)


def _people(session: Session) -> dict[int, _Person]:
    rows = session.execute(
        select(Employee.id, Employee.name, Employee.manager_id, Employee.region_id)
    )
    return {row[0]: _Person(row[1], row[2], row[3]) for row in rows}


# --------------------------------------------------------------------------
# Backtest


def backtest(
    session: Session,
    actor: Actor,
    *,
    granularity: str = "month",
    periods: Sequence[str] | None = None,
    count: int = 12,
    as_of: dt.datetime | None = None,
) -> Backtest:
    """Replay the forecast of past periods and measure its error (MAPE).

    Without ``periods`` the ``count`` complete periods before ``as_of`` are
    replayed.

    Raises:
        PolicyDenied: the actor may not read forecasts.
        InvalidInput: a bad granularity, count or period.
    """
    as_of = as_utc(as_of or now())
    chosen = list(
        periods or periods_before(as_of.date(), granularity=granularity, count=count)
    )
    visible = _visible(session, actor, Opportunity.owner_id)
    stage_probability = {
        row[0]: row[1]
        for row in session.execute(select(PipelineStage.id, PipelineStage.probability))
    }
    first_stages = _first_stages(session)
    replayed = [
        _replay(session, visible, period, stage_probability, first_stages)
        for period in chosen
    ]
    record_audit(
        session,
        actor,
        action="read",
        resource=FORECASTS,
        detail=f"backtest {granularity} {','.join(chosen)}",
    )
    return Backtest(granularity=granularity, periods=replayed)


def _first_stages(session: Session) -> dict[int, int]:
    """Return each pipeline's first open stage (for deals without any history)."""
    rows = session.execute(
        select(PipelineStage.pipeline_id, PipelineStage.id)
        .where(PipelineStage.is_won.is_(False), PipelineStage.is_lost.is_(False))
        .order_by(PipelineStage.pipeline_id, PipelineStage.position.desc())
    )
    return {pipeline_id: stage_id for pipeline_id, stage_id in rows}


def _replay(
    session: Session,
    visible: ColumnElement[bool],
    period: str,
    stage_probability: dict[int, int],
    first_stages: dict[int, int],
) -> BacktestPeriod:
    starts_on, ends_on = period_bounds(period)
    start, _end = period_instants(starts_on, ends_on)
    known = list(
        session.scalars(
            select(Opportunity).where(
                visible,
                Opportunity.created_at < start,
                (Opportunity.closed_at.is_(None)) | (Opportunity.closed_at >= start),
                Opportunity.expected_close_on >= starts_on,
                Opportunity.expected_close_on <= ends_on,
            )
        )
    )
    stages = _stages_at(session, known, start, first_stages)
    forecast = sum(
        (
            deal.amount * Decimal(stage_probability.get(stages[deal.id], 0)) / 100
            for deal in known
        ),
        Decimal(0),
    )
    actual = sum(
        _won_amounts(session, visible, starts_on, ends_on).values(), Decimal(0)
    )
    return BacktestPeriod(period, forecast.quantize(CENT), actual, len(known))


def _stages_at(
    session: Session,
    deals: Sequence[Opportunity],
    instant: dt.datetime,
    first_stages: dict[int, int],
) -> dict[int, int]:
    """Return the stage each deal stood in at ``instant``, from its stage history."""
    if not deals:
        return {}
    changes: dict[int, list[StageChange]] = defaultdict(list)
    for change in session.scalars(
        select(StageChange)
        .where(StageChange.opportunity_id.in_([deal.id for deal in deals]))
        .order_by(StageChange.changed_at, StageChange.id)
    ):
        changes[change.opportunity_id].append(change)
    return {
        deal.id: _stage_at(deal, changes.get(deal.id, []), instant, first_stages)
        for deal in deals
    }


def _stage_at(
    deal: Opportunity,
    changes: Sequence[StageChange],
    instant: dt.datetime,
    first_stages: dict[int, int],
) -> int:
    before = [c for c in changes if as_utc(c.changed_at) < instant]
    if before:
        return before[-1].to_stage_id
    after = [c for c in changes if c.from_stage_id is not None]
    if after:
        return after[0].from_stage_id or deal.stage_id
    if deal.status == OpportunityStatus.OPEN:
        return deal.stage_id
    return first_stages.get(deal.pipeline_id, deal.stage_id)


__all__ = [
    "BAND",
    "FORECASTS",
    "Backtest",
    "BacktestPeriod",
    "DealLine",
    "Forecast",
    "RollupLine",
    "backtest",
    "build_forecast",
    "period_of",
    "periods_before",
]
