"""The opportunity health index (商机健康度), 0 to 100.

Meaning: the health of an opportunity is the champion model's probability
that it will be won, times 100, rounded. A health of 70 says "of the deals
that looked like this one, about 70 in 100 were won". It is not a grade of the
rep's effort and not a stage percentage; when Waggle has too little closed
history (:class:`~waggle.insights.champion.HistoryRule`) it *is* the stage's
default probability, and every score says so in its note.

That claim holds only while the model is calibrated, so training checks it:
the closed deals are split by close date, the model is fitted on the older
80% and scored on the newer 20%, and the reliability bins (predicted mean
against observed win rate per tenth of probability) and the expected
calibration error go into the model version's parameters
(:func:`calibration_report`).

Scores are kept fresh two ways: :func:`rescore_opportunity` rescoring one
deal when an event about it arrives (:func:`on_events` is the stream
subscriber), and :func:`full_rescore_job` recomputing every open deal on a
schedule. Every stored score names the model version that produced it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import system_actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.crm.models import Opportunity, PipelineStage
from waggle.insights.challenger import Challenger
from waggle.insights.champion import FALLBACK_NOTE, NaiveBayes, Prediction
from waggle.insights.features import Features, compute_features, feature_levels
from waggle.insights.models import (
    WIN_KINDS,
    ModelKind,
    ModelStatus,
    ModelVersion,
    OpportunityScore,
)
from waggle.signals.stream import StoredEvent

logger = logging.getLogger(__name__)

BINS = 10
STAGE_DEFAULT_VERSION = "stage-default-1"
JOB_ACTOR = "insights-scorer"


def health_index(probability: float) -> int:
    """Return the health index of a win probability: ``round(100 p)``, 0 to 100."""
    return max(0, min(100, round(probability * 100)))


@dataclass(frozen=True)
class ReliabilityBin:
    """Deals whose predicted P(win) fell in ``[low, high)``, and how many were won."""

    low: float
    high: float
    count: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class CalibrationReport:
    bins: tuple[ReliabilityBin, ...]
    expected_calibration_error: float
    brier_score: float
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "expected_calibration_error": self.expected_calibration_error,
            "brier_score": self.brier_score,
            "bins": [vars(item) for item in self.bins],
        }


def reliability_bins(
    pairs: Sequence[tuple[float, bool]], *, bins: int = BINS
) -> tuple[ReliabilityBin, ...]:
    """Group (predicted P(win), was won) pairs into equal-width probability bins.

    Empty bins are left out.
    """
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for probability, is_won in pairs:
        grouped[min(int(probability * bins), bins - 1)].append((probability, is_won))
    return tuple(
        ReliabilityBin(
            low=index / bins,
            high=(index + 1) / bins,
            count=len(members),
            mean_predicted=sum(p for p, _ in members) / len(members),
            observed_rate=sum(1 for _, won in members if won) / len(members),
        )
        for index, members in enumerate(grouped)
        if members
    )


def calibration_report(
    pairs: Sequence[tuple[float, bool]], *, bins: int = BINS
) -> CalibrationReport:
    """Return the reliability bins, expected calibration error and Brier score."""
    found = reliability_bins(pairs, bins=bins)
    total = len(pairs)
    error = sum(
        item.count * abs(item.mean_predicted - item.observed_rate) for item in found
    )
    brier = sum((p - (1.0 if won else 0.0)) ** 2 for p, won in pairs)
    return CalibrationReport(
        bins=found,
        expected_calibration_error=error / total if total else 0.0,
        brier_score=brier / total if total else 0.0,
        count=total,
    )


# --------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class ScoredDeal:
    """One opportunity's score before it is stored."""

    opportunity_id: int
    probability: float
    terms: list[dict[str, Any]]
    levels: dict[str, str]
    note: str | None
    reference_at: dt.datetime
    manual_probability: int | None = None
    features: Features | None = field(default=None, compare=False)

    @property
    def health(self) -> int:
        return health_index(self.probability)


@dataclass(frozen=True)
class ActiveModel:
    """The model scores come from: the champion, or the stage-default fallback."""

    version: ModelVersion
    model: NaiveBayes | Challenger | None

    @property
    def note(self) -> str | None:
        if self.model is not None:
            return None
        return f"{FALLBACK_NOTE['zh-CN']} / {FALLBACK_NOTE['en']}"


def active_model(session: Session) -> ActiveModel:
    """Return the champion win model, or the stage-default model when there is none.

    The champion is naive Bayes or, once a challenger's promotion was
    approved, the LightGBM model.
    """
    champion = session.scalar(
        select(ModelVersion)
        .where(
            ModelVersion.kind.in_([str(kind) for kind in WIN_KINDS]),
            ModelVersion.status == ModelStatus.CHAMPION,
        )
        .order_by(ModelVersion.id.desc())
    )
    if champion is not None:
        return ActiveModel(champion, load_model(champion))
    return ActiveModel(stage_default_version(session), None)


def load_model(version: ModelVersion) -> NaiveBayes | Challenger:
    """Rebuild the win model a registry version stores."""
    parameters = version.parameters["model"]
    assert isinstance(parameters, dict)
    if version.kind == ModelKind.WIN_LIGHTGBM:
        return Challenger.from_parameters(parameters)
    return NaiveBayes.from_parameters(parameters)


def stage_default_version(session: Session) -> ModelVersion:
    """Return (creating it once) the registry row of the stage-default model."""
    found = session.scalar(
        select(ModelVersion).where(ModelVersion.version == STAGE_DEFAULT_VERSION)
    )
    if found is None:
        found = ModelVersion(
            kind=ModelKind.STAGE_DEFAULT,
            version=STAGE_DEFAULT_VERSION,
            status=ModelStatus.CHAMPION,
            parameters={"rule": "pipeline_stages.probability / 100"},
            created_by="system",
        )
        session.add(found)
        session.flush()
    return found


def score_deals(
    session: Session, ids: Sequence[int], *, active: ActiveModel, as_of: dt.datetime
) -> list[ScoredDeal]:
    """Score opportunities with ``active`` as of ``as_of`` (no policy check)."""
    features = compute_features(session, ids, as_of=as_of)
    manual = dict(
        session.execute(
            select(Opportunity.id, Opportunity.manual_probability).where(
                Opportunity.id.in_(list(features))
            )
        ).all()
    )
    stage_odds = _stage_probabilities(session) if active.model is None else {}
    ordered = [features[key] for key in sorted(features)]
    levels = [feature_levels(item) for item in ordered]
    # One batch call: the booster's TreeSHAP is far cheaper per row in bulk.
    predictions: list[Prediction | None] = (
        [None] * len(ordered)
        if active.model is None
        else list(_predict_many(active.model, levels))
    )
    return [
        _score_one(
            item, level, prediction, active, stage_odds, manual.get(item.opportunity_id)
        )
        for item, level, prediction in zip(ordered, levels, predictions, strict=True)
    ]


def _predict_many(
    model: NaiveBayes | Challenger, levels: Sequence[dict[str, str]]
) -> list[Prediction]:
    if isinstance(model, Challenger):
        return model.predict_many(levels)
    return [model.predict(item) for item in levels]


def _score_one(
    item: Features,
    levels: dict[str, str],
    prediction: Prediction | None,
    active: ActiveModel,
    stage_odds: dict[int, float],
    manual: int | None,
) -> ScoredDeal:
    if prediction is None:
        probability = stage_odds.get(item.stage_id or 0, 0.0)
        terms: list[dict[str, Any]] = []
    else:
        probability = prediction.probability
        terms = [
            {"feature": t.feature, "level": t.level, "weight": t.weight}
            for t in prediction.terms
        ]
    return ScoredDeal(
        opportunity_id=item.opportunity_id,
        probability=probability,
        terms=terms,
        levels=levels,
        note=active.note,
        reference_at=item.reference_at,
        manual_probability=manual,
        features=item,
    )


def _stage_probabilities(session: Session) -> dict[int, float]:
    rows = session.execute(select(PipelineStage.id, PipelineStage.probability))
    return {stage_id: probability / 100.0 for stage_id, probability in rows}


def store_scores(
    session: Session, scored: Sequence[ScoredDeal], *, version: ModelVersion
) -> list[OpportunityScore]:
    """Store the scores as each opportunity's latest; earlier ones stay as history."""
    ids = [item.opportunity_id for item in scored]
    for start in range(0, len(ids), 900):
        session.execute(
            update(OpportunityScore)
            .where(
                OpportunityScore.opportunity_id.in_(ids[start : start + 900]),
                OpportunityScore.is_latest.is_(True),
            )
            .values(is_latest=False)
        )
    computed_at = now()
    rows = [
        OpportunityScore(
            opportunity_id=item.opportunity_id,
            model_version_id=version.id,
            probability=item.probability,
            health=item.health,
            manual_probability=item.manual_probability,
            factors=item.terms,
            levels=item.levels,
            note=item.note,
            as_of=item.reference_at,
            computed_at=computed_at,
            is_latest=True,
        )
        for item in scored
    ]
    session.add_all(rows)
    session.flush()
    return rows


def latest_score(session: Session, opportunity_id: int) -> OpportunityScore | None:
    """Return the current stored score of one opportunity, if any."""
    return session.scalar(
        select(OpportunityScore)
        .where(
            OpportunityScore.opportunity_id == opportunity_id,
            OpportunityScore.is_latest.is_(True),
        )
        .order_by(OpportunityScore.id.desc())
    )


# --------------------------------------------------------------------------
# Keeping scores fresh


def rescore_opportunity(
    session: Session, opportunity_id: int
) -> OpportunityScore | None:
    """Rescore one opportunity now, as the insights scorer (governed and audited).

    Returns ``None`` when the opportunity does not exist or is closed.
    """
    # Imported here: the service builds on this module.
    from waggle.insights.service import score_opportunities

    actor = system_actor(JOB_ACTOR)
    stored = score_opportunities(session, actor, ids=[opportunity_id], open_only=True)
    return stored[0] if stored else None


def on_events(sessions: sessionmaker[Session]) -> Any:
    """Return a stream subscriber that rescores the opportunities events concern."""

    def subscriber(events: Sequence[StoredEvent]) -> None:
        ids = sorted({e.opportunity_id for e in events if e.opportunity_id})
        if not ids:
            return
        from waggle.insights.service import score_opportunities

        with transaction(sessions) as session:
            score_opportunities(
                session, system_actor(JOB_ACTOR), ids=ids, open_only=True
            )

    return subscriber


def full_rescore_job(sessions: sessionmaker[Session]) -> int:
    """Recompute the score of every open opportunity; return how many were scored."""
    from waggle.insights.service import score_opportunities

    with transaction(sessions) as session:
        stored = score_opportunities(session, system_actor(JOB_ACTOR))
    logger.info("opportunities rescored", extra={"opportunities": len(stored)})
    return len(stored)


__all__ = [
    "ActiveModel",
    "CalibrationReport",
    "ReliabilityBin",
    "ScoredDeal",
    "active_model",
    "calibration_report",
    "full_rescore_job",
    "health_index",
    "latest_score",
    "load_model",
    "on_events",
    "reliability_bins",
    "rescore_opportunity",
    "score_deals",
    "stage_default_version",
    "store_scores",
]
