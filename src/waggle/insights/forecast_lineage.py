"""Lineage of a forecast's figures: the categories, the weighted total, the roll-up.

:func:`forecast_figures` states the queries behind a :class:`Forecast`'s
headline figures as lineage specs (see :mod:`waggle.governance.lineage`) and
computes them with their provenance, so the insights dashboard can link each
figure to its drill-down and replay:

* ``closed``: the amounts of the deals won inside the period (``closed_at``
  from the period's first instant, before the next period's);
* ``commit``, ``best_case``, ``pipeline``: the amounts of the open deals
  expected to close inside the period, by forecast category (a deal whose
  category is none of the three open ones, other than omitted, counts as
  pipeline, as the forecast counts it);
* ``weighted``: the expected amount of those open deals, each amount times
  the model's probability when the deal was scored (the scores are part of
  the spec, so replay uses the probabilities the forecast used) and its
  stage's default probability otherwise, rounded deal by deal.

:func:`rollup_lineage` does the same for the rep-level roll-up: each column
(quota, closed, the open categories, weighted) is one figure grouped by
owner, the quota one summing the quotas that lie inside the period.

The figures are computed through the lineage seam with the actor's own row
scope on opportunities; a caller shows a link only where a figure equals the
forecast's own value (:func:`matching_figures`), since a user whose scopes
on forecasts and opportunities differ would otherwise be shown another
query's provenance.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.crm.models import ForecastCategory, OpportunityStatus, PipelineStage
from waggle.governance.lineage import FigureSpec, compute_figures
from waggle.governance.lineage_models import FigureProvenance
from waggle.insights.forecast import OPEN_CATEGORIES, Forecast, period_instants

OPPORTUNITIES = "opportunities"
QUOTAS = "quotas"
AMOUNT = "amount"
WEIGHT_FIELD = "stage_id"
HEADLINES = ("closed", "commit", "best_case", "pipeline", "weighted")


def forecast_specs(session: Session, result: Forecast) -> dict[str, FigureSpec]:
    """Return the lineage spec of each headline figure of ``result``."""
    open_filters = {
        "status": str(OpportunityStatus.OPEN),
        "expected_close_on": {
            "from": result.starts_on.isoformat(),
            "to": result.ends_on.isoformat(),
        },
    }

    def open_amount(categories: list[str]) -> FigureSpec:
        filters = open_filters | {"forecast_category": categories}
        return FigureSpec(
            resource=OPPORTUNITIES, measure=f"sum:{AMOUNT}", filters=filters
        )

    specs = {
        "closed": FigureSpec(
            resource=OPPORTUNITIES,
            measure=f"sum:{AMOUNT}",
            filters={
                "status": str(OpportunityStatus.WON),
                "closed_at": _period_instants(result.starts_on, result.ends_on),
            },
        ),
        "commit": open_amount([str(ForecastCategory.COMMIT)]),
        "best_case": open_amount([str(ForecastCategory.BEST_CASE)]),
        "pipeline": open_amount(_counted_as_pipeline()),
        "weighted": FigureSpec(
            resource=OPPORTUNITIES,
            measure=f"expected:{AMOUNT}:{WEIGHT_FIELD}",
            filters=open_filters | {"forecast_category": _forecast_categories()},
            weights=_stage_probabilities(session),
            scores=_model_scores(result),
        ),
    }
    return specs


def forecast_figures(
    session: Session, actor: Actor, result: Forecast
) -> dict[str, FigureProvenance]:
    """Compute the headline figures of ``result`` with their provenance.

    Raises:
        PolicyDenied: the actor may not create lineage or read opportunities.
    """
    return compute_figures(session, actor, forecast_specs(session, result), reuse=True)


def headline_values(result: Forecast) -> dict[str, Decimal]:
    """Return the forecast's own value of each headline figure."""
    return {
        "closed": result.categories[str(ForecastCategory.CLOSED)],
        "commit": result.categories[str(ForecastCategory.COMMIT)],
        "best_case": result.categories[str(ForecastCategory.BEST_CASE)],
        "pipeline": result.categories[str(ForecastCategory.PIPELINE)],
        "weighted": result.weighted,
    }


def matching_figures(
    result: Forecast, figures: dict[str, FigureProvenance]
) -> dict[str, FigureProvenance]:
    """Return the figures whose value equals the forecast's own."""
    values = headline_values(result)
    return {
        name: figure
        for name, figure in figures.items()
        if figure.value is not None and Decimal(figure.value) == values[name]
    }


def headline_lineage(
    session: Session, actor: Actor, result: Forecast
) -> dict[str, int]:
    """Return the lineage id of each headline figure equal to the forecast's.

    Raises:
        PolicyDenied: the actor may not create lineage or read opportunities.
    """
    figures = matching_figures(result, forecast_figures(session, actor, result))
    return {name: figure.id for name, figure in figures.items()}


def rollup_specs(session: Session, result: Forecast) -> dict[str, FigureSpec]:
    """Return the lineage spec of each column of the rep-level roll-up.

    The headline queries grouped by owner, and the quotas lying inside the
    period summed per owner.
    """
    by_owner = ("owner_id",)
    specs = {
        name: dataclasses.replace(spec, group_by=by_owner)
        for name, spec in forecast_specs(session, result).items()
    }
    specs["quota"] = FigureSpec(
        resource=QUOTAS,
        measure=f"sum:{AMOUNT}",
        filters={
            "starts_on": {"from": result.starts_on.isoformat()},
            "ends_on": {"to": result.ends_on.isoformat()},
        },
        group_by=by_owner,
    )
    return specs


def rollup_lineage(session: Session, actor: Actor, result: Forecast) -> dict[str, int]:
    """Return the lineage id of each rep-level roll-up column that matches.

    A column's grouped figure matches when every rep's value equals the
    roll-up's (reps without records in the figure having zero).

    Raises:
        PolicyDenied: the actor may not create lineage or read the records.
    """
    figures = compute_figures(session, actor, rollup_specs(session, result), reuse=True)
    reps = [line for line in result.rollup if line.level == "rep"]
    return {
        name: figure.id
        for name, figure in figures.items()
        if _grouped_matches(figure, {line.key: getattr(line, name) for line in reps})
    }


def _grouped_matches(
    figure: FigureProvenance, expected: Mapping[int | None, Decimal]
) -> bool:
    if not isinstance(figure.value, dict):
        return False
    found = {json.loads(key)[0]: Decimal(value) for key, value in figure.value.items()}
    owners = set(found) | set(expected)
    return all(found.get(o, Decimal(0)) == expected.get(o, Decimal(0)) for o in owners)


def _period_instants(starts_on: dt.date, ends_on: dt.date) -> dict[str, str]:
    start, end = period_instants(starts_on, ends_on)
    return {"from": start.isoformat(), "before": end.isoformat()}


def _forecast_categories() -> list[str]:
    return [str(c) for c in ForecastCategory if c != ForecastCategory.OMITTED]


def _counted_as_pipeline() -> list[str]:
    others = set(OPEN_CATEGORIES) - {ForecastCategory.PIPELINE}
    return [c for c in _forecast_categories() if c not in others]


def _stage_probabilities(session: Session) -> dict[str, int]:
    rows = session.execute(select(PipelineStage.id, PipelineStage.probability))
    return {str(stage_id): int(probability) for stage_id, probability in rows}


def _model_scores(result: Forecast) -> dict[str, str]:
    return {
        str(line.opportunity_id): str(Decimal(str(line.probability)))
        for line in result.deals
        if line.probability_source == "model"
    }
