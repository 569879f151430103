"""The naive-Bayes champion: known answers, exact incremental updates, wording."""

from __future__ import annotations

import math
import random

import pytest

from waggle.core.errors import InvalidInput
from waggle.insights.champion import NaiveBayes, train
from waggle.insights.explain import explain, factor_text

FEATURES = ("decision_maker", "pricing", "visits", "source")


def _rows(count: int, seed: int) -> list[tuple[dict[str, str], str]]:
    """Deals won exactly when a decision maker took part; other levels are noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        has_decider = rng.random() < 0.5
        levels = {
            "decision_maker": "yes" if has_decider else "no",
            "pricing": rng.choice(["yes", "no"]),
            "visits": rng.choice(["some", "none"]),
            "source": rng.choice(["展会", "官网", "referral"]),
        }
        rows.append((levels, "won" if has_decider else "lost"))
    return rows


def test_the_deciding_feature_tops_the_explanation_with_the_right_sign():
    """When a decision maker decides every outcome, that factor leads both ways."""
    model = train(_rows(400, seed=3), features=FEATURES)
    engaged = {
        "decision_maker": "yes",
        "pricing": "yes",
        "visits": "none",
        "source": "官网",
    }

    with_decider = explain(model.predict(engaged).terms, top=1)
    without = explain(model.predict({**engaged, "decision_maker": "no"}).terms, top=1)

    assert with_decider.positive[0].feature == "decision_maker"
    assert with_decider.positive[0].share > 0.9
    assert without.negative[0].feature == "decision_maker"
    assert without.negative[0].weight < 0


def test_probability_is_the_prior_plus_the_terms_with_laplace_smoothing():
    """P(win) is the sigmoid of the prior log-odds plus each smoothed term."""
    model = train(
        [
            ({"pricing": "yes"}, "won"),
            ({"pricing": "yes"}, "won"),
            ({"pricing": "no"}, "lost"),
        ],
        features=("pricing",),
    )

    prediction = model.predict({"pricing": "yes"})

    prior = math.log((2 + 1) / (1 + 1))
    term = math.log(((2 + 1) / (2 + 2)) / ((0 + 1) / (1 + 2)))
    assert prediction.prior_log_odds == pytest.approx(prior, abs=1e-12)
    assert prediction.terms[0].weight == pytest.approx(term, abs=1e-12)
    assert prediction.probability == pytest.approx(
        1 / (1 + math.exp(-(prior + term))), abs=1e-12
    )


def test_an_incremental_update_equals_a_full_retrain_exactly():
    """Adding one closed deal's counts gives the very model a retrain gives."""
    rows = _rows(300, seed=11)
    incremental = train(rows[:-1], features=FEATURES)

    incremental.update(*rows[-1])
    retrained = train(rows, features=FEATURES)

    assert incremental.to_parameters() == retrained.to_parameters()
    assert [incremental.predict(levels) for levels, _ in rows] == [
        retrained.predict(levels) for levels, _ in rows
    ]


def test_a_model_survives_its_stored_parameters():
    """A model rebuilt from its JSON parameters predicts exactly as before."""
    model = train(_rows(50, seed=5), features=FEATURES)

    rebuilt = NaiveBayes.from_parameters(model.to_parameters())

    levels = _rows(1, seed=9)[0][0]
    assert rebuilt.predict(levels) == model.predict(levels)


def test_an_unseen_source_counts_as_zero_of_each_outcome():
    """A level never seen in training gets a finite, smoothed weight."""
    model = train(_rows(100, seed=2), features=FEATURES)
    levels = {"decision_maker": "yes", "pricing": "no", "visits": "none"}

    prediction = model.predict({**levels, "source": "新渠道"})

    assert math.isfinite(prediction.terms[-1].weight)


def test_an_outcome_other_than_won_or_lost_is_refused():
    """Open deals cannot train the win model."""
    model = NaiveBayes(features=("pricing",))

    with pytest.raises(InvalidInput, match="expected won or lost"):
        model.update({"pricing": "yes"}, "open")


def test_factors_are_worded_in_both_languages_with_their_weight_share():
    """A factor line carries the fixed sentence and its share, in zh-CN and en."""
    model = train(_rows(200, seed=4), features=FEATURES)
    levels = {
        "decision_maker": "no",
        "pricing": "no",
        "visits": "none",
        "source": "官网",
    }

    factor = explain(model.predict(levels).terms, top=1).negative[0]

    percent = round(factor.share * 100)
    assert factor.line("zh-CN") == f"不利：近90天决策人没有参与（权重{percent}%）"
    assert factor.line("en") == (
        f"hurts: no decision maker engaged in 90 days (weight {percent}%)"
    )


def test_the_touch_factor_reads_as_documented():
    """The low-touch level reads as the vocabulary states it."""
    text = factor_text("touch_ratio", "low")

    assert text == {
        "zh-CN": "过去28天触达频率低于头部销售的一半",
        "en": "touches in the last 28 days below half of the top reps' norm",
    }
