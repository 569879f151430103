"""The pipeline settings page: edit stages in a web form, without code.

The form becomes the same document as the YAML file and the API body, and
goes through :func:`parse_pipeline` and :func:`apply_pipeline`. Existing
stages keep their key (it is how stages are matched); a new stage gets its
key from its English name unless one is typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SessionDep, status_for
from waggle.core.errors import WaggleError
from waggle.crm.models import Pipeline
from waggle.crm.pipelines import apply_pipeline, parse_pipeline
from waggle.web.context import (
    FormDep,
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_int,
    query_text,
)
from waggle.web.queries import readable_pipelines

# Opportunity fields a stage may require, in the order the form lists them.
REQUIRABLE_FIELDS = (
    "amount",
    "expected_close_on",
    "customer_pain_points",
    "decision_maker_contact_id",
    "budget_confirmed",
    "loss_reason",
    "source",
    "manual_probability",
)
STAGE_KINDS = ("open", "won", "lost")
_ROW_FIELD = re.compile(r"^stages-(\d+)-(\w+)$")

router = APIRouter(include_in_schema=False)


@dataclass
class StageRow:
    """One row of the form, as stored or as submitted."""

    index: int
    key: str = ""
    name: str = ""
    name_en: str = ""
    probability: str = ""
    order: str = ""
    required: list[str] = field(default_factory=list)
    kind: str = "open"
    is_new: bool = True
    remove: bool = False

    @property
    def is_blank(self) -> bool:
        return self.is_new and not (self.key or self.name or self.name_en)


@router.get("/settings/pipeline")
def pipeline_settings(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the stages of a pipeline in an editable form."""
    params = page.request.query_params
    pipelines = readable_pipelines(session, page.actor)
    if not pipelines:
        return page.render("pipeline_settings.html", pipeline=None)
    pipeline = _chosen(pipelines, query_int(params, "pipeline_id"))
    rows = [*_stored_rows(pipeline), StageRow(index=len(pipeline.stages))]
    notice = page.t("pipeline.saved") if query_text(params, "done") else None
    return _render(page, pipelines, pipeline, rows, notice=notice)


@router.post("/settings/pipeline")
def save_pipeline(page: FormPageDep, session: SessionDep, form: FormDep) -> Response:
    """Apply the submitted stages; a refusal is shown with the reason."""
    pipelines = readable_pipelines(session, page.actor)
    pipeline = next(
        (p for p in pipelines if p.key == form.get("pipeline_key")),
        pipelines[0] if pipelines else None,
    )
    if pipeline is None:
        return RedirectResponse("/settings/pipeline", 303)
    rows = submitted_rows(form)
    document = pipeline_document(
        key=pipeline.key,
        name=str(form.get("pipeline_name") or pipeline.name).strip(),
        is_default=form.get("is_default") == "on",
        rows=rows,
    )
    try:
        definition = parse_pipeline(document, origin="web form")
        saved = apply_pipeline(session, page.actor, definition)
    except WaggleError as error:
        abandon(session, page.actor, error)
        pipelines = readable_pipelines(session, page.actor)
        pipeline = next(p for p in pipelines if p.key == document["key"])
        return _render(
            page,
            pipelines,
            pipeline,
            rows,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    return RedirectResponse(f"/settings/pipeline?pipeline_id={saved.id}&done=1", 303)


def submitted_rows(form: FormData) -> list[StageRow]:
    """Read the stage rows of the form, in the order the user set."""
    rows: dict[int, StageRow] = {}
    for name in form:
        match = _ROW_FIELD.match(name)
        if match is None:
            continue
        row = rows.setdefault(int(match[1]), StageRow(index=int(match[1])))
        _assign(row, match[2], form, name)
    return sorted(rows.values(), key=_row_order)


def _assign(row: StageRow, part: str, form: FormData, name: str) -> None:
    value = str(form.get(name) or "").strip()
    if part == "required":
        row.required = [str(v) for v in form.getlist(name)]
    elif part == "kind":
        row.kind = value if value in STAGE_KINDS else "open"
    elif part == "remove":
        row.remove = value == "on"
    elif part == "existing":
        row.is_new = False
    elif part in ("key", "name", "name_en", "probability", "order"):
        setattr(row, part, value)


def _row_order(row: StageRow) -> tuple[int, int]:
    order = int(row.order) if row.order.lstrip("-").isdigit() else row.index * 10
    return order, row.index


def pipeline_document(
    *, key: str, name: str, is_default: bool, rows: list[StageRow]
) -> dict[str, Any]:
    """Return the pipeline document (as in YAML) the kept rows describe."""
    kept = [row for row in rows if not row.remove and not row.is_blank]
    taken = {row.key for row in kept if row.key}
    stages = []
    for row in kept:
        if not row.key:
            row.key = _new_key(row, taken)
            taken.add(row.key)
        stages.append(
            {
                "key": row.key,
                "name": row.name,
                "name_en": row.name_en,
                "probability": row.probability,
                "required_fields": row.required,
                "is_won": row.kind == "won",
                "is_lost": row.kind == "lost",
            }
        )
    return {"key": key, "name": name, "is_default": is_default, "stages": stages}


def _new_key(row: StageRow, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", row.name_en.lower()).strip("_")[:50]
    base = base or f"stage_{row.index}"
    key, suffix = base, 2
    while key in taken:
        key, suffix = f"{base}_{suffix}", suffix + 1
    return key


def _stored_rows(pipeline: Pipeline) -> list[StageRow]:
    return [
        StageRow(
            index=index,
            key=stage.key,
            name=stage.name,
            name_en=stage.name_en,
            probability=str(stage.probability),
            order=str((index + 1) * 10),
            required=list(stage.required_fields),
            kind="won" if stage.is_won else "lost" if stage.is_lost else "open",
            is_new=False,
        )
        for index, stage in enumerate(pipeline.stages)
    ]


def _chosen(pipelines: list[Pipeline], pipeline_id: int | None) -> Pipeline:
    return next((p for p in pipelines if p.id == pipeline_id), pipelines[0])


def _render(
    page: PageContext,
    pipelines: list[Pipeline],
    pipeline: Pipeline,
    rows: list[StageRow],
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    extra = sorted({f for row in rows for f in row.required} - set(REQUIRABLE_FIELDS))
    return page.render(
        "pipeline_settings.html",
        status_code=status_code,
        pipelines=pipelines,
        pipeline=pipeline,
        rows=rows,
        blank_row=StageRow(index=0),
        requirable=[*REQUIRABLE_FIELDS, *extra],
        kinds=STAGE_KINDS,
        may_edit=page.may("update", "pipelines"),
        next_index=max((row.index for row in rows), default=-1) + 1,
        notice=notice,
        error=error,
    )
