"""Web pages: the insights dashboards (pipeline, forecast, health, anomalies).

``/insights`` shows, for what the actor may read: the forecast of a period
with its categories and the roll-up against quotas, the backtest chart with
the +/-10% band, the customer-health distribution with the riskiest accounts,
the abnormal-behaviour list and the region comparison. Charts are ECharts
(served from ``/static/vendor``) fed by JSON islands; the tables beside them
hold the same figures. Two HTMX fragments put the win-model explanation on
the opportunity page and the customer health on the account page.
``/insights/models`` is the model registry: every version with its
champion/challenger report, and promotion requests and their approval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SessionDep, status_for
from waggle.core.errors import InvalidInput, NotFound, PolicyDenied, WaggleError
from waggle.crm.mapping import ColumnMapping, load_mapping
from waggle.insights import (
    customer_health,
    forecast,
    forecast_lineage,
    manager,
    service,
)
from waggle.insights.champion import HistoryRule
from waggle.insights.models import ModelReport
from waggle.insights.service import explain_opportunity
from waggle.web.context import (
    FormDep,
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_text,
)

logger = logging.getLogger(__name__)

LEVELS = ("rep", "team", "region")
BACKTEST_MONTHS = 12
RISKIEST = 10
ANOMALIES_SHOWN = 30
HEALTH_RESOURCE = customer_health.CUSTOMER_HEALTH
NOTE_LENGTH = 500  # as the registry's columns and the API allow
DEFAULT_HISTORY = 200  # won and lost deals a challenger needs, as the CLI asks

router = APIRouter(include_in_schema=False)


@router.get("/insights")
def insights_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show forecast, backtest, customer health, anomalies and regions."""
    params = page.request.query_params
    level = query_text(params, "level")
    level = level if level in LEVELS else "team"
    values = _empty(level)
    try:
        if page.may("read", forecast.FORECASTS):
            values |= _forecast_sections(
                page, session, query_text(params, "period"), level
            )
        if page.may("read", HEALTH_RESOURCE):
            values |= _health_section(page, session)
    except WaggleError as error:
        abandon(session, page.actor, error)
        values = _empty(level) | {"error": describe_error(page.t, error)}
    return page.render("insights_dashboard.html", **values)


def _empty(level: str) -> dict[str, Any]:
    return {
        "level": level,
        "levels": LEVELS,
        "error": None,
        "forecast": None,
        "forecast_lineage": {},
        "rollup_lineage": {},
        "health_count": None,
    }


def _forecast_sections(
    page: PageContext, session: Session, period: str, level: str
) -> dict[str, Any]:
    result = forecast.build_forecast(session, page.actor, period or None)
    lineage = _forecast_lineage(page, session, result, level)
    replay = forecast.backtest(session, page.actor, count=BACKTEST_MONTHS)
    found = manager.find_anomalies(session, page.actor)
    regions = manager.compare_regions(session, page.actor)
    return {
        "forecast": result,
        "forecast_lineage": lineage["headline"],
        "rollup_lineage": lineage["rollup"],
        "forecast_chart": _forecast_chart(page, result),
        "backtest": replay,
        "backtest_chart": _backtest_chart(page, replay),
        "anomalies": found[:ANOMALIES_SHOWN],
        "anomaly_count": len(found),
        "regions": regions,
        "region_names": manager.region_names(session),
    }


def _forecast_lineage(
    page: PageContext, session: Session, result: forecast.Forecast, level: str
) -> dict[str, dict[str, int]]:
    """Return the lineage ids of the headline figures and roll-up columns.

    A figure links to its provenance only when the lineage query gives the
    very values shown (see :mod:`waggle.insights.forecast_lineage`); the
    roll-up's columns have one at the rep level, where each line is one
    owner's records.
    """
    found: dict[str, dict[str, int]] = {"headline": {}, "rollup": {}}
    if not (page.may("create", "lineage") and page.may("read", "opportunities")):
        return found
    try:  # a refused spec stores nothing (see lineage.compute_figures)
        found["headline"] = forecast_lineage.headline_lineage(
            session, page.actor, result
        )
        if level == "rep" and page.may("read", forecast.QUOTAS):
            found["rollup"] = forecast_lineage.rollup_lineage(
                session, page.actor, result
            )
    except InvalidInput as error:
        # A field the figures use was classified since, for one: the forecast
        # is still shown, the refused figures without lineage links (those
        # computed before the refusal keep theirs).
        logger.warning(
            "forecast lineage not computed",
            extra={"code": error.code, "reason": str(error)},
        )
    return found


def _forecast_chart(page: PageContext, result: forecast.Forecast) -> dict[str, Any]:
    teams = [line for line in result.rollup if line.level == "team"]
    return {
        "names": [line.name for line in teams],
        "series": {
            page.t("insights.closed"): [float(line.closed) for line in teams],
            page.t("insights.weighted"): [float(line.weighted) for line in teams],
        },
        "quota_label": page.t("insights.quota"),
        "quota": [float(line.quota) for line in teams],
    }


def _backtest_chart(page: PageContext, replay: forecast.Backtest) -> dict[str, Any]:
    return {
        "periods": [p.period for p in replay.periods],
        "forecast_label": page.t("insights.backtest_forecast"),
        "actual_label": page.t("insights.backtest_actual"),
        "error_label": page.t("insights.backtest_error"),
        "band_label": page.t("insights.band"),
        "forecast": [float(p.forecast) for p in replay.periods],
        "actual": [float(p.actual) for p in replay.periods],
        "error": [
            None if p.error is None else round(p.error * 100, 1) for p in replay.periods
        ],
        "band": float(forecast.BAND) * 100,
    }


def _health_section(page: PageContext, session: Session) -> dict[str, Any]:
    # The stored snapshot (`waggle insights customer-health --store`) is read
    # when there is one: recomputing 37 signals per account is a batch job.
    stored = customer_health.latest_customer_health(session, page.actor)
    items = (
        stored.items
        if stored is not None
        else customer_health.assess_accounts(session, page.actor)
    )
    bands = customer_health.distribution(items)
    riskiest = sorted(items, key=lambda item: (-item.risk, item.account_id))
    return {
        "health_count": len(items),
        "health_as_of": stored.as_of if stored is not None else None,
        "riskiest": [item for item in riskiest if item.reasons][:RISKIEST],
        "health_chart": {
            "bands": [f"{10 * i}-{10 * i + 9}" for i in range(len(bands))],
            "counts": bands,
            "label": page.t("insights.accounts"),
        },
    }


@router.get("/opportunities/{opportunity_id}/insight")
def opportunity_insight(
    opportunity_id: int, page: PageDep, session: SessionDep
) -> HTMLResponse:
    """Return the win-model explanation of an opportunity as an HTMX fragment."""
    try:
        insight = explain_opportunity(session, page.actor, opportunity_id)
    except WaggleError as error:
        return _fragment_error(page, session, error, "insights_opportunity.html")
    return page.render("insights_opportunity.html", insight=insight, error=None)


@router.get("/accounts/{account_id}/health")
def account_health(account_id: int, page: PageDep, session: SessionDep) -> HTMLResponse:
    """Return an account's customer health and top reasons as an HTMX fragment."""
    try:
        health = customer_health.account_health(session, page.actor, account_id)
    except WaggleError as error:
        return _fragment_error(page, session, error, "insights_account.html")
    return page.render("insights_account.html", health=health, error=None)


def _fragment_error(
    page: PageContext, session: Session, error: WaggleError, template: str
) -> HTMLResponse:
    # HTMX swaps only 2xx answers: a refusal is shown inside the fragment.
    abandon(session, page.actor, error)
    is_htmx = page.request.headers.get("hx-request") == "true"
    status = 200 if is_htmx else status_for(error)
    return page.render(
        template,
        status_code=status,
        insight=None,
        health=None,
        error=describe_error(page.t, error),
    )


# --- the model registry -------------------------------------------------------


@router.get("/insights/models")
def models_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List the model versions with their reports and promotion requests."""
    return _models_view(page, session)


@router.post("/insights/models/challengers")
def train_challenger(page: FormPageDep, session: SessionDep, form: FormDep) -> Response:
    """Train a challenger on the history held, or on an uploaded file first.

    The upload is the CRM ``opportunities`` import (CSV or XLSX, with an
    optional YAML column mapping); its rejected rows stay in the import run.
    """
    history = _uploaded(form.get("file"))
    mapping = _uploaded(form.get("mapping"))

    def train() -> object:
        rule = HistoryRule(
            _count(form.get("min_won"), "min_won"),
            _count(form.get("min_lost"), "min_lost"),
        )
        if history is None:
            return service.train_challenger_version(session, page.actor, rule=rule)
        name, data = history
        columns = (
            load_mapping(mapping[1], origin=mapping[0]) if mapping else ColumnMapping()
        )
        return service.train_challenger_from_file(
            session, page.actor, data, filename=name, mapping=columns, rule=rule
        )

    return _decide(page, session, train, done="trained")


def _note(value: object, name: str) -> str | None:
    """Read an optional reason or note from the form, at most 500 characters."""
    text = str(value or "").strip()
    if len(text) > NOTE_LENGTH:
        raise InvalidInput(
            f"model promotion: {name} has {len(text)} characters; at most "
            f"{NOTE_LENGTH} are kept",
            field=name,
        )
    return text or None


def _count(value: object, name: str) -> int:
    """Read a required-history minimum from the form (default 200)."""
    text = str(value or "").strip() or str(DEFAULT_HISTORY)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(
            f"challenger training: {name} {text!r} is not a whole number of at least 1",
            field=name,
        )
    return int(text)


def _uploaded(value: object) -> tuple[str, bytes] | None:
    """Return (file name, bytes) of a form's file field, or None when left empty."""
    if not isinstance(value, StarletteUpload) or not value.filename:
        return None
    return value.filename, value.file.read()


@router.post("/insights/models/{version_id}/promotion")
def request_promotion(
    version_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Ask for a challenger to become champion; a director decides."""
    return _decide(
        page,
        session,
        lambda: service.request_promotion(
            session, page.actor, version_id, reason=_note(form.get("reason"), "reason")
        ),
        done="requested",
    )


@router.post("/insights/models/{version_id}/promotion/{decision}")
def decide_promotion(
    version_id: int,
    decision: str,
    page: FormPageDep,
    session: SessionDep,
    form: FormDep,
) -> Response:
    """Approve or reject the open promotion of a version."""
    if decision not in ("approve", "reject"):
        raise NotFound(f"promotion decision {decision!r}; expected approve or reject")
    return _decide(
        page,
        session,
        lambda: service.decide_promotion(
            session,
            page.actor,
            version_id,
            is_approved=decision == "approve",
            note=_note(form.get("note"), "note"),
        ),
        done="approved" if decision == "approve" else "rejected",
    )


def _decide(
    page: PageContext, session: Session, act: Callable[[], object], *, done: str
) -> Response:
    try:
        act()
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _models_view(
            page,
            session,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    return RedirectResponse(f"/insights/models?{urlencode({'done': done})}", 303)


def _models_view(
    page: PageContext,
    session: Session,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    versions = service.list_model_versions(session, page.actor)
    promotions = service.promotions_of(session, [version.id for version in versions])
    reports = {
        report.model_version_id: report.figures.get("models", {})
        for report in session.scalars(
            select(ModelReport).where(
                ModelReport.model_version_id.in_([v.id for v in versions])
            )
        )
    }
    done = query_text(page.request.query_params, "done")
    return page.render(
        "insights_models.html",
        status_code=status_code,
        rows=[
            {
                "version": version,
                "promotion": promotions.get(version.id),
                "figures": reports.get(version.id),
            }
            for version in versions
        ],
        error=error,
        done=done if done in ("trained", "requested", "approved", "rejected") else None,
    )
