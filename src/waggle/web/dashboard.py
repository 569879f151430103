"""The home page: headline figures and pipeline amount by stage."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from waggle.apikit import SessionDep
from waggle.core.clock import now
from waggle.core.errors import InvalidInput
from waggle.crm.models import Pipeline, PipelineStage
from waggle.crm.service import ACCOUNTS, OPPORTUNITIES
from waggle.governance.lineage_models import FigureProvenance
from waggle.governance.records import list_records
from waggle.identity.orgchart import EMPLOYEES
from waggle.signals.ingest import RESOURCE as EVENTS
from waggle.signals.service import captured_share
from waggle.web.context import PageContext, PageDep
from waggle.web.lineage_pages import CAPTURE_WINDOW, dashboard_figures
from waggle.web.queries import (
    StageTotal,
    count_visible,
    names_by_id,
    readable_pipelines,
    stage_index,
    stage_totals,
)

logger = logging.getLogger(__name__)

CLOSING_SOON = 8

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Figures:
    """The headline numbers of the default pipeline, as the actor may see them."""

    open_count: int
    open_amount: Decimal
    weighted_amount: Decimal
    won_count: int
    won_amount: Decimal
    lost_count: int

    @property
    def win_rate(self) -> int | None:
        decided = self.won_count + self.lost_count
        return round(100 * self.won_count / decided) if decided else None


@router.get("/")
def dashboard(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the figures, the chart and the opportunities closing next."""
    if not (page.may("read", "opportunities") and page.may("read", "pipelines")):
        return page.render("dashboard.html", pipeline=None)
    pipelines = readable_pipelines(session, page.actor)
    page.stages = stage_index(pipelines)
    if not pipelines:
        return page.render("dashboard.html", pipeline=None)
    pipeline = pipelines[0]
    closing = list_records(
        session,
        page.actor,
        OPPORTUNITIES,
        filters={"status": "open"},
        sort="expected_close_on",
        limit=CLOSING_SOON,
    ).items
    headline = _headline(page, session, pipeline)
    return page.render(
        "dashboard.html",
        pipeline=pipeline,
        figures=headline.figures,
        lineage=headline.lineage,
        account_count=headline.account_count,
        captured_percent=headline.captured_percent,
        chart=_chart(page, pipeline, headline.stage_totals),
        closing=closing,
        accounts=names_by_id(
            session, page.actor, ACCOUNTS, (o.account_id for o in closing)
        ),
        owners=names_by_id(
            session, page.actor, EMPLOYEES, (o.owner_id for o in closing)
        ),
    )


@dataclass(frozen=True)
class Headline:
    """What the page shows above the chart, and the lineage id of each figure."""

    figures: Figures
    stage_totals: dict[int, StageTotal]
    account_count: int | None
    captured_percent: int | None
    lineage: dict[str, int]


def _headline(page: PageContext, session: Session, pipeline: Pipeline) -> Headline:
    """Compute the headline figures with their provenance (lineage).

    Lineage takes unclassified fields only: when a data owner classifies one
    the figures use (say, the amount), they are computed as before lineage,
    without links, rather than failing the page.
    """
    with_accounts = page.may("read", "accounts")
    capture_until = _capture_until() if page.may("read", EVENTS) else None
    try:  # a refused spec stores nothing (see compute_figures)
        computed = dashboard_figures(
            session,
            page.actor,
            pipeline,
            with_accounts=with_accounts,
            capture_until=capture_until,
        )
    except InvalidInput as error:
        logger.warning(
            "dashboard lineage not computed",
            extra={"code": error.code, "reason": str(error)},
        )
        return _headline_without_lineage(
            page, session, pipeline, with_accounts, capture_until
        )
    return Headline(
        figures=_figures(computed),
        stage_totals=_stage_totals(computed),
        account_count=(
            int(computed["accounts"].value) if "accounts" in computed else None
        ),
        captured_percent=_percent(computed.get("captured_share")),
        lineage={name: figure.id for name, figure in computed.items()},
    )


def _headline_without_lineage(
    page: PageContext,
    session: Session,
    pipeline: Pipeline,
    with_accounts: bool,
    capture_until: dt.datetime | None,
) -> Headline:
    totals = stage_totals(session, page.actor, pipeline_id=pipeline.id)
    zero = StageTotal(count=0, amount=Decimal("0.00"))

    def total(stages: list[PipelineStage]) -> StageTotal:
        found = [totals.get(stage.id, zero) for stage in stages]
        return StageTotal(
            count=sum(t.count for t in found),
            amount=sum((t.amount for t in found), Decimal("0.00")),
        )

    open_stages = [s for s in pipeline.stages if not (s.is_won or s.is_lost)]
    weighted = sum(
        (totals.get(s.id, zero).amount * s.probability / 100 for s in open_stages),
        Decimal("0.00"),
    )
    opened = total(open_stages)
    won = total([s for s in pipeline.stages if s.is_won])
    figures = Figures(
        open_count=opened.count,
        open_amount=opened.amount,
        weighted_amount=weighted.quantize(Decimal("0.01")),
        won_count=won.count,
        won_amount=won.amount,
        lost_count=total([s for s in pipeline.stages if s.is_lost]).count,
    )
    share = (
        captured_share(
            session,
            page.actor,
            since=capture_until - CAPTURE_WINDOW,
            until=capture_until,
        )
        if capture_until is not None
        else None
    )
    return Headline(
        figures=figures,
        stage_totals=totals,
        account_count=(
            count_visible(session, page.actor, ACCOUNTS) if with_accounts else None
        ),
        captured_percent=None if share is None else round(100 * share),
        lineage={},
    )


def _capture_until() -> dt.datetime:
    """Return the end of the capture window: the current hour's start.

    A whole hour keeps the figure, and so its stored provenance, the same for
    every view within the hour when no event arrived meanwhile.
    """
    return now().replace(minute=0, second=0, microsecond=0)


def _percent(figure: FigureProvenance | None) -> int | None:
    if figure is None or figure.value is None:
        return None
    return int(figure.value)


def _figures(computed: dict[str, FigureProvenance]) -> Figures:
    return Figures(
        open_count=int(computed["open_count"].value),
        open_amount=Decimal(computed["open_amount"].value),
        weighted_amount=Decimal(computed["weighted_amount"].value),
        won_count=int(computed["won_count"].value),
        won_amount=Decimal(computed["won_amount"].value),
        lost_count=int(computed["lost_count"].value),
    )


def _stage_totals(computed: dict[str, FigureProvenance]) -> dict[int, StageTotal]:
    """Return count and amount per open stage from the grouped figures."""
    amounts = _by_stage(computed["stage_amounts"])
    counts = _by_stage(computed["stage_counts"])
    return {
        stage_id: StageTotal(count=int(count), amount=Decimal(amounts[stage_id]))
        for stage_id, count in counts.items()
    }


def _by_stage(figure: FigureProvenance) -> dict[int, str]:
    # A grouped figure's keys are the JSON lists of the group's values.
    return {int(json.loads(key)[0]): value for key, value in figure.value.items()}


def _chart(
    page: PageContext, pipeline: Pipeline, totals: dict[int, StageTotal]
) -> dict[str, Any]:
    """Return the chart's data for the page's JSON island (read by waggle.js)."""
    stages = [s for s in pipeline.stages if not (s.is_won or s.is_lost)]
    zero = StageTotal(count=0, amount=Decimal("0.00"))
    return {
        "labels": [page.fmt.stage(stage) for stage in stages],
        "amounts": [float(totals.get(stage.id, zero).amount) for stage in stages],
        "counts": [totals.get(stage.id, zero).count for stage in stages],
        "amountLabel": page.t("dashboard.chart_amount"),
        "countLabel": page.t("dashboard.chart_count"),
        "unit": "万" if page.locale == "zh-CN" else "",
    }
