"""HTTP routes of lineage: provenance of figures, drill-down and replay.

``POST /api/v1/lineage/figures``               compute a figure, store provenance
``GET  /api/v1/lineage/figures/{id}``          the provenance (and its integrity)
``GET  /api/v1/lineage/figures/{id}/records``  source records with field edits
``POST /api/v1/lineage/figures/{id}/replay``   reproduce the figure exactly
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from waggle.apikit import ActorDep, SessionDep
from waggle.core.actor import Actor
from waggle.governance.lineage import (
    FigureSpec,
    check_provenance,
    compute_figure,
    drill_down,
    get_figure,
    readable_record_ids,
    replay_figure,
    spec_for_viewer,
    value_visible,
)
from waggle.governance.lineage_models import FigureProvenance, plain_value

TAG = "lineage"

Scalar = str | int | bool | None
# A range: {"from": a, "to": b, "before": c} over numbers, dates, instants.
Bounds = dict[str, str | int | float]


class FigureRequest(BaseModel):
    """A figure to compute: a name and the query as data."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    resource: str
    measure: str = "count"
    filters: dict[str, Scalar | list[Scalar] | Bounds] = Field(default_factory=dict)
    group_by: list[str] = Field(default_factory=list)
    part: dict[str, Scalar | list[Scalar] | Bounds] = Field(default_factory=dict)
    weights: dict[str, int] = Field(default_factory=dict)
    scores: dict[str, str] = Field(default_factory=dict)
    places: int = 2


def provenance_body(
    session: Session, actor: Actor, figure: FigureProvenance, *, is_new: bool = False
) -> dict[str, Any]:
    """Return a provenance as the API and the CLI show it to ``actor``.

    Record ids are listed only for the records the actor may read, and the
    value only when they may read all of them (or computed the figure). A figure
    computed in this transaction is not checked: its audit entry is written
    when the transaction commits.
    """
    problems = [] if is_new else check_provenance(session, figure)
    readable = readable_record_ids(session, actor, figure)
    shown = is_new or value_visible(session, actor, figure, readable=readable)
    return {
        "id": figure.id,
        "name": figure.name,
        "value": figure.value if shown else None,
        "value_withheld": not shown,
        "spec": spec_for_viewer(figure, readable, is_value_shown=shown),
        "computed_at": plain_value(figure.computed_at),
        "computed_by": {
            "user_id": figure.user_id,
            "username": figure.username,
            "roles": figure.roles.split(",") if figure.roles else [],
            "scope": figure.scope,
        },
        "policy": {"version": figure.policy_version, "digest": figure.policy_digest},
        "audit": {
            "chain_seq": figure.chain_seq,
            "chain_hash": figure.chain_hash,
            "checkpoint_id": figure.checkpoint_id,
            "checkpoint_seq": figure.checkpoint_seq,
        },
        "record_ids": readable,
        "record_count": len(figure.record_ids),
        "values_digest": figure.values_digest,
        "edit_seq": figure.edit_seq,
        "provenance_digest": figure.provenance_digest,
        "is_intact": not problems,
        "problems": problems,
    }


def routers() -> list[APIRouter]:
    """Return this module's routers for the application."""
    routes = APIRouter(prefix="/api/v1/lineage", tags=[TAG])

    @routes.post("/figures", status_code=201)
    def compute(
        body: FigureRequest, session: SessionDep, actor: ActorDep
    ) -> dict[str, Any]:
        """Compute a figure through the policy and store its provenance."""
        spec = FigureSpec.of(body.model_dump(exclude={"name"}))
        figure = compute_figure(session, actor, name=body.name, spec=spec)
        return provenance_body(session, actor, figure, is_new=True)

    @routes.get("/figures/{figure_id}")
    def show(figure_id: int, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
        """Return a figure's provenance and whether it is intact."""
        return provenance_body(session, actor, get_figure(session, actor, figure_id))

    @routes.get("/figures/{figure_id}/records")
    def records(figure_id: int, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
        """Return the source records the caller may read, with field edits."""
        return drill_down(session, actor, figure_id).as_dict()

    @routes.post("/figures/{figure_id}/replay")
    def replay(figure_id: int, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
        """Recompute the figure as of its computation and compare with today."""
        return replay_figure(session, actor, figure_id).as_dict()

    return [routes]
