"""HTTP routes of insights: an opportunity's score, training and rescoring."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from waggle.apikit import ActorDep, SessionDep
from waggle.insights import service
from waggle.insights.champion import HistoryRule
from waggle.insights.explain import Factor

TAG = "insights"


class FactorRead(BaseModel):
    feature: str
    level: str
    weight: float
    share: float
    direction: str
    text: dict[str, str]
    line: dict[str, str]


class ScoreRead(BaseModel):
    opportunity_id: int
    probability: float
    health: int
    manual_probability: int | None
    model_version: str
    model_kind: str
    note: dict[str, str] | None
    positive_factors: list[FactorRead]
    negative_factors: list[FactorRead]
    levels: dict[str, str]
    as_of: dt.datetime
    computed_at: dt.datetime
    is_stored: bool


class TrainRequest(BaseModel):
    cutoff: dt.datetime | None = None
    min_won: int = Field(default=200, ge=1)
    min_lost: int = Field(default=200, ge=1)
    window_days: int = Field(default=730, ge=1)
    promote: bool = True


class TrainRead(BaseModel):
    model_version: str
    model_kind: str
    status: str
    won: int
    lost: int
    is_fallback: bool
    note: dict[str, str] | None
    calibration: dict[str, Any] | None


class ScoreRequest(BaseModel):
    ids: list[int] | None = None


class ScoreRunRead(BaseModel):
    scored: int
    model_version_ids: list[int]


def _factor(factor: Factor) -> FactorRead:
    return FactorRead(**factor.as_dict())


def score_read(insight: service.OpportunityInsight) -> ScoreRead:
    """Shape an insight for the API (both languages in every factor)."""
    return ScoreRead(
        opportunity_id=insight.opportunity_id,
        probability=insight.probability,
        health=insight.health,
        manual_probability=insight.manual_probability,
        model_version=insight.model_version,
        model_kind=insight.model_kind,
        note=insight.note,
        positive_factors=[_factor(f) for f in insight.explanation.positive],
        negative_factors=[_factor(f) for f in insight.explanation.negative],
        levels=insight.levels,
        as_of=insight.as_of,
        computed_at=insight.computed_at,
        is_stored=insight.is_stored,
    )


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/insights", tags=[TAG])

    @routes.get("/opportunities/{opportunity_id}/score", response_model=ScoreRead)
    def get_score(opportunity_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """The latest score: probability, health, the rep's figure, top factors."""
        return score_read(service.explain_opportunity(session, actor, opportunity_id))

    @routes.post("/train", response_model=TrainRead)
    def train(
        session: SessionDep, actor: ActorDep, body: TrainRequest | None = None
    ) -> Any:
        """Train the win model on closed deals (below minimum history: fallback)."""
        request = body or TrainRequest()
        report = service.train_champion(
            session,
            actor,
            request.cutoff,
            rule=HistoryRule(request.min_won, request.min_lost, request.window_days),
            promote=request.promote,
        )
        return TrainRead(
            model_version=report.version.version,
            model_kind=report.version.kind,
            status=report.version.status,
            won=report.won,
            lost=report.lost,
            is_fallback=report.is_fallback,
            note=report.note,
            calibration=report.calibration,
        )

    @routes.post("/score", response_model=ScoreRunRead)
    def score(
        session: SessionDep, actor: ActorDep, body: ScoreRequest | None = None
    ) -> Any:
        """Rescore the named opportunities (default: every open one in scope)."""
        stored = service.score_opportunities(
            session, actor, (body or ScoreRequest()).ids
        )
        versions = sorted({item.model_version_id for item in stored})
        return ScoreRunRead(scored=len(stored), model_version_ids=versions)

    return [routes]
