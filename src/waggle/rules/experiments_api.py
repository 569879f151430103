"""HTTP routes of the rules' A/B experiments: list, create, report, stop."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from waggle.apikit import ActorDep, SessionDep
from waggle.rules import experiments

TAG = "experiments"


class ExperimentCreate(BaseModel):
    """The plan of a new experiment; the salt is chosen by the server."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(max_length=80)
    name: str = Field(min_length=1, max_length=200)
    rule_ref: str = Field(min_length=1, max_length=120)
    metric: str
    holdout_share: float = 0.2
    window_days: int = 14
    planned_sample_size: int
    minimum_detectable_effect: float
    confidence_level: float = 0.95


class ExperimentRead(BaseModel):
    """One experiment as stored, with its plan and status."""

    model_config = ConfigDict(from_attributes=True)

    key: str
    name: str
    rule_ref: str
    metric: str
    holdout_share: float
    salt: str
    window_days: int
    planned_sample_size: int
    minimum_detectable_effect: float
    confidence_level: float
    status: str
    created_by: str
    created_at: dt.datetime
    stopped_at: dt.datetime | None


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/experiments", tags=[TAG])

    @routes.get("", response_model=list[ExperimentRead])
    def list_(session: SessionDep, actor: ActorDep, status: str | None = None) -> Any:
        """List experiments, newest first (optionally of one ``status``)."""
        return experiments.list_experiments(session, actor, status=status)

    @routes.post("", response_model=ExperimentRead, status_code=201)
    def create(body: ExperimentCreate, session: SessionDep, actor: ActorDep) -> Any:
        """Start running a rule as an A/B test with the given plan."""
        return experiments.create_experiment(session, actor, **body.model_dump())

    @routes.get("/{key}/report")
    def report(
        key: str,
        session: SessionDep,
        actor: ActorDep,
        as_of: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Return the experiment's report: arms, effect, CUPED, plan, peeking."""
        found = experiments.experiment_report(session, actor, key, as_of=as_of)
        return found.as_dict()

    @routes.post("/{key}/stop", response_model=ExperimentRead)
    def stop(key: str, session: SessionDep, actor: ActorDep) -> Any:
        """Stop an experiment: no more exposures; the report stays readable."""
        return experiments.stop_experiment(session, actor, key)

    return [routes]
