"""The pipeline board: a column per open stage, won and lost as drop targets.

Dragging a card posts the move to :func:`move_card`, which calls the same
service as the API and answers with the refusal reason in the user's language
or with the new counts and totals of every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from waggle.apikit import SessionDep, status_for
from waggle.core.actor import Actor
from waggle.core.errors import WaggleError
from waggle.crm.models import Opportunity, Pipeline, PipelineStage
from waggle.crm.service import ACCOUNTS, OPPORTUNITIES, move_opportunity_stage
from waggle.governance.records import list_records
from waggle.identity.orgchart import EMPLOYEES
from waggle.web.context import (
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_int,
)
from waggle.web.queries import (
    StageTotal,
    names_by_id,
    owner_choices,
    readable_pipelines,
    stage_index,
    stage_totals,
)
from waggle.web.rendering import Formatter

CARDS_PER_STAGE = 25
BOARD_SORTS = {"amount": "-amount", "recent": "-stage_entered_at"}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Column:
    """One stage on the board, with the cards shown and the totals of all."""

    stage: PipelineStage
    cards: list[Opportunity]
    total: StageTotal

    @property
    def hidden(self) -> int:
        return max(self.total.count - len(self.cards), 0)


class CardMove(BaseModel):
    opportunity_id: int
    stage_id: int
    loss_reason: str | None = Field(default=None, max_length=200)
    # The board's owner filter, so that the returned totals match the columns.
    owner_id: int | None = None


@router.get("/board")
def board(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the board of the default (or chosen) pipeline."""
    params = page.request.query_params
    pipelines = readable_pipelines(session, page.actor)
    page.stages = stage_index(pipelines)
    if not pipelines:
        return page.render("board.html", pipeline=None, pipelines=[])
    pipeline = _chosen(pipelines, query_int(params, "pipeline_id"))
    owner_id = query_int(params, "owner_id")
    requested = params.get("sort", "amount")
    sort_name = requested if requested in BOARD_SORTS else "amount"
    columns = _columns(
        session, page.actor, pipeline, owner_id=owner_id, sort=BOARD_SORTS[sort_name]
    )
    cards = [card for column in columns for card in column.cards]
    return page.render(
        "board.html",
        pipeline=pipeline,
        pipelines=pipelines,
        open_columns=[c for c in columns if _is_open(c.stage)],
        closing_columns=[c for c in columns if not _is_open(c.stage)],
        accounts=names_by_id(
            session, page.actor, ACCOUNTS, (c.account_id for c in cards)
        ),
        owners=names_by_id(session, page.actor, EMPLOYEES, (c.owner_id for c in cards)),
        owner_options=owner_choices(session, page.actor, OPPORTUNITIES.name),
        owner_id=owner_id,
        sort=sort_name,
    )


@router.post("/board/move")
def move_card(move: CardMove, page: FormPageDep, session: SessionDep) -> JSONResponse:
    """Move a card's opportunity to another stage, or say why not."""
    stage = session.get(PipelineStage, move.stage_id)
    try:
        opportunity = move_opportunity_stage(
            session,
            page.actor,
            move.opportunity_id,
            stage_id=move.stage_id,
            loss_reason=move.loss_reason or None,
        )
    except WaggleError as error:
        abandon(session, page.actor, error)
        message = describe_error(page.t, error, stage=stage)
        return JSONResponse(
            {"ok": False, "message": message}, status_code=status_for(error)
        )
    return JSONResponse(_moved_body(session, page, opportunity, owner_id=move.owner_id))


def _moved_body(
    session: Session,
    page: PageContext,
    opportunity: Opportunity,
    *,
    owner_id: int | None,
) -> dict[str, Any]:
    pipelines = readable_pipelines(session, page.actor)
    page.stages = stage_index(pipelines)
    fmt = Formatter(page.t, page.stages)
    totals = stage_totals(
        session, page.actor, pipeline_id=opportunity.pipeline_id, owner_id=owner_id
    )
    pipeline_stages = [
        stage
        for stage in page.stages.values()
        if stage.pipeline_id == opportunity.pipeline_id
    ]
    columns = {
        str(stage.id): _column_figures(fmt, totals.get(stage.id))
        for stage in pipeline_stages
    }
    message = page.t(
        "board.moved", name=opportunity.name, stage=fmt.stage(opportunity.stage_id)
    )
    return {"ok": True, "message": message, "columns": columns}


def _column_figures(fmt: Formatter, total: StageTotal | None) -> dict[str, Any]:
    total = total or StageTotal(count=0, amount=Decimal("0.00"))
    return {"count": total.count, "total": fmt.money_short(total.amount)}


def _chosen(pipelines: list[Pipeline], pipeline_id: int | None) -> Pipeline:
    return next((p for p in pipelines if p.id == pipeline_id), pipelines[0])


def _is_open(stage: PipelineStage) -> bool:
    return not (stage.is_won or stage.is_lost)


def _columns(
    session: Session,
    actor: Actor,
    pipeline: Pipeline,
    *,
    owner_id: int | None,
    sort: str,
) -> list[Column]:
    totals = stage_totals(session, actor, pipeline_id=pipeline.id, owner_id=owner_id)
    columns = []
    for stage in pipeline.stages:
        cards: list[Opportunity] = []
        if _is_open(stage):
            filters: dict[str, Any] = {"stage_id": stage.id}
            if owner_id is not None:
                filters["owner_id"] = owner_id
            cards = list_records(
                session,
                actor,
                OPPORTUNITIES,
                filters=filters,
                sort=sort,
                limit=CARDS_PER_STAGE,
            ).items
        total = totals.get(stage.id) or StageTotal(count=0, amount=Decimal("0.00"))
        columns.append(Column(stage=stage, cards=cards, total=total))
    return columns
