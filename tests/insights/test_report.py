"""The comparison report: the time split, its figures, and no leak from the future."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from tests.insights import (
    AS_OF,
    add_account,
    add_contact,
    add_deal,
    add_event,
    add_tracker_hit,
    days,
    stage_id,
)
from waggle.core.actor import system_actor
from waggle.core.errors import InvalidInput
from waggle.crm.models import Opportunity
from waggle.insights.challenger import BoostingSettings
from waggle.insights.champion import HistoryRule, TrainingRow
from waggle.insights.models import ModelReport, ModelStatus
from waggle.insights.report import (
    auc,
    compare,
    default_cutoff,
    lift,
    load_history,
    metrics,
    render_html,
    time_split,
    top_factors,
)
from waggle.insights.service import train_challenger_version

OPS = system_actor("test-insights")
SMALL_HISTORY = HistoryRule(min_won=5, min_lost=5)
SMALL_TREES = BoostingSettings(rounds=20, min_data_in_leaf=3, min_data_per_group=2)
CUTOFF = AS_OF - days(30)


def build_history(session: Session, owner_id: int, *, count: int = 48) -> list[int]:
    """Deals closed over 120 days: a decision-maker meeting before most wins.

    One deal in six goes against its signal, so neither model is perfect.
    """
    rng = random.Random(7)
    account = add_account(session)
    decider = add_contact(session, account, "decision_maker")
    ids = []
    for index in range(count):
        closed_at = AS_OF - days(1 + index * 119 / count)
        signal = index % 2 == 0
        is_won = signal if rng.random() > 1 / 6 else not signal
        deal = add_deal(
            session,
            owner_id=owner_id,
            account_id=account,
            created_at=closed_at - days(60),
            status="won" if is_won else "lost",
            closed_at=closed_at,
        )
        if signal:
            add_event(
                session, deal, "meeting_held", closed_at - days(2), contact_id=decider
            )
        else:
            for offset in (30, 29, 28):
                add_tracker_hit(session, deal, "objection", closed_at - days(offset))
        ids.append(deal.id)
    return ids


def _row(day: int, outcome: str = "won") -> TrainingRow:
    closed_at = AS_OF + days(day)
    return TrainingRow(day, closed_at, outcome, {"pricing": "yes"})


@given(st.lists(st.integers(min_value=-50, max_value=50), max_size=40))
def test_the_time_split_puts_every_deal_closed_from_the_cutoff_in_the_holdout(
    offsets: list[int],
) -> None:
    """Training deals all closed before the cut-off, holdout deals at or after it."""
    rows = [_row(offset) for offset in offsets]

    training, holdout = time_split(rows, AS_OF)

    assert all(row.closed_at < AS_OF for row in training)
    assert all(row.closed_at >= AS_OF for row in holdout)
    assert len(training) + len(holdout) == len(rows)


def test_the_default_cutoff_holds_out_the_newest_fifth():
    """Of ten close dates the cut-off is the ninth, leaving two in the holdout."""
    dates = [AS_OF + days(day) for day in range(10)]

    cutoff = default_cutoff(list(reversed(dates)))

    assert cutoff == AS_OF + days(8)


def test_auc_counts_ranked_pairs_with_ties_as_half():
    """AUC is the share of won-lost pairs ranked right; a tie counts one half."""
    ranked = [(0.9, True), (0.8, False), (0.7, True), (0.1, False)]

    assert auc(ranked) == 0.75
    assert auc([(0.5, True), (0.5, False)]) == 0.5
    assert auc([(0.5, True), (0.4, True)]) is None


def test_lift_is_the_top_share_win_rate_over_the_overall_rate():
    """Ten deals, three won: the top one is won, the top two hold one win."""
    probabilities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    outcomes = [True, False, True, True, False, False, False, False, False, False]
    pairs = list(zip(probabilities, outcomes, strict=True))

    assert lift(pairs, 0.1) == pytest.approx(1 / 0.3)
    assert lift(pairs, 0.2) == pytest.approx(0.5 / 0.3)
    assert metrics(pairs)["lift"] == {
        "top_10": pytest.approx(1 / 0.3),
        "top_20": pytest.approx(0.5 / 0.3),
    }


def test_metrics_on_a_perfect_ranking():
    """Perfect, certain predictions have AUC 1, Brier 0 and no calibration error."""
    pairs = [(1.0, True), (1.0, True), (0.0, False), (0.0, False)]

    found = metrics(pairs)

    assert (found["auc"], found["brier"], found["expected_calibration_error"]) == (
        1.0,
        0.0,
        0.0,
    )
    assert [(b["low"], b["count"]) for b in found["calibration"]] == [
        (0.0, 2),
        (0.9, 2),
    ]


def _simulated(rng: random.Random, count: int, start: int) -> list[TrainingRow]:
    """Deals won with probability 0.8 after a decision-maker meeting, else 0.2."""
    rows = []
    for index in range(count):
        engaged = rng.random() < 0.5
        is_won = rng.random() < (0.8 if engaged else 0.2)
        levels = {
            "decision_maker": "yes" if engaged else "no",
            "pricing": rng.choice(["yes", "no"]),
            "source": rng.choice(["展会", "官网"]),
        }
        rows.append(
            TrainingRow(
                start + index,
                AS_OF + dt.timedelta(minutes=start + index),
                "won" if is_won else "lost",
                levels,
            )
        )
    return rows


def test_both_models_are_calibrated_and_name_the_decisive_factor_on_simulated_data():
    """On a known world both models predict about 0.8 and 0.2 and rank the same."""
    rng = random.Random(20261204)
    features = ("decision_maker", "pricing", "source")
    training, holdout = _simulated(rng, 6000, 0), _simulated(rng, 4000, 10_000)

    comparison = compare(training, holdout, features=features)

    for model in ("champion", "challenger"):
        figures = comparison.figures["models"][model]
        assert figures["expected_calibration_error"] < 0.03
        assert figures["auc"] == pytest.approx(0.8, abs=0.03)
        assert figures["top_factors"][0]["feature"] == "decision_maker"
        assert figures["top_factors"][0]["name"] == {
            "zh-CN": "决策人参与",
            "en": "decision maker engaged",
        }
    engaged = comparison.challenger.predict(
        {"decision_maker": "yes", "pricing": "no", "source": "官网"}
    )
    assert engaged.probability == pytest.approx(0.8, abs=0.04)


def test_top_factors_rank_features_by_their_mean_share():
    """A feature with 3/4 of every prediction's weight comes first with share 0.75."""
    from waggle.insights.champion import Prediction, Term

    predictions = [
        Prediction(
            0.5, 0.0, (Term("pricing", "yes", 3.0), Term("visits", "some", -1.0))
        )
    ] * 2

    ranked = top_factors(predictions)

    assert [(item["feature"], item["share"]) for item in ranked] == [
        ("pricing", 0.75),
        ("visits", 0.25),
    ]


LATE_WINS = 30


def _rewrite_the_future(session: Session, ids: list[int], owner_id: int) -> None:
    """Turn every outcome after the cut-off around and add busy late wins.

    The late wins carry 20 calls each, which would move the top-rep touch
    norm (and so the training deals' touch levels) if features were computed
    with anything after the cut-off.
    """
    won_stage, lost_stage = stage_id(session, "won"), stage_id(session, "lost")
    for deal in session.scalars(select(Opportunity).where(Opportunity.id.in_(ids))):
        assert deal.closed_at is not None
        if deal.closed_at >= CUTOFF:
            is_won = deal.status == "won"
            deal.status = "lost" if is_won else "won"
            deal.stage_id = lost_stage if is_won else won_stage
    account = add_account(session)
    for index in range(LATE_WINS):
        closed_at = CUTOFF + days(1 + index * 0.9)
        deal = add_deal(
            session,
            owner_id=owner_id,
            account_id=account,
            created_at=closed_at - days(40),
            status="won",
            closed_at=closed_at,
        )
        for call in range(20):
            add_event(session, deal, "call", closed_at - days(1 + call))
    session.flush()


def test_the_holdout_never_leaks_into_training(session, org: Org, fixed_clock):
    """Rewriting everything after the cut-off leaves the trained models unchanged."""
    owner = org.employees["rep_a1"]
    ids = build_history(session, owner)
    before_training, before_holdout = load_history(
        session, cutoff=CUTOFF, until=AS_OF, window_days=730
    )
    first = train_challenger_version(
        session,
        OPS,
        cutoff=CUTOFF,
        until=AS_OF,
        rule=SMALL_HISTORY,
        settings=SMALL_TREES,
    )
    first_figures = dict(first.report.figures)

    _rewrite_the_future(session, ids, owner)
    after_training, after_holdout = load_history(
        session, cutoff=CUTOFF, until=AS_OF, window_days=730
    )
    second = train_challenger_version(
        session,
        OPS,
        cutoff=CUTOFF,
        until=AS_OF,
        rule=SMALL_HISTORY,
        settings=SMALL_TREES,
    )

    assert after_training == before_training
    assert [row.outcome for row in after_holdout] != [
        row.outcome for row in before_holdout
    ]
    assert (
        second.version.parameters["model"]["booster"]
        == first.version.parameters["model"]["booster"]
    )
    champion_first = compare(before_training, before_holdout, settings=SMALL_TREES)
    champion_second = compare(after_training, after_holdout, settings=SMALL_TREES)
    assert (
        champion_first.champion.to_parameters()
        == champion_second.champion.to_parameters()
    )
    assert (
        second.report.figures["split"]["training"] == first_figures["split"]["training"]
    )
    assert second.report.figures["split"]["holdout_won"] == (
        first_figures["split"]["holdout"]
        - first_figures["split"]["holdout_won"]
        + LATE_WINS
    )


def test_a_report_is_stored_with_its_challenger_as_json_and_html(
    session, org: Org, fixed_clock
):
    """The challenger is registered as such, with figures and a self-contained page."""
    build_history(session, org.employees["rep_a1"])

    run = train_challenger_version(
        session,
        OPS,
        cutoff=CUTOFF,
        until=AS_OF,
        rule=SMALL_HISTORY,
        settings=SMALL_TREES,
    )

    stored = session.scalar(
        select(ModelReport).where(ModelReport.model_version_id == run.version.id)
    )
    assert stored is not None
    assert run.version.status == ModelStatus.CHALLENGER
    assert run.version.kind == "win_lightgbm"
    assert (
        stored.figures["split"]["training"] + stored.figures["split"]["holdout"] == 48
    )
    assert stored.figures["meta"]["champion_version"] == "stage-default-1"
    assert set(stored.figures["segments"]) == {"industry", "region", "pipeline"}
    assert stored.html.startswith("<!DOCTYPE html>")
    assert stored.html.count("<svg") == 4
    assert "<script" not in stored.html and "http" not in stored.html.replace(
        "http://www.w3.org/2000/svg", ""
    )
    assert "校准曲线 / Calibration curve" in stored.html


def test_too_little_training_history_is_refused_with_the_note(
    session, org: Org, fixed_clock
):
    """With fewer closed deals than the rule asks no challenger is trained."""
    build_history(session, org.employees["rep_a1"], count=12)

    with pytest.raises(InvalidInput, match="expected at least 200 won"):
        train_challenger_version(session, OPS, cutoff=CUTOFF, until=AS_OF)


def test_render_html_escapes_segment_values():
    """A segment named with markup is shown as text, not as markup."""
    figures = {
        "meta": {"version": "lgbm-1"},
        "split": {
            "training": 1,
            "training_won": 1,
            "training_last_closed_at": "x",
            "holdout": 1,
            "holdout_won": 0,
            "holdout_first_closed_at": "y",
        },
        "models": {
            model: {
                "auc": None,
                "brier": 0.1,
                "expected_calibration_error": 0.0,
                "calibration": [],
                "lift": {"top_10": None},
                "top_factors": [],
            }
            for model in ("champion", "challenger")
        },
        "segments": {
            "industry": [
                {
                    "value": "<b>制造</b>",
                    "count": 1,
                    "won": 0,
                    "champion": {"auc": None, "brier": 0.1},
                    "challenger": {"auc": None, "brier": 0.2},
                }
            ]
        },
    }

    page = render_html(figures)

    assert "&lt;b&gt;制造&lt;/b&gt;" in page
    assert "<b>制造</b>" not in page
