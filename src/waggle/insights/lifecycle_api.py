"""HTTP routes of the model lifecycle: challengers, comparison reports, promotion.

- ``POST /api/v1/insights/challengers``: train a challenger on the closed deals
  Waggle holds and store its report;
- ``POST /api/v1/insights/challengers/upload``: import historical
  opportunities (the CRM ``opportunities`` import, CSV or XLSX with an
  optional column mapping), then train as above;
- ``GET /api/v1/insights/models``: the registry, every version with status;
- ``GET /api/v1/insights/models/{id}/report`` (JSON figures) and
  ``.../report.html`` (the self-contained page);
- ``POST /api/v1/insights/models/{id}/promotion`` (sales ops ask),
  ``.../promotion/approve`` and ``.../promotion/reject`` (a director decides).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from waggle.apikit import ActorDep, SessionDep
from waggle.core.actor import Actor
from waggle.crm.mapping import ColumnMapping, load_mapping
from waggle.insights import service
from waggle.insights.champion import HistoryRule
from waggle.insights.models import ModelPromotion, ModelVersion

TAG = "insights"


class ChallengerRequest(BaseModel):
    cutoff: dt.datetime | None = None
    until: dt.datetime | None = None
    min_won: int = Field(default=200, ge=1)
    min_lost: int = Field(default=200, ge=1)
    window_days: int = Field(default=730, ge=1)


class ChallengerRead(BaseModel):
    model_version_id: int
    model_version: str
    status: str
    champion_version: str
    cutoff: dt.datetime
    until: dt.datetime
    figures: dict[str, Any]
    report_url: str
    html_url: str
    import_summary: dict[str, Any] | None = None


class PromotionRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class DecisionRequest(BaseModel):
    note: str | None = Field(default=None, max_length=500)


class PromotionRead(BaseModel):
    id: int
    model_version_id: int
    status: str
    reason: str | None
    requested_by: str
    requested_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None


class VersionRead(BaseModel):
    id: int
    version: str
    kind: str
    status: str
    trained_at: dt.datetime
    cutoff: dt.datetime | None
    won_count: int
    lost_count: int
    created_by: str
    approved_by: str | None
    promotion: PromotionRead | None


def promotion_read(promotion: ModelPromotion) -> PromotionRead:
    """Shape a promotion request for the API."""
    return PromotionRead(
        id=promotion.id,
        model_version_id=promotion.model_version_id,
        status=promotion.status,
        reason=promotion.reason,
        requested_by=promotion.requested_by,
        requested_at=promotion.requested_at,
        decided_by=promotion.decided_by,
        decided_at=promotion.decided_at,
        decision_note=promotion.decision_note,
    )


def version_read(
    version: ModelVersion, promotion: ModelPromotion | None
) -> VersionRead:
    """Shape a registry row for the API, with its latest promotion request."""
    return VersionRead(
        id=version.id,
        version=version.version,
        kind=version.kind,
        status=version.status,
        trained_at=version.trained_at,
        cutoff=version.cutoff,
        won_count=version.won_count,
        lost_count=version.lost_count,
        created_by=version.created_by,
        approved_by=version.approved_by,
        promotion=None if promotion is None else promotion_read(promotion),
    )


def challenger_read(session: Session, run: service.ChallengerRun) -> ChallengerRead:
    champion = session.get(ModelVersion, run.report.champion_version_id or 0)
    base = f"/api/v1/insights/models/{run.version.id}/report"
    return ChallengerRead(
        model_version_id=run.version.id,
        model_version=run.version.version,
        status=run.version.status,
        champion_version=champion.version if champion else "",
        cutoff=run.report.cutoff,
        until=run.report.holdout_until,
        figures=run.report.figures,
        report_url=base,
        html_url=f"{base}.html",
        import_summary=None
        if run.import_summary is None
        else run.import_summary.as_dict(),
    )


def list_versions(session: Session, actor: Actor) -> list[VersionRead]:
    """Return the registry for the API: every version with its promotion state."""
    versions = service.list_model_versions(session, actor)
    promotions = service.promotions_of(session, [version.id for version in versions])
    return [version_read(version, promotions.get(version.id)) for version in versions]


def routers() -> list[APIRouter]:
    """Return this module's routers for the application."""
    routes = APIRouter(prefix="/api/v1/insights", tags=[TAG])
    _challenger_routes(routes)
    _registry_routes(routes)
    return [routes]


def _challenger_routes(routes: APIRouter) -> None:
    @routes.post("/challengers", status_code=201, response_model=ChallengerRead)
    def train(
        session: SessionDep, actor: ActorDep, body: ChallengerRequest | None = None
    ) -> Any:
        """Train a LightGBM challenger on closed deals and store its report."""
        request = body or ChallengerRequest()
        run = service.train_challenger_version(
            session,
            actor,
            cutoff=request.cutoff,
            until=request.until,
            rule=HistoryRule(request.min_won, request.min_lost, request.window_days),
        )
        return challenger_read(session, run)

    @routes.post("/challengers/upload", status_code=201, response_model=ChallengerRead)
    def upload(
        session: SessionDep,
        actor: ActorDep,
        file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or XLSX")],
        mapping: Annotated[UploadFile | None, File()] = None,
        file_format: Annotated[str | None, Form(alias="format")] = None,
        cutoff: Annotated[dt.datetime | None, Form()] = None,
        until: Annotated[dt.datetime | None, Form()] = None,
        min_won: Annotated[int, Form(ge=1)] = 200,
        min_lost: Annotated[int, Form(ge=1)] = 200,
        window_days: Annotated[int, Form(ge=1)] = 730,
    ) -> Any:
        """Import historical opportunities with outcomes, then train a challenger."""
        column_mapping = ColumnMapping()
        if mapping is not None:
            origin = mapping.filename or "mapping"
            column_mapping = load_mapping(mapping.file.read(), origin=origin)
        run = service.train_challenger_from_file(
            session,
            actor,
            file.file.read(),
            filename=file.filename or "opportunities.csv",
            file_format=file_format,
            mapping=column_mapping,
            cutoff=cutoff,
            until=until,
            rule=HistoryRule(min_won, min_lost, window_days),
        )
        return challenger_read(session, run)


def _registry_routes(routes: APIRouter) -> None:
    @routes.get("/models", response_model=list[VersionRead])
    def versions(session: SessionDep, actor: ActorDep) -> Any:
        """List every model version, newest first, with status and promotion."""
        return list_versions(session, actor)

    @routes.get("/models/{version_id}/report")
    def report(version_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """The comparison figures of a challenger (JSON)."""
        return service.get_report(session, actor, version_id).figures

    @routes.get("/models/{version_id}/report.html", response_class=HTMLResponse)
    def report_page(version_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """The comparison report as one self-contained page (inline SVG)."""
        return HTMLResponse(service.get_report(session, actor, version_id).html)

    @routes.post(
        "/models/{version_id}/promotion",
        status_code=201,
        response_model=PromotionRead,
    )
    def request_promotion(
        version_id: int,
        session: SessionDep,
        actor: ActorDep,
        body: PromotionRequest | None = None,
    ) -> Any:
        """Ask for a challenger to become champion (a director must approve)."""
        reason = (body or PromotionRequest()).reason
        promotion = service.request_promotion(session, actor, version_id, reason=reason)
        return promotion_read(promotion)

    @routes.post("/models/{version_id}/promotion/approve", response_model=PromotionRead)
    def approve(
        version_id: int,
        session: SessionDep,
        actor: ActorDep,
        body: DecisionRequest | None = None,
    ) -> Any:
        """Approve the open promotion: the challenger becomes the champion."""
        note = (body or DecisionRequest()).note
        return promotion_read(
            service.decide_promotion(session, actor, version_id, note=note)
        )

    @routes.post("/models/{version_id}/promotion/reject", response_model=PromotionRead)
    def reject(
        version_id: int,
        session: SessionDep,
        actor: ActorDep,
        body: DecisionRequest | None = None,
    ) -> Any:
        """Reject the open promotion: the challenger stays a challenger."""
        note = (body or DecisionRequest()).note
        return promotion_read(
            service.decide_promotion(
                session, actor, version_id, is_approved=False, note=note
            )
        )
