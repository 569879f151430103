"""HTTP routes of forecasts, customer health and manager views."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from waggle.apikit import ActorDep, SessionDep
from waggle.insights import customer_health, forecast, forecast_lineage, manager

TAG = "insights"


class DealLineRead(BaseModel):
    opportunity_id: int
    name: str
    owner_id: int | None
    amount: Decimal
    probability: float
    probability_source: str
    weighted: Decimal
    category: str
    expected_close_on: dt.date | None


class RollupRead(BaseModel):
    level: str
    key: int | None
    name: str
    quota: Decimal
    closed: Decimal
    commit: Decimal
    best_case: Decimal
    pipeline: Decimal
    weighted: Decimal
    attainment: float | None
    projected_attainment: float | None


class ForecastRead(BaseModel):
    period: str
    starts_on: dt.date
    ends_on: dt.date
    categories: dict[str, Decimal]
    weighted: Decimal
    by_month: dict[str, Decimal]
    rollup: list[RollupRead]
    deals: list[DealLineRead]
    lineage: dict[str, int] = {}


class BacktestPeriodRead(BaseModel):
    period: str
    forecast: Decimal
    actual: Decimal
    deals: int
    error: float | None
    is_within_band: bool | None


class BacktestRead(BaseModel):
    granularity: str
    band: float
    mape: float | None
    periods: list[BacktestPeriodRead]


class ReasonRead(BaseModel):
    rule_id: str
    signal: str
    risk: str
    value: float
    weight_percent: int
    text: dict[str, str]
    line: dict[str, str]


class HealthRead(BaseModel):
    account_id: int
    name: str
    owner_id: int | None
    risk: int
    health: int
    level: str
    reasons: list[ReasonRead]
    signals: dict[str, float | None]


class HealthListRead(BaseModel):
    count: int
    distribution: list[int]
    items: list[HealthRead]


class SnapshotRead(BaseModel):
    stored: int


class AnomalyRead(BaseModel):
    kind: str
    subject_id: int
    name: str
    metric: str
    value: float
    median: float
    z: float
    peers: int
    reason: dict[str, str]


class SegmentRead(BaseModel):
    segment: str
    share_a: float
    share_b: float
    rate_a: float | None
    rate_b: float | None
    mix: float
    rate: float


class FactorRead(BaseModel):
    factor: str
    mix: float
    rate: float
    summary: dict[str, str]
    segments: list[SegmentRead]


class RegionsRead(BaseModel):
    region_a: str | None
    region_b: str | None
    rate_a: float | None
    rate_b: float | None
    gap: float | None
    decided_a: int
    decided_b: int
    factors: list[FactorRead]


def forecast_read(result: forecast.Forecast) -> ForecastRead:
    """Shape a forecast for the API."""
    return ForecastRead(
        period=result.period,
        starts_on=result.starts_on,
        ends_on=result.ends_on,
        categories=result.categories,
        weighted=result.weighted,
        by_month=result.by_month,
        rollup=[
            RollupRead(
                level=line.level,
                key=line.key,
                name=line.name,
                quota=line.quota,
                closed=line.closed,
                commit=line.commit,
                best_case=line.best_case,
                pipeline=line.pipeline,
                weighted=line.weighted,
                attainment=line.attainment,
                projected_attainment=line.projected_attainment,
            )
            for line in result.rollup
        ],
        deals=[DealLineRead(**vars(deal)) for deal in result.deals],
    )


def backtest_read(result: forecast.Backtest) -> BacktestRead:
    """Shape a backtest for the API."""
    return BacktestRead(
        granularity=result.granularity,
        band=float(forecast.BAND),
        mape=result.mape,
        periods=[
            BacktestPeriodRead(
                period=p.period,
                forecast=p.forecast,
                actual=p.actual,
                deals=p.deals,
                error=p.error,
                is_within_band=p.is_within_band,
            )
            for p in result.periods
        ],
    )


def health_read(item: customer_health.AccountHealth) -> HealthRead:
    """Shape one account's health for the API."""
    return HealthRead(
        account_id=item.account_id,
        name=item.name,
        owner_id=item.owner_id,
        risk=item.risk,
        health=item.health,
        level=item.level,
        reasons=[ReasonRead(**reason.as_dict()) for reason in item.reasons],
        signals=item.signals,
    )


def regions_read(result: manager.RegionComparison | None) -> RegionsRead:
    """Shape a region comparison for the API (empty with fewer than two regions)."""
    if result is None:
        return RegionsRead(
            region_a=None,
            region_b=None,
            rate_a=None,
            rate_b=None,
            gap=None,
            decided_a=0,
            decided_b=0,
            factors=[],
        )
    return RegionsRead(
        region_a=result.region_a,
        region_b=result.region_b,
        rate_a=float(result.rate_a),
        rate_b=float(result.rate_b),
        gap=float(result.gap),
        decided_a=result.decided_a,
        decided_b=result.decided_b,
        factors=[
            FactorRead(
                factor=factor.factor,
                mix=float(factor.mix),
                rate=float(factor.rate),
                summary=factor.summary(),
                segments=[
                    SegmentRead(
                        segment=s.segment,
                        share_a=float(s.share_a),
                        share_b=float(s.share_b),
                        rate_a=None if s.rate_a is None else float(s.rate_a),
                        rate_b=None if s.rate_b is None else float(s.rate_b),
                        mix=float(s.mix),
                        rate=float(s.rate),
                    )
                    for s in factor.segments
                ],
            )
            for factor in result.factors
        ],
    )


def anomaly_read(item: manager.Anomaly) -> AnomalyRead:
    """Shape one departure for the API, with its reason in both languages."""
    return AnomalyRead(**vars(item), reason=item.reason)


def routers() -> list[APIRouter]:
    """Return this module's routers for the application."""
    routes = APIRouter(prefix="/api/v1/insights", tags=[TAG])

    @routes.get("/forecast", response_model=ForecastRead)
    def get_forecast(
        session: SessionDep,
        actor: ActorDep,
        period: str | None = None,
        lineage: bool = False,
    ) -> Any:
        """The forecast of a period (2026-Q1, 2026-M03; default this quarter).

        With ``lineage=true`` each headline figure (closed, commit, best
        case, pipeline, weighted) is also computed with its provenance and
        ``lineage`` names the figure ids (see ``/api/v1/lineage/figures``).
        """
        result = forecast.build_forecast(session, actor, period)
        read = forecast_read(result)
        if lineage:
            read.lineage = forecast_lineage.headline_lineage(session, actor, result)
        return read

    @routes.get("/forecast/backtest", response_model=BacktestRead)
    def get_backtest(
        session: SessionDep,
        actor: ActorDep,
        granularity: str = "month",
        periods: int = Query(default=12, ge=1, le=60),
    ) -> Any:
        """Replay the forecast of past months or quarters; per-period error, MAPE."""
        result = forecast.backtest(
            session, actor, granularity=granularity, count=periods
        )
        return backtest_read(result)

    @routes.get("/customer-health", response_model=HealthListRead)
    def list_health(
        session: SessionDep,
        actor: ActorDep,
        limit: int = Query(default=50, ge=1, le=1000),
        stored: bool = False,
    ) -> Any:
        """The accounts in scope, riskiest first, with the health distribution.

        With ``stored`` the latest snapshot is read instead of computing live.
        """
        snapshot = (
            customer_health.latest_customer_health(session, actor) if stored else None
        )
        items = (
            snapshot.items
            if snapshot is not None
            else customer_health.assess_accounts(session, actor)
        )
        ranked = sorted(items, key=lambda item: (-item.risk, item.account_id))
        return HealthListRead(
            count=len(items),
            distribution=customer_health.distribution(items),
            items=[health_read(item) for item in ranked[:limit]],
        )

    @routes.post("/customer-health/snapshot", response_model=SnapshotRead)
    def store_health(session: SessionDep, actor: ActorDep) -> Any:
        """Compute and store every account's health in scope as the latest snapshot."""
        return SnapshotRead(
            stored=customer_health.store_customer_health(session, actor)
        )

    @routes.get("/accounts/{account_id}/health", response_model=HealthRead)
    def get_health(account_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """One account's signals, risk, health and reasons."""
        return health_read(customer_health.account_health(session, actor, account_id))

    @routes.get("/anomalies", response_model=list[AnomalyRead])
    def list_anomalies(
        session: SessionDep, actor: ActorDep, threshold: float = manager.THRESHOLD
    ) -> Any:
        """Reps and deals departing from their peers, with the reason."""
        found = manager.find_anomalies(session, actor, threshold=threshold)
        return [anomaly_read(item) for item in found]

    @routes.get("/regions", response_model=RegionsRead)
    def get_regions(
        session: SessionDep,
        actor: ActorDep,
        region_a: str | None = None,
        region_b: str | None = None,
    ) -> Any:
        """Two regions' win-rate gap split into mix and rate effects per factor."""
        return regions_read(manager.compare_regions(session, actor, region_a, region_b))

    return [routes]
