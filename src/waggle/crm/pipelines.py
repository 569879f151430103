"""Pipelines and stages as data: loaded from YAML, the API or the web form."""

from __future__ import annotations

from importlib import resources as package_files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.crm.models import Opportunity, Pipeline, PipelineStage
from waggle.crm.schemas import PipelineDefinition
from waggle.governance import authorize, record_audit


def parse_pipeline(document: Any, *, origin: str) -> PipelineDefinition:
    """Validate a pipeline document.

    Raises:
        InvalidInput: the document names ``origin`` and the first bad field.
    """
    try:
        definition = PipelineDefinition.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"{origin}: {where}: {first['msg']}") from exc
    _check_stage_rules(definition, origin)
    return definition


def _check_stage_rules(definition: PipelineDefinition, origin: str) -> None:
    keys = [stage.key for stage in definition.stages]
    if len(set(keys)) != len(keys):
        raise InvalidInput(f"{origin}: stage keys must be unique, got {keys}")
    if not any(stage.is_won for stage in definition.stages):
        raise InvalidInput(f"{origin}: a pipeline needs one stage with is_won: true")
    if not any(stage.is_lost for stage in definition.stages):
        raise InvalidInput(f"{origin}: a pipeline needs one stage with is_lost: true")
    known = set(Opportunity.__table__.columns.keys())
    for stage in definition.stages:
        unknown = sorted(set(stage.required_fields) - known)
        if unknown:
            raise InvalidInput(
                f"{origin}: stage {stage.key}: required_fields {unknown} "
                "are not opportunity fields"
            )


def load_pipeline_file(path: Path) -> PipelineDefinition:
    """Read and validate a pipeline YAML file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path}: not a readable YAML file ({exc})") from exc
    return parse_pipeline(document, origin=str(path))


def default_pipeline_definition() -> PipelineDefinition:
    text = (
        package_files.files("waggle.crm")
        .joinpath("default_pipeline.yaml")
        .read_text(encoding="utf-8")
    )
    return parse_pipeline(yaml.safe_load(text), origin="default_pipeline.yaml")


def apply_pipeline(
    session: Session, actor: Actor, definition: PipelineDefinition
) -> Pipeline:
    """Create or update a pipeline by key; stages are matched by their keys.

    Raises:
        PolicyDenied: the actor may not change pipelines.
        Conflict: a stage to be removed still holds opportunities.
    """
    pipeline = session.scalar(select(Pipeline).where(Pipeline.key == definition.key))
    action = "update" if pipeline is not None else "create"
    authorize(session, actor, action, "pipelines")
    if pipeline is None:
        pipeline = Pipeline(key=definition.key, name=definition.name)
        session.add(pipeline)
    pipeline.name = definition.name
    if definition.is_default:
        for other in session.scalars(select(Pipeline).where(Pipeline.is_default)):
            other.is_default = False
    pipeline.is_default = definition.is_default
    _sync_stages(session, pipeline, definition)
    session.flush()
    record_audit(
        session, actor, action=action, resource="pipelines", record_ids=[pipeline.id]
    )
    return pipeline


def _sync_stages(
    session: Session, pipeline: Pipeline, definition: PipelineDefinition
) -> None:
    existing = {stage.key: stage for stage in pipeline.stages}
    wanted = {stage.key for stage in definition.stages}
    for key, stage in existing.items():
        if key not in wanted and _opportunities_in(session, stage) > 0:
            raise Conflict(
                f"pipeline {definition.key}: stage {key} still holds opportunities; "
                "move them before removing the stage"
            )
    stages = []
    for position, item in enumerate(definition.stages):
        stage = existing.get(item.key) or PipelineStage(key=item.key)
        stage.name, stage.name_en = item.name, item.name_en
        stage.position, stage.probability = position, item.probability
        stage.required_fields = list(item.required_fields)
        stage.is_won, stage.is_lost = item.is_won, item.is_lost
        stages.append(stage)
    pipeline.stages = stages


def _opportunities_in(session: Session, stage: PipelineStage) -> int:
    if stage.id is None:
        return 0
    return (
        session.scalar(
            select(func.count())
            .select_from(Opportunity)
            .where(Opportunity.stage_id == stage.id)
        )
        or 0
    )


def list_pipelines(session: Session, actor: Actor) -> list[Pipeline]:
    """Return every pipeline with its stages, in creation order."""
    authorize(session, actor, "read", "pipelines")
    pipelines = list(session.scalars(select(Pipeline).order_by(Pipeline.id)))
    record_audit(
        session,
        actor,
        action="read",
        resource="pipelines",
        record_ids=[pipeline.id for pipeline in pipelines],
    )
    return pipelines


def get_pipeline(session: Session, actor: Actor, pipeline_id: int) -> Pipeline:
    """Return one pipeline with its stages.

    Raises:
        NotFound: no pipeline has that id.
    """
    authorize(session, actor, "read", "pipelines")
    pipeline = _load_pipeline(session, pipeline_id)
    record_audit(
        session, actor, action="read", resource="pipelines", record_ids=[pipeline_id]
    )
    return pipeline


def delete_pipeline(session: Session, actor: Actor, pipeline_id: int) -> None:
    """Delete a pipeline that is not the default and holds no opportunities.

    Raises:
        NotFound: no pipeline has that id.
        Conflict: it is the default pipeline, or opportunities still use it.
    """
    authorize(session, actor, "delete", "pipelines")
    pipeline = _load_pipeline(session, pipeline_id)
    if pipeline.is_default:
        raise Conflict(
            f"pipeline {pipeline.key}: the default pipeline cannot be deleted; "
            "make another pipeline the default first"
        )
    held = sum(_opportunities_in(session, stage) for stage in pipeline.stages)
    if held:
        raise Conflict(
            f"pipeline {pipeline.key}: {held} opportunities still use it; "
            "it cannot be deleted"
        )
    session.delete(pipeline)
    session.flush()
    record_audit(
        session, actor, action="delete", resource="pipelines", record_ids=[pipeline_id]
    )


def _load_pipeline(session: Session, pipeline_id: int) -> Pipeline:
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise NotFound(f"pipeline {pipeline_id} does not exist")
    return pipeline


def default_pipeline(session: Session) -> Pipeline:
    """Return the default pipeline.

    Raises:
        NotFound: no pipeline is configured yet.
    """
    pipeline = session.scalar(
        select(Pipeline).where(Pipeline.is_default)
    ) or session.scalar(select(Pipeline).order_by(Pipeline.id))
    if pipeline is None:
        raise NotFound(
            "no pipeline is configured; run `waggle db upgrade` or apply one"
        )
    return pipeline


def ensure_default_pipeline(session: Session, actor: Actor) -> Pipeline:
    """Install the shipped pipeline if the instance has none."""
    existing = session.scalar(select(Pipeline).order_by(Pipeline.id))
    return existing or apply_pipeline(session, actor, default_pipeline_definition())
