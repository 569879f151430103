"""Lineage of the forecast's headline figures: same values, exact replay, ranges."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.insights.test_forecast import AS_OF, _seed_quarter
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput
from waggle.crm.models import Opportunity, Quota
from waggle.governance.lineage import (
    FigureSpec,
    compute_figure,
    evaluate,
    matches,
    replay_figure,
)
from waggle.governance.lineage_api import provenance_body
from waggle.governance.lineage_models import FigureProvenance
from waggle.insights.forecast import build_forecast
from waggle.insights.forecast_lineage import (
    HEADLINES,
    forecast_figures,
    forecast_specs,
    headline_values,
    matching_figures,
    rollup_lineage,
)


@pytest.mark.parametrize("username", ["ops", "manager_a", "rep_a1"])
def test_each_headline_figure_equals_the_forecast_within_the_users_scope(
    sessions, org, username
):
    """Closed, the three open categories and the weighted total, as each user sees."""
    _seed_quarter(sessions, org)
    actor = org.actors[username]

    with transaction(sessions) as session:
        result = build_forecast(session, actor, "2026-Q1", as_of=AS_OF)
        figures = forecast_figures(session, actor, result)

    shown = headline_values(result)
    assert set(figures) == set(HEADLINES)
    assert {name: Decimal(f.value) for name, f in figures.items()} == shown
    assert set(matching_figures(result, figures)) == set(HEADLINES)
    deals = {line.opportunity_id for line in result.deals}
    assert set(figures["weighted"].record_ids) == deals


def test_the_weighted_figure_replays_with_the_scores_the_forecast_used(sessions, org):
    """A later change of amount is undone; the model score travels in the spec."""
    ids = _seed_quarter(sessions, org)
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        result = build_forecast(session, ops, "2026-Q1", as_of=AS_OF)
        weighted = forecast_figures(session, ops, result)["weighted"]
    assert weighted.spec["scores"] == {str(ids["a2_scored"]): "0.35"}
    assert weighted.value == "181500.00"

    with transaction(sessions) as session:
        session.get_one(Opportunity, ids["a2_scored"]).amount = Decimal("90000")
    with transaction(sessions) as session:
        replay = replay_figure(session, ops, weighted.id)

    assert replay.is_reproduced, replay.problems
    assert replay.replayed_value == "181500.00"
    assert replay.current_value == "195500.00"  # 90,000 x 0.35 instead of 50,000
    assert replay.changed == [ids["a2_scored"]]


def test_the_closed_figure_counts_wins_inside_the_period_only(sessions, org):
    """closed_at runs from the period's first instant to before the next period's."""
    ids = _seed_quarter(sessions, org)
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        won = session.get_one(Opportunity, ids["b1_won"])
        won.closed_at = dt.datetime(2026, 4, 1, 0, 0, tzinfo=dt.UTC)  # next quarter
        result = build_forecast(session, ops, "2026-Q1", as_of=AS_OF)
        closed = forecast_figures(session, ops, result)["closed"]

    assert closed.value == "0.00"
    assert result.categories["closed"] == Decimal(0)

    with transaction(sessions) as session:
        session.get_one(Opportunity, ids["b1_won"]).closed_at = dt.datetime(
            2026, 3, 31, 23, 59, 59, tzinfo=dt.UTC
        )
    with transaction(sessions) as session:
        replay = replay_figure(session, ops, closed.id)
    assert replay.is_reproduced and replay.replayed_value == "0.00"
    assert replay.current_value == "300000.00"
    assert replay.added == [ids["b1_won"]]


def test_a_figure_that_differs_from_the_forecast_gets_no_link(sessions, org):
    """Only figures equal to the forecast's own value are offered as its lineage."""
    _seed_quarter(sessions, org)
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        result = build_forecast(session, ops, "2026-Q1", as_of=AS_OF)
        specs = forecast_specs(session, result)
        figures = forecast_figures(session, ops, result)
        off = compute_figure(
            session,
            ops,
            name="commit",
            spec=FigureSpec(
                resource="opportunities",
                measure="sum:amount",
                filters=specs["pipeline"].filters,
            ),
        )

    matching = matching_figures(result, figures | {"commit": off})
    assert "commit" not in matching
    assert set(matching) == set(HEADLINES) - {"commit"}


def test_ranges_in_python_agree_with_the_database_bounds():
    """from and to are inclusive, before exclusive; instants compare as instants."""
    day = {"from": "2026-01-01", "to": "2026-03-31"}
    instant = {"from": "2026-01-01T00:00:00+00:00", "before": "2026-04-01T00:00:00Z"}
    amount = {"from": 100, "before": "200.50"}

    assert matches({"d": "2026-03-31"}, {"d": day})
    assert not matches({"d": "2026-04-01"}, {"d": day})
    assert not matches({"d": None}, {"d": day})
    assert matches({"t": "2026-03-31T23:59:59.999999+00:00"}, {"t": instant})
    assert matches({"t": "2026-04-01T07:59:59+08:00"}, {"t": instant})  # Beijing
    assert not matches({"t": "2026-04-01T08:00:00+08:00"}, {"t": instant})
    assert not matches({"t": "2026-04-01T00:00:00+00:00"}, {"t": instant})
    assert matches({"a": "200.49"}, {"a": amount})
    assert not matches({"a": "200.50"}, {"a": amount})
    assert not matches({"a": "2026-01-01"}, {"a": amount})


def test_expected_amounts_are_rounded_record_by_record():
    """Each record's amount x probability is rounded to the cent before summing."""
    spec = FigureSpec(
        resource="opportunities",
        measure="expected:amount:stage_id",
        weights={"1": 33},
        scores={"2": "0.3333"},
    )
    rows = [
        (1, {"amount": "0.05", "stage_id": 1}),  # 0.0165 -> 0.02
        (2, {"amount": "0.05", "stage_id": 1}),  # the score wins: 0.016665 -> 0.02
        (3, {"amount": "10.00", "stage_id": 9}),  # no weight: 0
    ]

    assert evaluate(spec, rows) == "0.04"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"filters": {"name": {"from": "a"}}},
            "ranges apply to numbers, dates and instants",
        ),
        ({"filters": {"amount": {"after": 1}}}, "a range takes from, to and before"),
        ({"filters": {"closed_at": {"from": "soon"}}}, "is not of its type"),
        ({"filters": {"amount": {"from": "100.005"}}}, "more than 2 decimal places"),
        ({"filters": {"amount": {"to": "NaN"}}}, "not a finite number"),
        ({"filters": {"expected_close_on": {"to": "20260105"}}}, "is a number"),
        ({"filters": {"closed_at": {"before": 20260105}}}, "is a number"),
        ({"measure": "sum:amount", "scores": {"1": "0.5"}}, "only an expected amount"),
        (
            {"measure": "expected:amount:stage_id", "scores": {"1": "1.5"}},
            "a probability between 0 and 1",
        ),
    ],
)
def test_malformed_ranges_and_scores_are_refused(sessions, org, spec, message):
    """Each mistake in a spec is named before anything is read."""
    body = {"resource": "opportunities", "measure": "count"} | spec
    with transaction(sessions) as session, pytest.raises(InvalidInput) as refused:
        compute_figure(session, org.actors["ops"], name="x", spec=FigureSpec.of(body))

    assert message in str(refused.value)


@pytest.mark.parametrize("username", ["ops", "manager_a"])
def test_every_rep_level_rollup_column_has_a_matching_grouped_figure(
    sessions, org, username
):
    """Quota, closed, the open categories and weighted, per owner as the roll-up."""
    _seed_quarter(sessions, org)
    actor = org.actors[username]

    with transaction(sessions) as session:
        result = build_forecast(session, actor, "2026-Q1", as_of=AS_OF)
        ids = rollup_lineage(session, actor, result)
        quota = session.get_one(FigureProvenance, ids["quota"])
        quota_periods = sorted(
            session.get_one(Quota, quota_id).period for quota_id in quota.record_ids
        )

    assert sorted(ids) == sorted([*HEADLINES, "quota"])
    # rep_a2's April quota lies outside the quarter; the monthly ones inside.
    expected = {
        "ops": ["2026-M01", "2026-M02", "2026-Q1", "2026-Q1"],
        "manager_a": ["2026-M01", "2026-M02", "2026-Q1"],
    }
    assert quota_periods == expected[username]


def test_a_grouped_figure_that_misses_an_owner_does_not_match(sessions, org):
    """A rep with a value in the roll-up but none in the figure breaks the match."""
    _seed_quarter(sessions, org)
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        result = build_forecast(session, ops, "2026-Q1", as_of=AS_OF)
        rep_a1 = next(line for line in result.rollup if line.name == "rep_a1")
        rep_a1.commit += Decimal("1")  # as if the roll-up saw another deal

        ids = rollup_lineage(session, ops, result)

    assert "commit" not in ids
    assert "best_case" in ids


def test_other_viewers_see_only_the_scores_of_records_they_may_read(sessions, org):
    """A rep reading sales ops' weighted figure learns no other deal's score."""
    ids = _seed_quarter(sessions, org)
    ops, rep = org.actors["ops"], org.actors["rep_a1"]
    with transaction(sessions) as session:
        result = build_forecast(session, ops, "2026-Q1", as_of=AS_OF)
        weighted = forecast_figures(session, ops, result)["weighted"]
    with transaction(sessions) as session:
        figure = session.get_one(FigureProvenance, weighted.id)
        for_rep = provenance_body(session, rep, figure)
        for_ops = provenance_body(session, ops, figure)

    assert for_ops["spec"]["scores"] == {str(ids["a2_scored"]): "0.35"}
    assert (for_rep["spec"]["scores"], for_rep["spec"]["scores_withheld"]) == ({}, 1)
    assert for_rep["value"] is None
