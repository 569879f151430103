"""The champion win model: naive Bayes over feature levels, explainable by design.

The model is a table of counts: closed deals won and lost, and per feature
and level how many of each had it. With Laplace smoothing ``alpha`` (1 by
default) and ``K`` levels of a feature,

    P(level | outcome) = (count(level, outcome) + alpha) / (count(outcome) + alpha K)

and the log-odds of winning are the prior's plus one term per feature,

    log P(won)/P(lost) = log (won + alpha)/(lost + alpha)
                         + sum_f log P(level_f | won) / P(level_f | lost).

Those terms are the explanation: a positive term pushes towards winning, a
negative one towards losing, and together with the prior they add up exactly
to the logit of the probability shown. Because the model is counts,
:meth:`NaiveBayes.update` (one more closed deal) gives exactly the model a full
retrain on the same deals gives.

Training data come from :func:`training_rows`: deals closed before the
cut-off, each seen just before it closed (:mod:`waggle.insights.features`).
Without enough history (:class:`HistoryRule`) Waggle does not trust a trained
model and scores by the stage's default probability instead, with a note.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from waggle.core.clock import as_utc
from waggle.core.errors import InvalidInput
from waggle.crm.models import Opportunity, OpportunityStatus
from waggle.insights.features import LEVELS, compute_features, feature_levels

WON, LOST = "won", "lost"
OUTCOMES = (WON, LOST)
OTHER_LEVEL = "other"
# The forecast category is left out: Waggle keeps no history of it and
# closing a deal overwrites it with closed/omitted, which would leak the label.
MODEL_FEATURES = (
    "touch_ratio",
    "recency",
    "customer_response",
    "rep_response",
    "contacts",
    "decision_maker",
    "stage_velocity",
    "objections",
    "competitors",
    "pricing",
    "materials",
    "meetings",
    "visits",
    "amount",
    "source",
)
FALLBACK_NOTE = {
    "zh-CN": "历史不足，使用阶段默认概率",
    "en": "not enough history: stage default probability",
}

Levels = Mapping[str, str]


@dataclass(frozen=True)
class HistoryRule:
    """How much closed history a trained model needs before Waggle uses it."""

    min_won: int = 200
    min_lost: int = 200
    window_days: int = 730

    def is_met(self, won: int, lost: int) -> bool:
        return won >= self.min_won and lost >= self.min_lost


@dataclass(frozen=True)
class Term:
    """One feature's share of a prediction: its level and log-odds weight."""

    feature: str
    level: str
    weight: float


@dataclass(frozen=True)
class Prediction:
    """P(win) with its decomposition: prior log-odds plus one term per feature."""

    probability: float
    prior_log_odds: float
    terms: tuple[Term, ...]

    @property
    def log_odds(self) -> float:
        return self.prior_log_odds + sum(term.weight for term in self.terms)


@dataclass
class NaiveBayes:
    """Counts of closed deals by outcome and by (feature, level, outcome)."""

    features: tuple[str, ...] = MODEL_FEATURES
    alpha: float = 1.0
    outcomes: dict[str, int] = field(default_factory=lambda: {WON: 0, LOST: 0})
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise InvalidInput(f"naive Bayes alpha={self.alpha}: expected > 0")
        for name in self.features:
            table = self.counts.setdefault(name, {})
            for level in LEVELS.get(name) or (OTHER_LEVEL,):
                table.setdefault(level, {WON: 0, LOST: 0})

    def update(self, levels: Levels, outcome: str) -> None:
        """Add one closed deal's counts; the same as retraining with it included.

        Raises:
            InvalidInput: the outcome is not won or lost, or a feature is missing.
        """
        if outcome not in OUTCOMES:
            raise InvalidInput(
                f"training deal outcome {outcome!r}: expected won or lost"
            )
        self.outcomes[outcome] += 1
        for name in self.features:
            level = self._level(name, levels)
            row = self.counts[name].setdefault(level, {WON: 0, LOST: 0})
            row[outcome] += 1

    def _level(self, name: str, levels: Levels) -> str:
        if name not in levels:
            raise InvalidInput(f"naive Bayes input: feature {name!r} is missing")
        return levels[name]

    def predict(self, levels: Levels) -> Prediction:
        """Return P(win) for a deal's levels, with each feature's log-odds term.

        A level the model has never seen counts as zero of each outcome.

        Raises:
            InvalidInput: a model feature is missing from ``levels``.
        """
        won, lost = self.outcomes[WON], self.outcomes[LOST]
        prior = math.log((won + self.alpha) / (lost + self.alpha))
        terms = tuple(
            Term(name, level, self._weight(name, level))
            for name in self.features
            for level in (self._level(name, levels),)
        )
        log_odds = prior + sum(term.weight for term in terms)
        return Prediction(_sigmoid(log_odds), prior, terms)

    def _weight(self, name: str, level: str) -> float:
        table = self.counts[name]
        known = len(table) + (level not in table)
        row = table.get(level, {WON: 0, LOST: 0})
        alpha = self.alpha
        on_won = (row[WON] + alpha) / (self.outcomes[WON] + alpha * known)
        on_lost = (row[LOST] + alpha) / (self.outcomes[LOST] + alpha * known)
        return math.log(on_won / on_lost)

    def to_parameters(self) -> dict[str, Any]:
        """Return the model as plain JSON data (the stored ``parameters``)."""
        return {
            "features": list(self.features),
            "alpha": self.alpha,
            "outcomes": dict(self.outcomes),
            "counts": {
                name: {level: dict(row) for level, row in sorted(table.items())}
                for name, table in self.counts.items()
            },
        }

    @classmethod
    def from_parameters(cls, data: Mapping[str, Any]) -> NaiveBayes:
        """Rebuild a model from :meth:`to_parameters` output."""
        return cls(
            features=tuple(data["features"]),
            alpha=float(data["alpha"]),
            outcomes={key: int(value) for key, value in data["outcomes"].items()},
            counts={
                name: {
                    level: {key: int(value) for key, value in row.items()}
                    for level, row in table.items()
                }
                for name, table in data["counts"].items()
            },
        )


def _sigmoid(log_odds: float) -> float:
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    exp = math.exp(log_odds)
    return exp / (1.0 + exp)


def train(
    rows: Iterable[tuple[Levels, str]],
    *,
    features: Sequence[str] = MODEL_FEATURES,
    alpha: float = 1.0,
) -> NaiveBayes:
    """Fit a model on (levels, outcome) rows: every row's counts added once.

    Raises:
        InvalidInput: an outcome is not won or lost, or a feature is missing.
    """
    model = NaiveBayes(features=tuple(features), alpha=alpha)
    for levels, outcome in rows:
        model.update(levels, outcome)
    return model


@dataclass(frozen=True)
class TrainingRow:
    """One closed deal as the model learns it."""

    opportunity_id: int
    closed_at: dt.datetime
    outcome: str
    levels: dict[str, str]


def closed_counts(
    session: Session, *, cutoff: dt.datetime, rule: HistoryRule
) -> tuple[int, int]:
    """Return how many deals were won and lost in the window before ``cutoff``."""
    since = cutoff - dt.timedelta(days=rule.window_days)
    rows = session.execute(
        select(Opportunity.status, func.count())
        .where(
            Opportunity.closed_at < cutoff,
            Opportunity.closed_at >= since,
            Opportunity.status.in_([OpportunityStatus.WON, OpportunityStatus.LOST]),
        )
        .group_by(Opportunity.status)
    )
    found = dict(rows.all())
    return int(found.get(WON, 0)), int(found.get(LOST, 0))


def training_rows(
    session: Session,
    *,
    cutoff: dt.datetime,
    window_days: int,
    visible: Any = None,
) -> list[TrainingRow]:
    """Return the deals closed in the window before ``cutoff``, oldest close first.

    Each deal's levels are its features just before it closed, computed with
    nothing after ``cutoff`` (norms included), so a time-based holdout after
    the cut-off stays unseen. ``visible`` narrows the deals (a row filter).
    """
    cutoff = as_utc(cutoff)
    since = cutoff - dt.timedelta(days=window_days)
    query = select(Opportunity.id, Opportunity.closed_at, Opportunity.status).where(
        Opportunity.closed_at < cutoff,
        Opportunity.closed_at >= since,
        Opportunity.status.in_([OpportunityStatus.WON, OpportunityStatus.LOST]),
    )
    if visible is not None:
        query = query.where(visible)
    deals = session.execute(query.order_by(Opportunity.closed_at, Opportunity.id)).all()
    features = compute_features(session, [row[0] for row in deals], as_of=cutoff)
    return [
        TrainingRow(
            deal_id, as_utc(closed_at), status, feature_levels(features[deal_id])
        )
        for deal_id, closed_at, status in deals
        if deal_id in features and closed_at is not None
    ]


__all__ = [
    "FALLBACK_NOTE",
    "LOST",
    "MODEL_FEATURES",
    "WON",
    "HistoryRule",
    "NaiveBayes",
    "Prediction",
    "Term",
    "TrainingRow",
    "closed_counts",
    "train",
    "training_rows",
]
