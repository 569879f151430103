"""The challenger win model: gradient-boosted trees (LightGBM) over feature levels.

The challenger learns from the same closed deals and the same feature levels
as the champion (:data:`~waggle.insights.champion.MODEL_FEATURES`), each level
coded as a category of its feature. Every prediction is explained by its
TreeSHAP contributions (LightGBM's ``pred_contrib``): one log-odds term per
feature plus the expected value, adding up exactly to the raw score whose
sigmoid is the probability. A feature's term is named by the level the deal
has, so the champion's fixed zh-CN/en vocabulary
(:mod:`waggle.insights.explain`) words the challenger's factors too.

The model is stored as LightGBM's own text format inside the model version's
``parameters``, with the level codes it was trained on; nothing is read from
disk or the network.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt

from waggle.core.errors import InvalidInput
from waggle.insights.champion import (
    LOST,
    MODEL_FEATURES,
    OUTCOMES,
    WON,
    Prediction,
    Term,
)
from waggle.insights.features import LEVELS

logger = logging.getLogger(__name__)

Levels = Mapping[str, str]
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BoostingSettings:
    """The LightGBM settings of a challenger (deterministic on one thread)."""

    rounds: int = 100
    learning_rate: float = 0.1
    num_leaves: int = 15
    # Shallow trees: TreeSHAP costs grow with the square of the depth.
    max_depth: int = 4
    min_data_in_leaf: int = 20
    min_data_per_group: int = 10
    lambda_l2: float = 1.0
    seed: int = 20261204
    threads: int = 1

    def lightgbm_parameters(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "min_data_per_group": self.min_data_per_group,
            "cat_smooth": 1.0,
            "max_cat_to_onehot": 8,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.threads,
            "verbose": -1,
        }


@dataclass
class Challenger:
    """A trained booster with the level codes of each feature it expects."""

    booster: lightgbm.Booster
    features: tuple[str, ...] = MODEL_FEATURES
    vocabulary: dict[str, list[str]] = field(default_factory=dict)
    settings: BoostingSettings = field(default_factory=BoostingSettings)
    outcomes: dict[str, int] = field(default_factory=dict)

    def encode(self, rows: Sequence[Levels]) -> Matrix:
        """Return the level codes of ``rows`` (see :func:`encode`)."""
        return encode(rows, self.features, self.vocabulary)

    def probabilities(self, rows: Sequence[Levels]) -> list[float]:
        """Return P(win) of each row (no explanation: the fast path)."""
        if not rows:
            return []
        raw = self.booster.predict(self.encode(rows), raw_score=True)
        return [_sigmoid(float(value)) for value in np.asarray(raw)]

    def predict_many(self, rows: Sequence[Levels]) -> list[Prediction]:
        """Return P(win) of each row with its TreeSHAP terms, one per feature.

        The expected value is the prior; prior plus terms is the raw score.
        """
        if not rows:
            return []
        contributions = self._contributions(self.encode(rows))
        return [
            _prediction(row, contribution, self.features)
            for row, contribution in zip(rows, contributions, strict=True)
        ]

    def _contributions(self, matrix: Matrix) -> Matrix:
        # Deals often share every level; explain each distinct row once.
        keyed = np.where(np.isnan(matrix), -1.0, matrix)
        unique, inverse = np.unique(keyed, axis=0, return_inverse=True)
        distinct = np.where(unique < 0, np.nan, unique)
        found = np.asarray(self.booster.predict(distinct, pred_contrib=True))
        return found[inverse.reshape(-1)]

    def predict(self, levels: Levels) -> Prediction:
        """Return P(win) of one deal with its TreeSHAP terms."""
        return self.predict_many([levels])[0]

    def importance(self) -> dict[str, float]:
        """Return each feature's share of the total split gain."""
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(sum(gains)) or 1.0
        return {
            name: float(gain) / total
            for name, gain in zip(self.features, gains, strict=True)
        }

    def to_parameters(self) -> dict[str, Any]:
        """Return the model as plain JSON data (the stored ``parameters``)."""
        return {
            "features": list(self.features),
            "vocabulary": {name: list(v) for name, v in self.vocabulary.items()},
            "settings": asdict(self.settings),
            "outcomes": dict(self.outcomes),
            "booster": self.booster.model_to_string(),
        }

    @classmethod
    def from_parameters(cls, data: Mapping[str, Any]) -> Challenger:
        """Rebuild a model from :meth:`to_parameters` output."""
        return cls(
            booster=lightgbm.Booster(model_str=str(data["booster"])),
            features=tuple(data["features"]),
            vocabulary={k: list(v) for k, v in data["vocabulary"].items()},
            settings=BoostingSettings(**data["settings"]),
            outcomes={k: int(v) for k, v in data["outcomes"].items()},
        )


def encode(
    rows: Sequence[Levels],
    features: Sequence[str],
    vocabulary: Mapping[str, Sequence[str]],
) -> Matrix:
    """Return the level codes of ``rows``; an unseen level is missing (NaN).

    Raises:
        InvalidInput: a model feature is missing from a row.
    """
    codes = [_codes(vocabulary[name]) for name in features]
    matrix = np.full((len(rows), len(features)), np.nan)
    for row_index, levels in enumerate(rows):
        for column, name in enumerate(features):
            if name not in levels:
                raise InvalidInput(f"challenger input: feature {name!r} is missing")
            code = codes[column].get(levels[name])
            if code is not None:
                matrix[row_index, column] = code
    return matrix


def _codes(levels: Sequence[str]) -> dict[str, int]:
    return {level: index for index, level in enumerate(levels)}


def _prediction(
    levels: Levels, contribution: Matrix, features: Sequence[str]
) -> Prediction:
    terms = tuple(
        Term(name, levels[name], float(contribution[index]))
        for index, name in enumerate(features)
    )
    prior = float(contribution[-1])
    log_odds = prior + sum(term.weight for term in terms)
    return Prediction(_sigmoid(log_odds), prior, terms)


def _sigmoid(log_odds: float) -> float:
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    exp = math.exp(log_odds)
    return exp / (1.0 + exp)


def vocabulary_of(
    rows: Sequence[Levels], features: Sequence[str]
) -> dict[str, list[str]]:
    """Return the levels of each feature: the fixed ones, then any seen, sorted."""
    vocabulary = {}
    for name in features:
        fixed = list(LEVELS.get(name, ()))
        seen = sorted({row[name] for row in rows if name in row} - set(fixed))
        vocabulary[name] = fixed + seen
    return vocabulary


def train_challenger(
    rows: Iterable[tuple[Levels, str]],
    *,
    features: Sequence[str] = MODEL_FEATURES,
    settings: BoostingSettings | None = None,
) -> Challenger:
    """Fit gradient-boosted trees on (levels, outcome) rows.

    Raises:
        InvalidInput: an outcome is not won or lost, a feature is missing, or
            the rows hold only one outcome.
    """
    settings = settings or BoostingSettings()
    levels, labels = _split_rows(rows)
    if len(set(labels)) < 2:
        raise InvalidInput(
            "challenger training rows: expected both won and lost deals, "
            f"got {len(labels)} of one outcome"
        )
    features = tuple(features)
    vocabulary = vocabulary_of(levels, features)
    dataset = lightgbm.Dataset(
        encode(levels, features, vocabulary),
        label=np.asarray(labels, dtype=np.float64),
        feature_name=list(features),
        categorical_feature=list(range(len(features))),
        params={"verbose": -1, "min_data_per_group": settings.min_data_per_group},
        free_raw_data=True,
    )
    booster = lightgbm.train(
        settings.lightgbm_parameters(), dataset, num_boost_round=settings.rounds
    )
    logger.debug(
        "challenger trained", extra={"rows": len(labels), "rounds": settings.rounds}
    )
    return Challenger(
        booster=booster,
        features=features,
        vocabulary=vocabulary,
        settings=settings,
        outcomes={WON: sum(labels), LOST: len(labels) - sum(labels)},
    )


def _split_rows(rows: Iterable[tuple[Levels, str]]) -> tuple[list[Levels], list[int]]:
    levels: list[Levels] = []
    labels: list[int] = []
    for row_levels, outcome in rows:
        if outcome not in OUTCOMES:
            raise InvalidInput(
                f"training deal outcome {outcome!r}: expected won or lost"
            )
        levels.append(row_levels)
        labels.append(1 if outcome == WON else 0)
    return levels, labels


__all__ = [
    "BoostingSettings",
    "Challenger",
    "encode",
    "train_challenger",
    "vocabulary_of",
]
