"""The home page: headline figures and pipeline amount by stage."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from waggle.apikit import SessionDep
from waggle.core.clock import now
from waggle.core.errors import InvalidInput
from waggle.crm.models import Pipeline
from waggle.crm.service import ACCOUNTS, OPPORTUNITIES
from waggle.governance.lineage import compute_figures, figure_values
from waggle.governance.records import list_records
from waggle.identity.orgchart import EMPLOYEES
from waggle.signals.ingest import RESOURCE as EVENTS
from waggle.web.context import PageContext, PageDep
from waggle.web.lineage_pages import dashboard_specs
from waggle.web.queries import (
    StageTotal,
    names_by_id,
    readable_pipelines,
    stage_index,
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
    the figures use (say, the amount), the same queries give the values,
    without provenance and so without links, rather than failing the page.
    """
    specs = dashboard_specs(
        pipeline,
        with_accounts=page.may("read", "accounts"),
        capture_until=_capture_until() if page.may("read", EVENTS) else None,
    )
    try:  # a refused spec stores nothing (see compute_figures)
        computed = compute_figures(session, page.actor, specs, reuse=True)
    except InvalidInput as error:
        logger.warning(
            "dashboard lineage not computed",
            extra={"code": error.code, "reason": str(error)},
        )
        return _headline_of(figure_values(session, page.actor, specs), lineage={})
    values = {name: figure.value for name, figure in computed.items()}
    lineage = {name: figure.id for name, figure in computed.items()}
    return _headline_of(values, lineage=lineage)


def _headline_of(values: Mapping[str, Any], *, lineage: dict[str, int]) -> Headline:
    return Headline(
        figures=_figures(values),
        stage_totals=_stage_totals(values),
        account_count=int(values["accounts"]) if "accounts" in values else None,
        captured_percent=_percent(values.get("captured_share")),
        lineage=lineage,
    )


def _capture_until() -> dt.datetime:
    """Return the end of the capture window: the current hour's start.

    A whole hour keeps the figure, and so its stored provenance, the same for
    every view within the hour when no event arrived meanwhile.
    """
    return now().replace(minute=0, second=0, microsecond=0)


def _percent(value: str | None) -> int | None:
    return None if value is None else int(value)


def _figures(values: Mapping[str, Any]) -> Figures:
    return Figures(
        open_count=int(values["open_count"]),
        open_amount=Decimal(values["open_amount"]),
        weighted_amount=Decimal(values["weighted_amount"]),
        won_count=int(values["won_count"]),
        won_amount=Decimal(values["won_amount"]),
        lost_count=int(values["lost_count"]),
    )


def _stage_totals(values: Mapping[str, Any]) -> dict[int, StageTotal]:
    """Return count and amount per open stage from the grouped figures."""
    amounts = _by_stage(values["stage_amounts"])
    return {
        stage_id: StageTotal(count=int(count), amount=Decimal(amounts[stage_id]))
        for stage_id, count in _by_stage(values["stage_counts"]).items()
    }


def _by_stage(grouped: Mapping[str, str]) -> dict[int, str]:
    # A grouped figure's keys are the JSON lists of the group's values.
    return {int(json.loads(key)[0]): value for key, value in grouped.items()}


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
