"""Insights services: train the champion, score opportunities, explain a score.

Every function checks the policy (``models``, ``scores`` and the
opportunities it reads) and leaves its audit row in the caller's transaction.
The rep's manual probability is read and shown beside the model's; nothing
here writes it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import as_utc, now
from waggle.core.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from waggle.crm.importing import ImportSummary, import_file
from waggle.crm.mapping import ColumnMapping
from waggle.crm.models import Opportunity, OpportunityStatus
from waggle.governance import authorize, ensure_in_scope, record_audit, row_filter
from waggle.governance.duties import SEPARATION_OF_DUTIES
from waggle.insights.challenger import BoostingSettings
from waggle.insights.champion import (
    FALLBACK_NOTE,
    LOST,
    WON,
    HistoryRule,
    NaiveBayes,
    TrainingRow,
    closed_counts,
    train,
    training_rows,
)
from waggle.insights.explain import Explanation, explain, explain_stored
from waggle.insights.features import compute_features, feature_levels
from waggle.insights.health import (
    ActiveModel,
    active_model,
    calibration_report,
    health_index,
    latest_score,
    score_deals,
    stage_default_version,
    store_scores,
)
from waggle.insights.models import (
    WIN_KINDS,
    ModelKind,
    ModelPromotion,
    ModelReport,
    ModelStatus,
    ModelVersion,
    OpportunityScore,
    PromotionStatus,
)
from waggle.insights.report import (
    Comparison,
    closed_dates,
    compare,
    default_cutoff,
    load_history,
    render_html,
    segments_of,
)

logger = logging.getLogger(__name__)

MODELS = "models"
SCORES = "scores"
OPPORTUNITIES = "opportunities"
HOLDOUT_SHARE = 0.2


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did: the version it made (or the fallback) and why."""

    version: ModelVersion
    won: int
    lost: int
    is_fallback: bool
    note: dict[str, str] | None
    calibration: dict[str, Any] | None


def train_champion(
    session: Session,
    actor: Actor,
    cutoff: dt.datetime | None = None,
    *,
    rule: HistoryRule | None = None,
    promote: bool = True,
) -> TrainingReport:
    """Train the win model on deals closed before ``cutoff`` (default: now).

    With less history than ``rule`` asks (default 200 won and 200 lost in 24
    months) no model is trained and the stage-default model stays in use,
    with its note. With ``promote`` the new version becomes champion while
    only the stage-default rule is in use (the first trained model); once a
    trained champion exists, a new version is always a challenger and needs
    an approved promotion (:func:`request_promotion`, :func:`decide_promotion`).

    Raises:
        PolicyDenied: the actor may not create models or read opportunities.
    """
    authorize(session, actor, "create", MODELS)
    scope = authorize(session, actor, "read", OPPORTUNITIES)
    visible = row_filter(session, actor, scope, Opportunity.owner_id)
    rule = rule or HistoryRule()
    cutoff = as_utc(cutoff or now())
    won, lost = closed_counts(session, cutoff=cutoff, rule=rule)
    if not rule.is_met(won, lost):
        version = stage_default_version(session)
        _audit_training(session, actor, version, won, lost, fallback=True)
        return TrainingReport(version, won, lost, True, dict(FALLBACK_NOTE), None)
    rows = training_rows(
        session, cutoff=cutoff, window_days=rule.window_days, visible=visible
    )
    calibration = holdout_calibration(rows)
    model = train((row.levels, row.outcome) for row in rows)
    is_first = active_model(session).model is None
    version = _register(
        session,
        actor,
        model,
        cutoff=cutoff,
        calibration=calibration,
        promote=promote and is_first,
    )
    _audit_training(session, actor, version, won, lost, fallback=False)
    logger.info(
        "win model trained",
        extra={"model_version": version.version, "won": won, "lost": lost},
    )
    return TrainingReport(version, won, lost, False, None, calibration)


def holdout_calibration(rows: Sequence[TrainingRow]) -> dict[str, Any] | None:
    """Fit on the older 80% of closed deals, check calibration on the newer 20%."""
    split = int(len(rows) * (1 - HOLDOUT_SHARE))
    older, newer = rows[:split], rows[split:]
    if not older or not newer:
        return None
    model = train((row.levels, row.outcome) for row in older)
    pairs = [
        (model.predict(row.levels).probability, row.outcome == WON) for row in newer
    ]
    report = calibration_report(pairs).as_dict()
    report["holdout_from"] = newer[0].closed_at.isoformat()
    return report


def _register(
    session: Session,
    actor: Actor,
    model: NaiveBayes,
    *,
    cutoff: dt.datetime,
    calibration: dict[str, Any] | None,
    promote: bool,
    parent: ModelVersion | None = None,
    added: Sequence[int] = (),
) -> ModelVersion:
    if promote:
        _retire_champions(session)
    number = (session.scalar(select(func.count()).select_from(ModelVersion)) or 0) + 1
    version = ModelVersion(
        kind=ModelKind.WIN_NAIVE_BAYES,
        version=f"nb-{cutoff:%Y%m%d}-{number}",
        parent_id=parent.id if parent else None,
        trained_at=now(),
        cutoff=cutoff,
        won_count=model.outcomes[WON],
        lost_count=model.outcomes[LOST],
        parameters={
            "model": model.to_parameters(),
            "calibration": calibration,
            "added_opportunity_ids": list(added),
        },
        status=ModelStatus.CHAMPION if promote else ModelStatus.CHALLENGER,
        approved_by=actor.username if promote else None,
        created_by=actor.username,
    )
    session.add(version)
    session.flush()
    return version


def _retire_champions(session: Session) -> None:
    session.execute(
        update(ModelVersion)
        .where(
            ModelVersion.kind.in_([str(kind) for kind in WIN_KINDS]),
            ModelVersion.status == ModelStatus.CHAMPION,
        )
        .values(status=ModelStatus.RETIRED)
    )


def _audit_training(
    session: Session,
    actor: Actor,
    version: ModelVersion,
    won: int,
    lost: int,
    *,
    fallback: bool,
) -> None:
    outcome = "fallback: stage default" if fallback else f"trained {version.version}"
    record_audit(
        session,
        actor,
        action="create",
        resource=MODELS,
        record_ids=[version.id],
        detail=f"{outcome}; won {won}, lost {lost}",
    )


def add_closed_deal(
    session: Session, actor: Actor, opportunity_id: int
) -> ModelVersion:
    """Add one newly closed deal to the champion as a new version (the old retires).

    The counts equal a full retrain that includes the deal.

    Raises:
        PolicyDenied: the actor may not update models.
        NotFound: no opportunity, or no trained champion.
        Conflict: the deal is open, or the champion already holds it.
    """
    authorize(session, actor, "update", MODELS)
    active = active_model(session)
    if active.model is None:
        raise NotFound("model_versions: no trained champion to update")
    if not isinstance(active.model, NaiveBayes):
        raise Conflict(
            f"model {active.version.version}: a {active.version.kind} champion "
            "learns new deals by retraining, not one deal at a time"
        )
    opportunity = session.get(Opportunity, opportunity_id)
    if opportunity is None:
        raise NotFound(f"opportunity {opportunity_id} does not exist")
    _refuse_held_deal(active, opportunity)
    assert opportunity.closed_at is not None
    closed_at = as_utc(opportunity.closed_at)
    features = compute_features(session, [opportunity_id], as_of=closed_at)
    model = active.model
    model.update(feature_levels(features[opportunity_id]), opportunity.status)
    parameters = active.version.parameters
    added = [*_ids(parameters.get("added_opportunity_ids")), opportunity_id]
    version = _register(
        session,
        actor,
        model,
        cutoff=as_utc(active.version.cutoff or closed_at),
        calibration=_as_dict(parameters.get("calibration")),
        promote=True,
        parent=active.version,
        added=added,
    )
    record_audit(
        session,
        actor,
        action="update",
        resource=MODELS,
        record_ids=[version.id],
        detail=f"added opportunity {opportunity_id} to {active.version.version}",
    )
    return version


def _refuse_held_deal(active: ActiveModel, opportunity: Opportunity) -> None:
    if opportunity.status not in (OpportunityStatus.WON, OpportunityStatus.LOST):
        raise Conflict(
            f"opportunity {opportunity.id}: status {opportunity.status}; "
            "only won or lost deals train the model"
        )
    cutoff = active.version.cutoff
    added = _ids(active.version.parameters.get("added_opportunity_ids"))
    closed_at = opportunity.closed_at
    if opportunity.id in added or (
        cutoff is not None and closed_at is not None and as_utc(closed_at) < cutoff
    ):
        raise Conflict(
            f"opportunity {opportunity.id} is already in model {active.version.version}"
        )


def _ids(value: object) -> list[int]:
    return [int(item) for item in value] if isinstance(value, list) else []


def _as_dict(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def score_opportunities(
    session: Session,
    actor: Actor,
    ids: Sequence[int] | None = None,
    *,
    as_of: dt.datetime | None = None,
    open_only: bool = False,
) -> list[OpportunityScore]:
    """Score and store the opportunities (default: every open one the actor sees).

    Named ids are scored whatever their status unless ``open_only``; ids
    outside the actor's scope or that do not exist are skipped.

    Raises:
        PolicyDenied: the actor may not create scores or read opportunities.
    """
    authorize(session, actor, "create", SCORES)
    scope = authorize(session, actor, "read", OPPORTUNITIES)
    query = select(Opportunity.id).where(
        row_filter(session, actor, scope, Opportunity.owner_id)
    )
    if ids is not None:
        query = query.where(Opportunity.id.in_(list(ids)))
    if ids is None or open_only:
        query = query.where(Opportunity.status == OpportunityStatus.OPEN)
    chosen = list(session.scalars(query.order_by(Opportunity.id)))
    active = active_model(session)
    scored = score_deals(session, chosen, active=active, as_of=as_utc(as_of or now()))
    stored = store_scores(session, scored, version=active.version)
    record_audit(
        session,
        actor,
        action="create",
        resource=SCORES,
        record_ids=[item.opportunity_id for item in stored],
        detail=f"model {active.version.version}",
    )
    return stored


@dataclass(frozen=True)
class OpportunityInsight:
    """A score as people read it: probability, health, the rep's figure, why."""

    opportunity_id: int
    probability: float
    health: int
    manual_probability: int | None
    model_version: str
    model_kind: str
    note: dict[str, str] | None
    explanation: Explanation
    levels: dict[str, str]
    as_of: dt.datetime
    computed_at: dt.datetime
    is_stored: bool


def explain_opportunity(
    session: Session, actor: Actor, opportunity_id: int
) -> OpportunityInsight:
    """Return the latest score of an opportunity with its top factors.

    Without a stored score the opportunity is scored now (not stored).

    Raises:
        PolicyDenied: the actor may not read scores, or the opportunity lies
            outside their scope.
        NotFound: the opportunity does not exist.
    """
    scope = authorize(session, actor, "read", SCORES)
    opportunity = session.get(Opportunity, opportunity_id)
    if opportunity is None:
        raise NotFound(f"opportunity {opportunity_id} does not exist")
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=opportunity.owner_id,
        action="read",
        resource=SCORES,
        record_id=opportunity_id,
    )
    stored = latest_score(session, opportunity_id)
    insight = (
        _from_stored(session, stored, opportunity)
        if stored is not None
        else _score_now(session, opportunity)
    )
    record_audit(
        session, actor, action="read", resource=SCORES, record_ids=[opportunity_id]
    )
    return insight


def _from_stored(
    session: Session, stored: OpportunityScore, opportunity: Opportunity
) -> OpportunityInsight:
    version = session.get(ModelVersion, stored.model_version_id)
    assert version is not None
    return OpportunityInsight(
        opportunity_id=opportunity.id,
        probability=stored.probability,
        health=stored.health,
        manual_probability=opportunity.manual_probability,
        model_version=version.version,
        model_kind=version.kind,
        note=dict(FALLBACK_NOTE) if version.kind == ModelKind.STAGE_DEFAULT else None,
        explanation=explain_stored(stored.factors),
        levels=dict(stored.levels),
        as_of=stored.as_of,
        computed_at=stored.computed_at,
        is_stored=True,
    )


def _score_now(session: Session, opportunity: Opportunity) -> OpportunityInsight:
    active = active_model(session)
    current = now()
    found = score_deals(session, [opportunity.id], active=active, as_of=current)
    if not found:
        raise InvalidInput(
            f"opportunity {opportunity.id}: created after now, cannot be scored"
        )
    item = found[0]
    return OpportunityInsight(
        opportunity_id=opportunity.id,
        probability=item.probability,
        health=health_index(item.probability),
        manual_probability=opportunity.manual_probability,
        model_version=active.version.version,
        model_kind=active.version.kind,
        note=dict(FALLBACK_NOTE) if active.model is None else None,
        explanation=explain_stored(item.terms),
        levels=item.levels,
        as_of=item.reference_at,
        computed_at=current,
        is_stored=False,
    )


def list_model_versions(session: Session, actor: Actor) -> list[ModelVersion]:
    """Return every model version, newest first.

    Raises:
        PolicyDenied: the actor may not read models.
    """
    authorize(session, actor, "read", MODELS)
    versions = list(
        session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()))
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=MODELS,
        record_ids=[version.id for version in versions],
    )
    return versions


# --------------------------------------------------------------------------
# The model lifecycle: challengers, their reports, promotion with approval


@dataclass(frozen=True)
class ChallengerRun:
    """A trained challenger, its stored report and, for an upload, the import."""

    version: ModelVersion
    report: ModelReport
    import_summary: ImportSummary | None = None


def train_challenger_version(
    session: Session,
    actor: Actor,
    *,
    cutoff: dt.datetime | None = None,
    until: dt.datetime | None = None,
    rule: HistoryRule | None = None,
    settings: BoostingSettings | None = None,
) -> ChallengerRun:
    """Train a LightGBM challenger and store its report against the champion.

    Deals closed before ``cutoff`` (default: the newest 20% of closed deals
    in the window are held out) train both models; those closed from the
    cut-off to ``until`` (default: now) test them. The challenger is
    registered with status ``challenger``; it scores nothing until a
    director approves its promotion.

    Raises:
        PolicyDenied: the actor may not create models or read opportunities.
        InvalidInput: less training history than ``rule`` asks (default 200
            won and 200 lost in 24 months), or no deal after the cut-off.
    """
    authorize(session, actor, "create", MODELS)
    scope = authorize(session, actor, "read", OPPORTUNITIES)
    visible = row_filter(session, actor, scope, Opportunity.owner_id)
    rule = rule or HistoryRule()
    until = as_utc(until or now())
    if cutoff is None:
        dates = closed_dates(
            session, until=until, window_days=rule.window_days, visible=visible
        )
        cutoff = default_cutoff(dates)
    cutoff = as_utc(cutoff)
    training, holdout = load_history(
        session,
        cutoff=cutoff,
        until=until,
        window_days=rule.window_days,
        visible=visible,
    )
    _require_history(training, rule)
    segments = segments_of(session, [row.opportunity_id for row in holdout])
    comparison = compare(training, holdout, segments=segments, settings=settings)
    champion = active_model(session).version
    version = _register_challenger(session, actor, comparison, cutoff=cutoff)
    report = _store_report(
        session, version, champion, comparison, cutoff=cutoff, until=until
    )
    record_audit(
        session,
        actor,
        action="create",
        resource=MODELS,
        record_ids=[version.id],
        detail=f"challenger {version.version} with report; cutoff {cutoff:%Y-%m-%d}",
    )
    logger.info(
        "challenger trained",
        extra={
            "model_version": version.version,
            "training": len(training),
            "holdout": len(holdout),
        },
    )
    return ChallengerRun(version, report)


def _require_history(training: Sequence[TrainingRow], rule: HistoryRule) -> None:
    won = sum(1 for row in training if row.outcome == WON)
    lost = len(training) - won
    if not rule.is_met(won, lost):
        raise InvalidInput(
            f"challenger training history: {won} won and {lost} lost before the "
            f"cut-off; expected at least {rule.min_won} won and {rule.min_lost} "
            f"lost in {rule.window_days} days ({FALLBACK_NOTE['en']} / "
            f"{FALLBACK_NOTE['zh-CN']})",
            won=won,
            lost=lost,
        )


def _register_challenger(
    session: Session, actor: Actor, comparison: Comparison, *, cutoff: dt.datetime
) -> ModelVersion:
    number = (session.scalar(select(func.count()).select_from(ModelVersion)) or 0) + 1
    model = comparison.challenger
    version = ModelVersion(
        kind=ModelKind.WIN_LIGHTGBM,
        version=f"lgbm-{cutoff:%Y%m%d}-{number}",
        trained_at=now(),
        cutoff=cutoff,
        won_count=model.outcomes[WON],
        lost_count=model.outcomes[LOST],
        parameters={
            "model": model.to_parameters(),
            "calibration": comparison.figures["models"]["challenger"]["calibration"],
        },
        status=ModelStatus.CHALLENGER,
        created_by=actor.username,
    )
    session.add(version)
    session.flush()
    return version


def _store_report(
    session: Session,
    version: ModelVersion,
    champion: ModelVersion,
    comparison: Comparison,
    *,
    cutoff: dt.datetime,
    until: dt.datetime,
) -> ModelReport:
    figures = {
        "meta": {
            "version": version.version,
            "champion_version": champion.version,
            "cutoff": cutoff.isoformat(),
            "until": until.isoformat(),
        },
        **comparison.figures,
    }
    report = ModelReport(
        model_version_id=version.id,
        champion_version_id=champion.id,
        cutoff=cutoff,
        holdout_until=until,
        figures=figures,
        html=render_html(figures),
    )
    session.add(report)
    session.flush()
    return report


def train_challenger_from_file(
    session: Session,
    actor: Actor,
    data: bytes,
    *,
    filename: str,
    file_format: str | None = None,
    mapping: ColumnMapping | None = None,
    **training: Any,
) -> ChallengerRun:
    """Import historical opportunities (the CRM import), then train a challenger.

    The file is an ordinary ``opportunities`` import (CSV or XLSX, with a
    column mapping): won and lost deals carry their stage (``won``/``lost``)
    and ``closed_at``. Rejected rows stay in the import run; the challenger
    learns from every closed deal Waggle then holds. ``training`` goes to
    :func:`train_challenger_version`.

    Raises:
        PolicyDenied: the actor may not import opportunities or create models.
        InvalidInput: the file is refused, or too little history results.
    """
    summary = import_file(
        session,
        actor,
        "opportunities",
        data,
        filename=filename,
        file_format=file_format,
        mapping=mapping,
    )
    run = train_challenger_version(session, actor, **training)
    return ChallengerRun(run.version, run.report, summary)


def find_version(session: Session, actor: Actor, reference: str) -> ModelVersion:
    """Return a model version by its name (``lgbm-20261201-7``) or its id.

    Raises:
        PolicyDenied: the actor may not read models.
        NotFound: no such version.
    """
    authorize(session, actor, "read", MODELS)
    found = session.scalar(
        select(ModelVersion).where(ModelVersion.version == reference)
    )
    if found is None and reference.isdigit():
        found = session.get(ModelVersion, int(reference))
    if found is None:
        raise NotFound(f"model version {reference!r} does not exist")
    return found


def get_report(session: Session, actor: Actor, version_id: int) -> ModelReport:
    """Return the comparison report stored with a challenger version.

    Raises:
        PolicyDenied: the actor may not read models.
        NotFound: the version has no report.
    """
    authorize(session, actor, "read", MODELS)
    report = session.scalar(
        select(ModelReport).where(ModelReport.model_version_id == version_id)
    )
    if report is None:
        raise NotFound(f"model version {version_id}: no comparison report")
    record_audit(
        session, actor, action="read", resource=MODELS, record_ids=[version_id]
    )
    return report


def request_promotion(
    session: Session, actor: Actor, version_id: int, *, reason: str | None = None
) -> ModelPromotion:
    """Ask for a challenger to become the champion; a director must approve.

    Raises:
        PolicyDenied: the actor may not update models.
        NotFound: no such version.
        Conflict: the version is not a trained challenger, or a request for it
            is already open.
    """
    authorize(session, actor, "update", MODELS)
    version = _version(session, version_id)
    if version.kind not in WIN_KINDS or version.status != ModelStatus.CHALLENGER:
        raise Conflict(
            f"model version {version.version}: status {version.status}, kind "
            f"{version.kind}; only a trained challenger can be promoted"
        )
    if open_promotion(session, version_id) is not None:
        raise Conflict(f"model version {version.version}: promotion already requested")
    promotion = ModelPromotion(
        model_version_id=version_id,
        status=PromotionStatus.REQUESTED,
        reason=reason,
        requested_by=actor.username,
        requested_by_user_id=actor.user_id,
        requested_at=now(),
    )
    session.add(promotion)
    session.flush()
    record_audit(
        session,
        actor,
        action="update",
        resource=MODELS,
        record_ids=[version_id],
        detail=f"promotion of {version.version} requested",
    )
    return promotion


def open_promotion(session: Session, version_id: int) -> ModelPromotion | None:
    """Return the undecided promotion request of a version, if any."""
    return session.scalar(
        select(ModelPromotion).where(
            ModelPromotion.model_version_id == version_id,
            ModelPromotion.status == PromotionStatus.REQUESTED,
        )
    )


def decide_promotion(
    session: Session,
    actor: Actor,
    version_id: int,
    *,
    is_approved: bool = True,
    note: str | None = None,
) -> ModelPromotion:
    """Approve (or reject) the open promotion request of a challenger.

    On approval the challenger becomes the champion and the previous trained
    champion retires; scores from then on name the new version. The approver
    is never the person who asked (separation of duties).

    Raises:
        PolicyDenied: the actor may not approve models, or asked for this very
            promotion (code ``separation_of_duties``).
        NotFound: no such version, or no open request for it.
        Conflict: the version is no longer a challenger.
    """
    authorize(session, actor, "approve", MODELS)
    version = _version(session, version_id)
    promotion = open_promotion(session, version_id)
    if promotion is None:
        raise NotFound(f"model version {version.version}: no open promotion request")
    _refuse_own_request(actor, promotion, version)
    if version.status != ModelStatus.CHALLENGER:
        raise Conflict(f"model version {version.version}: status {version.status}")
    promotion.status = (
        PromotionStatus.APPROVED if is_approved else PromotionStatus.REJECTED
    )
    promotion.decided_by = actor.username
    promotion.decided_at = now()
    promotion.decision_note = note
    if is_approved:
        _retire_champions(session)
        version.status = ModelStatus.CHAMPION
        version.approved_by = actor.username
    session.flush()
    decision = "approved" if is_approved else "rejected"
    record_audit(
        session,
        actor,
        action="approve",
        resource=MODELS,
        record_ids=[version_id],
        result="ok" if is_approved else "rejected",
        detail=f"promotion of {version.version} {decision}; "
        f"requested by {promotion.requested_by}",
    )
    logger.info(
        "model promotion decided",
        extra={"model_version": version.version, "decision": decision},
    )
    return promotion


def _refuse_own_request(
    actor: Actor, promotion: ModelPromotion, version: ModelVersion
) -> None:
    is_same_user = (
        actor.user_id is not None and actor.user_id == promotion.requested_by_user_id
    )
    if is_same_user or actor.username == promotion.requested_by:
        role = "asked for this promotion"
    elif actor.username == version.created_by:
        role = "trained this model"
    else:
        return
    raise PolicyDenied(
        f"model version {version.version}: {actor.username} {role} and may not "
        "approve it; another person must",
        code=SEPARATION_OF_DUTIES,
        action="approve",
        resource=MODELS,
        record_ids=(str(version.id),),
    )


def _version(session: Session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"model version {version_id} does not exist")
    return version


def promotions_of(
    session: Session, version_ids: Sequence[int]
) -> dict[int, ModelPromotion]:
    """Return the latest promotion request of each version that has one."""
    found: dict[int, ModelPromotion] = {}
    rows = session.scalars(
        select(ModelPromotion)
        .where(ModelPromotion.model_version_id.in_(list(version_ids)))
        .order_by(ModelPromotion.id)
    )
    for promotion in rows:
        found[promotion.model_version_id] = promotion
    return found


__all__ = [
    "MODELS",
    "SCORES",
    "ChallengerRun",
    "OpportunityInsight",
    "TrainingReport",
    "add_closed_deal",
    "decide_promotion",
    "explain",
    "explain_opportunity",
    "find_version",
    "get_report",
    "holdout_calibration",
    "list_model_versions",
    "open_promotion",
    "promotions_of",
    "request_promotion",
    "score_opportunities",
    "train_challenger_from_file",
    "train_challenger_version",
    "train_champion",
]
