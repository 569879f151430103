"""The LightGBM challenger: TreeSHAP explanations in the champion's vocabulary."""

from __future__ import annotations

import math
import random

import pytest

from waggle.core.errors import InvalidInput
from waggle.insights.challenger import (
    BoostingSettings,
    Challenger,
    encode,
    train_challenger,
)
from waggle.insights.explain import explain

FEATURES = ("decision_maker", "pricing", "visits", "source")
SMALL = BoostingSettings(rounds=30, min_data_in_leaf=5, min_data_per_group=2)


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


ENGAGED = {
    "decision_maker": "yes",
    "pricing": "yes",
    "visits": "none",
    "source": "官网",
}


def test_the_deciding_feature_tops_the_challengers_explanation_both_ways():
    """TreeSHAP puts the decision maker first, helping when present, hurting if not."""
    model = train_challenger(_rows(400, seed=3), features=FEATURES, settings=SMALL)

    with_decider = explain(model.predict(ENGAGED).terms, top=1)
    without = explain(model.predict({**ENGAGED, "decision_maker": "no"}).terms, top=1)

    assert with_decider.positive[0].feature == "decision_maker"
    assert with_decider.positive[0].share > 0.9
    assert (
        with_decider.positive[0]
        .line("zh-CN")
        .startswith("有利：决策人近90天参与了沟通（权重")
    )
    assert without.negative[0].feature == "decision_maker"
    assert (
        without.negative[0]
        .line("en")
        .startswith("hurts: no decision maker engaged in 90 days (weight")
    )


def test_the_contributions_add_up_to_the_probability():
    """Expected value plus the TreeSHAP terms is exactly the logit of P(win)."""
    model = train_challenger(_rows(300, seed=5), features=FEATURES, settings=SMALL)

    prediction = model.predict({**ENGAGED, "source": "referral"})

    logit = math.log(prediction.probability / (1 - prediction.probability))
    assert prediction.log_odds == pytest.approx(logit, abs=1e-9)
    assert [term.feature for term in prediction.terms] == list(FEATURES)
    assert prediction.terms[3].level == "referral"


def test_a_challenger_survives_its_stored_parameters():
    """A model rebuilt from its JSON parameters predicts exactly as before."""
    model = train_challenger(_rows(200, seed=8), features=FEATURES, settings=SMALL)

    rebuilt = Challenger.from_parameters(model.to_parameters())

    rows = [levels for levels, _ in _rows(20, seed=9)]
    assert rebuilt.predict_many(rows) == model.predict_many(rows)
    assert rebuilt.probabilities(rows) == pytest.approx(
        [p.probability for p in model.predict_many(rows)], abs=1e-12
    )
    assert rebuilt.outcomes == model.outcomes


def test_levels_are_coded_by_the_fixed_vocabulary_and_unseen_ones_are_missing():
    """Known levels get their vocabulary index; a new source is NaN, not an error."""
    vocabulary = {"pricing": ["no", "yes"], "source": ["官网", "展会"]}

    matrix = encode(
        [{"pricing": "yes", "source": "新渠道"}], ("pricing", "source"), vocabulary
    )

    assert matrix[0, 0] == 1.0
    assert math.isnan(matrix[0, 1])


def test_an_unseen_level_still_gets_a_finite_probability():
    """A source never seen in training scores like a missing value."""
    model = train_challenger(_rows(200, seed=2), features=FEATURES, settings=SMALL)

    prediction = model.predict({**ENGAGED, "source": "新渠道"})

    assert 0.0 < prediction.probability < 1.0


def test_training_on_one_outcome_is_refused():
    """Trees need won and lost deals both."""
    rows = [(levels, "won") for levels, _ in _rows(30, seed=1)]

    with pytest.raises(InvalidInput, match="expected both won and lost"):
        train_challenger(rows, features=FEATURES, settings=SMALL)


def test_a_missing_feature_is_refused():
    """Every model feature must be present in a row."""
    model = train_challenger(_rows(100, seed=4), features=FEATURES, settings=SMALL)

    with pytest.raises(InvalidInput, match="feature 'visits' is missing"):
        model.predict({"decision_maker": "yes", "pricing": "no", "source": "官网"})


def test_training_is_deterministic():
    """The same rows and settings give the very same booster."""
    rows = _rows(200, seed=6)

    first = train_challenger(rows, features=FEATURES, settings=SMALL)
    second = train_challenger(rows, features=FEATURES, settings=SMALL)

    assert first.to_parameters() == second.to_parameters()
