"""HTTP routes of the data catalogue, the masking matrix and aggregate queries.

``POST /api/v1/governance/aggregates``                  answer an aggregate query
``GET  /api/v1/governance/aggregates/{id}/provenance``  its provenance, no row
``POST /api/v1/governance/aggregates/{id}/replay``      reproduce it exactly
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from waggle.apikit import ActorDep, SessionDep
from waggle.core.db import Base
from waggle.core.settings import Settings
from waggle.governance.aggregate_lineage import aggregate_provenance, replay_aggregate
from waggle.governance.aggregates import run_aggregate
from waggle.governance.catalogue import (
    GRADES,
    LEVEL_LABELS,
    active_catalogue,
    classify_field,
    configure_catalogue,
    list_catalogue,
)
from waggle.governance.masking import MASK_KINDS, active_rules, refuse_unmaskable

TAG = "governance"


class FieldClassUpdate(BaseModel):
    """The parts of one field's classification to change; others stay."""

    model_config = ConfigDict(extra="forbid")

    level: str | None = None
    grade: str | None = None
    is_personal: bool | None = None
    is_sensitive_personal: bool | None = None
    mask_format: str | None = None


class AggregateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource: str
    measure: str = "count"
    group_by: list[str] = Field(default_factory=list)
    filters: dict[str, str | int | bool | None] = Field(default_factory=dict)


def routers(settings: Settings | None = None) -> list[APIRouter]:
    """Return the routes; ``settings`` names the catalogue file to use."""
    if settings is not None:
        configure_catalogue(settings.catalogue_file)
    routes = APIRouter(prefix="/api/v1/governance", tags=[TAG])

    @routes.get("/catalogue")
    def catalogue(session: SessionDep, actor: ActorDep) -> dict[str, Any]:
        """List every field's classification, the grades and the masking matrix."""
        fields = list_catalogue(session, actor)
        rules = active_rules()
        return {
            "version": active_catalogue(session).version,
            "levels": LEVEL_LABELS,
            "grades": list(GRADES),
            "mask_kinds": list(MASK_KINDS),
            "masking": {
                "owner_sees_full": rules.owner_sees_full,
                "grades": rules.grades,
            },
            "technical_tables": active_catalogue(session).technical_tables,
            "fields": [entry.as_dict() for entry in fields],
        }

    @routes.put("/catalogue/{table}/{column}")
    def classify(
        table: str,
        column: str,
        body: FieldClassUpdate,
        session: SessionDep,
        actor: ActorDep,
    ) -> dict[str, Any]:
        """Change one field's classification (data owner only; audited)."""
        updated = classify_field(
            session,
            actor,
            table,
            column,
            changes=body.model_dump(exclude_none=True),
            check=[refuse_unmaskable(Base.metadata)],
        )
        return updated.as_dict()

    @routes.post("/aggregates")
    def aggregates(
        body: AggregateRequest, session: SessionDep, actor: ActorDep
    ) -> dict[str, Any]:
        """Answer a count, sum or average grouped by allowed dimensions."""
        return run_aggregate(
            session,
            actor,
            resource=body.resource,
            measure=body.measure,
            group_by=body.group_by,
            filters=body.filters,
        ).as_dict()

    @routes.get("/aggregates/{query_id}/provenance")
    def aggregate_lineage(
        query_id: int, session: SessionDep, actor: ActorDep
    ) -> dict[str, Any]:
        """Return an answered query's provenance with the ids the caller may read."""
        return aggregate_provenance(session, actor, query_id).as_dict()

    @routes.post("/aggregates/{query_id}/replay")
    def aggregate_replay(
        query_id: int, session: SessionDep, actor: ActorDep
    ) -> dict[str, Any]:
        """Recompute an answered query as it was answered and compare with today."""
        return replay_aggregate(session, actor, query_id).as_dict()

    return [routes]
