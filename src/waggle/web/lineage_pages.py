"""Web pages: the lineage pages (provenance of figures, drill-down).

``GET /lineage/{id}`` shows a figure, its provenance, the source records the
viewer may read (masked as the policy masks them) with their fields' edit
history, and a replay button; ``POST /lineage/{id}/replay`` returns the
replay's result as an HTMX fragment. :func:`dashboard_specs` states the
dashboard's headline figures, which the dashboard computes with their
provenance so that each links here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from waggle.apikit import SessionDep
from waggle.core.errors import WaggleError
from waggle.crm.models import Pipeline
from waggle.governance.lineage import (
    DrillDown,
    FigureSpec,
    check_provenance,
    drill_down,
    replay_figure,
    spec_for_viewer,
    value_visible,
)
from waggle.signals.service import INTERACTION_TYPES
from waggle.web.context import (
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
)

router = APIRouter(include_in_schema=False)

OPPORTUNITIES = "opportunities"
ACCOUNTS = "accounts"
EVENTS = "behaviour_events"
CAPTURE_WINDOW = dt.timedelta(weeks=4)


@router.get("/lineage/{figure_id}")
def lineage_page(figure_id: int, page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show a figure's provenance and source records with their field edits."""
    drill = drill_down(session, page.actor, figure_id)
    figure = drill.figure
    is_shown = _is_value_shown(session, page, drill)
    readable = [record.record_id for record in drill.records]
    spec = spec_for_viewer(figure, readable, is_value_shown=is_shown)
    return page.render(
        "lineage.html",
        figure=figure,
        figure_value=figure.value if is_shown else None,
        drill=drill,
        problems=check_provenance(session, figure),
        spec_json=json.dumps(spec, ensure_ascii=False, sort_keys=True),
        shown=shown_value,
    )


@router.post("/lineage/{figure_id}/replay")
def lineage_replay(
    figure_id: int, page: FormPageDep, session: SessionDep
) -> HTMLResponse:
    """Replay a figure's provenance; return the result as a fragment."""
    try:
        replay = replay_figure(session, page.actor, figure_id)
    except WaggleError as error:
        abandon(session, page.actor, error)
        return page.render(
            "lineage_replay.html",
            replay=None,
            message=describe_error(page.t, error),
            shown=shown_value,
        )
    return page.render(
        "lineage_replay.html", replay=replay, message=None, shown=shown_value
    )


def _is_value_shown(session: Session, page: PageContext, drill: DrillDown) -> bool:
    # The drill-down already knows which records the viewer may read.
    readable = [record.record_id for record in drill.records]
    if drill.withheld:
        readable = []  # some are out of scope: only the author sees the value
    return value_visible(session, page.actor, drill.figure, readable=readable)


def shown_value(value: Any) -> str:
    """Return a figure's value or an edited field's value as text."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def dashboard_specs(
    pipeline: Pipeline, *, with_accounts: bool, capture_until: dt.datetime | None
) -> dict[str, FigureSpec]:
    """Return the specs of the dashboard's headline figures of ``pipeline``.

    With ``capture_until`` the share of interactions captured automatically
    in the :data:`CAPTURE_WINDOW` before it is one of them
    (``captured_share``, in whole percent).
    """
    specs = _dashboard_specs(pipeline)
    if with_accounts:
        specs["accounts"] = FigureSpec(resource=ACCOUNTS, measure="count")
    if capture_until is not None:
        specs["captured_share"] = captured_share_spec(capture_until)
    return specs


def captured_share_spec(until: dt.datetime) -> FigureSpec:
    """Return the spec of the automatic share of interactions before ``until``.

    The interactions are those of the coverage report
    (:func:`waggle.signals.service.coverage_report`): events of an
    interaction type with an acting employee (``actor_id`` from 1 leaves out
    events nobody could be matched to), in the window before ``until``.
    """
    since = until - CAPTURE_WINDOW
    return FigureSpec(
        resource=EVENTS,
        measure="share",
        filters={
            "actor_id": {"from": 1},
            "event_type": sorted(str(kind) for kind in INTERACTION_TYPES),
            "occurred_at": {"from": since.isoformat(), "before": until.isoformat()},
        },
        part={"is_automatic": True},
        places=0,
    )


def _dashboard_specs(pipeline: Pipeline) -> dict[str, FigureSpec]:
    won = [stage.id for stage in pipeline.stages if stage.is_won]
    lost = [stage.id for stage in pipeline.stages if stage.is_lost]
    open_stages = [s.id for s in pipeline.stages if not (s.is_won or s.is_lost)]
    weights = {str(s.id): s.probability for s in pipeline.stages if s.id in open_stages}

    def spec(measure: str, stages: list[int], **extra: Any) -> FigureSpec:
        filters = {"pipeline_id": pipeline.id, "stage_id": stages}
        return FigureSpec(
            resource=OPPORTUNITIES, measure=measure, filters=filters, **extra
        )

    by_stage = ("stage_id",)
    return {
        "open_amount": spec("sum:amount", open_stages),
        "open_count": spec("count", open_stages),
        "stage_amounts": spec("sum:amount", open_stages, group_by=by_stage),
        "stage_counts": spec("count", open_stages, group_by=by_stage),
        "weighted_amount": spec(
            "weighted:amount:stage_id", open_stages, weights=weights
        ),
        "won_amount": spec("sum:amount", won),
        "won_count": spec("count", won),
        "lost_count": spec("count", lost),
        "win_rate": spec("share", won + lost, part={"stage_id": won}, places=0),
    }
