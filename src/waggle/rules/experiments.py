"""A/B experiments of intervention rules: assignment, exposures, the report.

How the rule engine uses an experiment, for an opportunity a rule would act on:

1. ``experiment = running_experiment_for_rule(session, rule_ref)``;
2. ``arm = expose(session, experiment, opportunity_id, at=..., rule_id=...)``
   (assigns by hashing and logs the first exposure);
3. act only ``if should_act(arm)``: the control arm (the holdout) is logged
   but gets no intervention.

Assignment is ``sha256(key + "\\x1f" + salt + "\\x1f" + unit_id)``; its first
8 bytes read as a big-endian integer divided by 2**64 give ``u`` in [0, 1),
and ``u < holdout_share`` means control. Any process, or another language,
reproduces it from the stored key and salt.

Outcomes, per exposed opportunity, from CRM data after the first exposure:

- ``stage_advanced``: 1 when a stage change moved it forward (to a stage of
  higher position that is not a lost stage) within ``window_days`` after
  exposure, else 0; units whose window has not yet ended are left out.
- ``win_rate``: 1 if won, 0 if lost, among those closed after exposure.
- ``cycle_time_days``: days from creation to close, among those won after
  exposure.

The CUPED covariate of every metric is the unit's stage velocity before
exposure: forward stage moves in the 30 days before the first exposure,
per week (moves * 7 / 30). It is fixed before assignment takes effect, so
adjusting by it cannot bias the effect, and units that move fast before an
intervention tend to move fast after it, which is the correlation CUPED
uses. Win rate and cycle time condition on closing, which the treatment
itself may change; read those two as descriptive next to ``stage_advanced``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.crm.models import Opportunity, OpportunityStatus, PipelineStage, StageChange
from waggle.governance import authorize, record_audit
from waggle.rules import stats
from waggle.rules.experiment_models import (
    Experiment,
    ExperimentExposure,
    ExperimentStatus,
)

logger = logging.getLogger(__name__)

RESOURCE = "experiments"
Arm = Literal["treatment", "control"]
TREATMENT: Arm = "treatment"
CONTROL: Arm = "control"
ARMS: tuple[Arm, Arm] = (TREATMENT, CONTROL)
PRE_PERIOD_DAYS = 30
ALPHA = 0.05
POWER = 0.8
_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is analysed and how its headline reads in each language."""

    kind: Literal["proportion", "mean"]
    name_zh: str
    name_en: str
    unit_zh: str
    unit_en: str
    more_zh: str
    less_zh: str
    more_en: str
    less_en: str
    scale: float


_RATE_WORDS: dict[str, Any] = {
    "kind": "proportion",
    "unit_zh": "个百分点",
    "unit_en": "percentage points",
    "more_zh": "高出",
    "less_zh": "低",
    "more_en": "higher",
    "less_en": "lower",
    "scale": 100.0,
}
METRICS: dict[str, MetricSpec] = {
    "stage_advanced": MetricSpec(
        name_zh="阶段推进率", name_en="stage-advance rate", **_RATE_WORDS
    ),
    "win_rate": MetricSpec(name_zh="赢单率", name_en="win rate", **_RATE_WORDS),
    "cycle_time_days": MetricSpec(
        kind="mean",
        name_zh="成交周期",
        name_en="sales cycle",
        unit_zh="天",
        unit_en="days",
        more_zh="长",
        less_zh="短",
        more_en="longer",
        less_en="shorter",
        scale=1.0,
    ),
}


def assign(
    experiment_key: str, unit_id: int, *, holdout_share: float, salt: str
) -> Arm:
    """Return the arm of ``unit_id``: the same answer in every process, forever.

    Raises:
        InvalidInput: ``holdout_share`` is outside [0, 1].
    """
    if not 0.0 <= holdout_share <= 1.0:
        raise InvalidInput(
            f"experiment {experiment_key}: holdout_share must be in [0, 1], "
            f"got {holdout_share}"
        )
    position = unit_position(experiment_key, unit_id, salt=salt)
    return CONTROL if position < holdout_share else TREATMENT


def unit_position(experiment_key: str, unit_id: int, *, salt: str) -> float:
    """Return the unit's hashed position in [0, 1) within the experiment."""
    material = "\x1f".join((experiment_key, salt, str(unit_id))).encode("utf-8")
    digest = hashlib.sha256(material).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm_of(experiment: Experiment, unit_id: int) -> Arm:
    """Return the arm ``experiment`` puts ``unit_id`` in."""
    return assign(
        experiment.key,
        unit_id,
        holdout_share=experiment.holdout_share,
        salt=experiment.salt,
    )


def should_act(arm: str) -> bool:
    """Return whether the rule's action runs for a unit in ``arm``.

    Raises:
        InvalidInput: ``arm`` is neither treatment nor control.
    """
    if arm not in ARMS:
        raise InvalidInput(f"experiment arm must be one of {ARMS}, got {arm!r}")
    return arm == TREATMENT


def running_experiment_for_rule(
    session: Session, rule_ref: str | int
) -> Experiment | None:
    """Return the running experiment of a rule, if any (engine plumbing, no audit)."""
    return session.scalar(
        select(Experiment).where(
            Experiment.rule_ref == str(rule_ref),
            Experiment.status == ExperimentStatus.RUNNING,
        )
    )


def running_experiment(session: Session, experiment_key: str) -> Experiment | None:
    """Return the running experiment ``experiment_key``, if any (engine plumbing)."""
    return session.scalar(
        select(Experiment).where(
            Experiment.key == experiment_key,
            Experiment.status == ExperimentStatus.RUNNING,
        )
    )


def record_exposure(
    session: Session,
    experiment: Experiment,
    unit_id: int,
    *,
    arm: str,
    at: dt.datetime,
    rule_id: str | int,
) -> ExperimentExposure:
    """Log that the rule would act on ``unit_id``; only the first exposure counts.

    A later call for the same unit returns the first exposure unchanged. This
    is the engine's bookkeeping, done inside the engine's transaction; people
    read exposures only through the audited report.

    Raises:
        InvalidInput: ``arm`` is not the unit's assigned arm, ``rule_id`` is not
            the experiment's rule, or ``at`` is naive.
        Conflict: the experiment is stopped.
    """
    _check_exposure(experiment, unit_id, arm=arm, at=at, rule_id=rule_id)
    existing = _exposure_of(session, experiment.id, unit_id)
    if existing is not None:
        return existing
    exposure = ExperimentExposure(
        experiment_id=experiment.id,
        unit_id=unit_id,
        arm=arm,
        rule_ref=str(rule_id),
        exposed_at=at,
    )
    try:
        # A concurrent worker may log the same unit first; the savepoint keeps
        # the caller's transaction usable and the first row wins.
        with session.begin_nested():
            session.add(exposure)
    except IntegrityError:
        first = _exposure_of(session, experiment.id, unit_id)
        if first is None:
            raise
        return first
    logger.debug(
        "experiment exposure logged",
        extra={"experiment": experiment.key, "opportunity_id": unit_id, "arm": arm},
    )
    return exposure


def expose(
    session: Session,
    experiment: Experiment,
    unit_id: int,
    *,
    at: dt.datetime,
    rule_id: str | int,
) -> Arm:
    """Assign ``unit_id``, log its exposure and return its arm.

    Raises:
        InvalidInput, Conflict: as :func:`record_exposure`.
    """
    arm = arm_of(experiment, unit_id)
    record_exposure(session, experiment, unit_id, arm=arm, at=at, rule_id=rule_id)
    return arm


def _check_exposure(
    experiment: Experiment,
    unit_id: int,
    *,
    arm: str,
    at: dt.datetime,
    rule_id: str | int,
) -> None:
    if experiment.status != ExperimentStatus.RUNNING:
        raise Conflict(
            f"experiment {experiment.key} is {experiment.status}; it logs no exposure",
            experiment=experiment.key,
        )
    if str(rule_id) != experiment.rule_ref:
        raise InvalidInput(
            f"experiment {experiment.key}: rule_id {rule_id!r} is not its rule "
            f"{experiment.rule_ref!r}"
        )
    if arm != arm_of(experiment, unit_id):
        raise InvalidInput(
            f"experiment {experiment.key}: opportunity {unit_id} is assigned to "
            f"{arm_of(experiment, unit_id)!r}, not {arm!r}"
        )
    if at.tzinfo is None:
        raise InvalidInput(f"experiment {experiment.key}: exposure time must be aware")


def _exposure_of(
    session: Session, experiment_id: int, unit_id: int
) -> ExperimentExposure | None:
    return session.scalar(
        select(ExperimentExposure).where(
            ExperimentExposure.experiment_id == experiment_id,
            ExperimentExposure.unit_id == unit_id,
        )
    )


# --- outcomes ---------------------------------------------------------------


@dataclass(frozen=True)
class UnitOutcome:
    """One exposed unit: its arm, its outcome (``None``: not measurable yet)."""

    unit_id: int
    arm: str
    exposed_at: dt.datetime
    value: float | None
    covariate: float


@dataclass(frozen=True)
class _Unit:
    unit_id: int
    arm: str
    exposed_at: dt.datetime
    status: str
    created_at: dt.datetime
    closed_at: dt.datetime | None


def unit_outcomes(
    session: Session, experiment: Experiment, *, as_of: dt.datetime
) -> list[UnitOutcome]:
    """Return the outcome and pre-period covariate of every exposed unit."""
    units = _exposed_units(session, experiment.id)
    moves = _forward_moves(session, experiment.id)
    window = dt.timedelta(days=experiment.window_days)
    return [
        UnitOutcome(
            unit_id=unit.unit_id,
            arm=unit.arm,
            exposed_at=unit.exposed_at,
            value=outcome_value(
                experiment.metric,
                exposed_at=unit.exposed_at,
                status=unit.status,
                created_at=unit.created_at,
                closed_at=unit.closed_at,
                forward_moves=moves.get(unit.unit_id, []),
                window=window,
                as_of=as_of,
            ),
            covariate=pre_period_velocity(
                moves.get(unit.unit_id, []), exposed_at=unit.exposed_at
            ),
        )
        for unit in units
    ]


def outcome_value(
    metric: str,
    *,
    exposed_at: dt.datetime,
    status: str,
    created_at: dt.datetime,
    closed_at: dt.datetime | None,
    forward_moves: Sequence[dt.datetime],
    window: dt.timedelta,
    as_of: dt.datetime,
) -> float | None:
    """Return one unit's outcome on ``metric``, ``None`` when it has none yet.

    Raises:
        InvalidInput: ``metric`` is unknown.
    """
    closed_after = closed_at is not None and closed_at >= exposed_at
    if metric == "stage_advanced":
        if exposed_at + window > as_of:
            return None
        end = exposed_at + window
        return 1.0 if any(exposed_at < at <= end for at in forward_moves) else 0.0
    if metric == "win_rate":
        if not closed_after or status not in (
            OpportunityStatus.WON,
            OpportunityStatus.LOST,
        ):
            return None
        return 1.0 if status == OpportunityStatus.WON else 0.0
    if metric == "cycle_time_days":
        if not closed_after or status != OpportunityStatus.WON or closed_at is None:
            return None
        return (closed_at - created_at).total_seconds() / 86400.0
    raise InvalidInput(f"experiment metric must be one of {sorted(METRICS)}: {metric}")


def pre_period_velocity(
    forward_moves: Sequence[dt.datetime], *, exposed_at: dt.datetime
) -> float:
    """Return forward stage moves per week in the 30 days before exposure."""
    start = exposed_at - dt.timedelta(days=PRE_PERIOD_DAYS)
    count = sum(1 for at in forward_moves if start <= at < exposed_at)
    return count * 7.0 / PRE_PERIOD_DAYS


def _exposed_units(session: Session, experiment_id: int) -> list[_Unit]:
    rows = session.execute(
        select(
            ExperimentExposure.unit_id,
            ExperimentExposure.arm,
            ExperimentExposure.exposed_at,
            Opportunity.status,
            Opportunity.created_at,
            Opportunity.closed_at,
        )
        .join(Opportunity, Opportunity.id == ExperimentExposure.unit_id)
        .where(ExperimentExposure.experiment_id == experiment_id)
        .order_by(ExperimentExposure.unit_id)
    )
    return [_Unit(*row) for row in rows]


def _forward_moves(
    session: Session, experiment_id: int
) -> dict[int, list[dt.datetime]]:
    source, target = aliased(PipelineStage), aliased(PipelineStage)
    rows = session.execute(
        select(StageChange.opportunity_id, StageChange.changed_at)
        .join(
            ExperimentExposure,
            ExperimentExposure.unit_id == StageChange.opportunity_id,
        )
        .join(source, source.id == StageChange.from_stage_id)
        .join(target, target.id == StageChange.to_stage_id)
        .where(
            ExperimentExposure.experiment_id == experiment_id,
            target.position > source.position,
            target.is_lost.is_(False),
        )
    )
    moves: dict[int, list[dt.datetime]] = defaultdict(list)
    for opportunity_id, changed_at in rows:
        moves[opportunity_id].append(changed_at)
    return dict(moves)


# --- the report ---------------------------------------------------------------


@dataclass(frozen=True)
class ArmStats:
    n: int
    mean: float | None
    variance: float | None


@dataclass(frozen=True)
class SampleSizePlan:
    """Units per arm needed to detect the MDE at ``power``, and how many to go."""

    minimum_detectable_effect: float
    alpha: float
    power: float
    required_treatment: int
    required_control: int
    remaining_treatment: int
    remaining_control: int


@dataclass(frozen=True)
class Sequential:
    """Whether this look is early, and the O'Brien–Fleming-type threshold."""

    planned_sample_size: int | None
    observed: int
    information_fraction: float | None
    is_early_look: bool
    alpha_spent: float | None
    z_boundary: float | None
    crosses_boundary: bool | None
    warning: dict[str, str] | None


@dataclass(frozen=True)
class CupedResult:
    theta: float
    correlation: float
    variance_ratio: float
    effect: stats.Effect


@dataclass(frozen=True)
class ExperimentReport:
    """Everything a reader needs to judge an experiment; ``as_dict`` is JSON."""

    experiment_key: str | None
    metric: str
    kind: str
    level: float
    treatment: ArmStats
    control: ArmStats
    effect: stats.Effect | None
    sample_size: SampleSizePlan | None
    sequential: Sequential
    cuped: CupedResult | None
    headline: dict[str, str]
    excluded: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-serialisable values (NaN as None)."""
        plain: dict[str, Any] = _plain(self)
        return plain


def build_report(
    treatment: Sequence[float],
    control: Sequence[float],
    *,
    metric: str,
    level: float = 0.95,
    minimum_detectable_effect: float | None = None,
    planned_sample_size: int | None = None,
    holdout_share: float = 0.5,
    treatment_covariate: Sequence[float] | None = None,
    control_covariate: Sequence[float] | None = None,
    experiment_key: str | None = None,
) -> ExperimentReport:
    """Analyse per-unit outcomes of both arms; pure, so testable without a DB.

    Proportion metrics take outcomes of 0 and 1. With fewer than 2 units in
    an arm the effect, CUPED and headline say there is not enough data.

    Raises:
        InvalidInput: unknown metric, bad level, non-binary proportion
            outcomes, or covariates that do not pair with the outcomes.
    """
    spec = _spec(metric)
    _check_binary(spec, treatment, control)
    summary_t, summary_c = stats.summarise(treatment), stats.summarise(control)
    enough = summary_t.n >= 2 and summary_c.n >= 2
    effect = _primary_effect(spec, treatment, control, level=level) if enough else None
    cuped = None
    if enough and treatment_covariate is not None and control_covariate is not None:
        cuped = _cuped(
            treatment, control, treatment_covariate, control_covariate, level=level
        )
    return ExperimentReport(
        experiment_key=experiment_key,
        metric=metric,
        kind=spec.kind,
        level=level,
        treatment=_arm(summary_t),
        control=_arm(summary_c),
        effect=effect,
        sample_size=_sample_size(
            spec, summary_t, summary_c, minimum_detectable_effect, holdout_share
        ),
        sequential=_sequential(effect, summary_t.n + summary_c.n, planned_sample_size),
        cuped=cuped,
        headline=headline(metric, effect, level=level),
    )


def _spec(metric: str) -> MetricSpec:
    if metric not in METRICS:
        raise InvalidInput(
            f"experiment metric must be one of {sorted(METRICS)}, got {metric!r}"
        )
    return METRICS[metric]


def _check_binary(
    spec: MetricSpec, treatment: Sequence[float], control: Sequence[float]
) -> None:
    if spec.kind == "proportion" and any(
        value not in (0, 1) for value in (*treatment, *control)
    ):
        raise InvalidInput("proportion metrics take outcomes of 0 or 1 only")


def _primary_effect(
    spec: MetricSpec,
    treatment: Sequence[float],
    control: Sequence[float],
    *,
    level: float,
) -> stats.Effect:
    if spec.kind == "proportion":
        return stats.proportion_difference(
            round(math.fsum(treatment)),
            len(treatment),
            round(math.fsum(control)),
            len(control),
            level=level,
        )
    return stats.welch_difference(
        stats.summarise(treatment), stats.summarise(control), level=level
    )


def _cuped(
    treatment: Sequence[float],
    control: Sequence[float],
    treatment_covariate: Sequence[float],
    control_covariate: Sequence[float],
    *,
    level: float,
) -> CupedResult | None:
    adjusted = stats.cuped_adjust(
        treatment,
        control,
        treatment_covariate=treatment_covariate,
        control_covariate=control_covariate,
    )
    if adjusted is None:
        return None
    raw = stats.welch_difference(
        stats.summarise(treatment), stats.summarise(control), level=level
    )
    effect = stats.welch_difference(
        stats.summarise(adjusted.adjusted_treatment),
        stats.summarise(adjusted.adjusted_control),
        level=level,
    )
    ratio = (
        effect.standard_error**2 / raw.standard_error**2 if raw.standard_error else 1.0
    )
    return CupedResult(adjusted.theta, adjusted.correlation, ratio, effect)


def _arm(summary: stats.Summary) -> ArmStats:
    if summary.n == 0:
        return ArmStats(0, None, None)
    return ArmStats(summary.n, summary.mean, summary.variance)


def _sample_size(
    spec: MetricSpec,
    treatment: stats.Summary,
    control: stats.Summary,
    minimum_detectable_effect: float | None,
    holdout_share: float,
) -> SampleSizePlan | None:
    # The plan uses the observed spread: the control rate for proportions,
    # each arm's variance for means; arms keep the design's allocation.
    if minimum_detectable_effect is None or treatment.n < 2 or control.n < 2:
        return None
    if not 0.0 < holdout_share < 1.0:
        return None
    ratio = (1.0 - holdout_share) / holdout_share
    if spec.kind == "proportion":
        target = control.mean + minimum_detectable_effect
        if not 0.0 < control.mean < 1.0 or not 0.0 < target < 1.0:
            return None
        needed = stats.sample_size_proportions(
            control.mean, target, alpha=ALPHA, power=POWER, ratio=ratio
        )
    else:
        needed = stats.sample_size_means(
            treatment.variance,
            control.variance,
            minimum_detectable_effect=minimum_detectable_effect,
            alpha=ALPHA,
            power=POWER,
            ratio=ratio,
        )
    return SampleSizePlan(
        minimum_detectable_effect=minimum_detectable_effect,
        alpha=ALPHA,
        power=POWER,
        required_treatment=needed[0],
        required_control=needed[1],
        remaining_treatment=max(0, needed[0] - treatment.n),
        remaining_control=max(0, needed[1] - control.n),
    )


def _sequential(
    effect: stats.Effect | None, observed: int, planned: int | None
) -> Sequential:
    if planned is None or planned <= 0:
        return Sequential(
            None, observed, None, True, None, None, None, _warning(None, None)
        )
    fraction = min(1.0, observed / planned)
    if fraction == 0.0:
        return Sequential(
            planned, observed, 0.0, True, 0.0, None, None, _warning(planned, None)
        )
    boundary = stats.obrien_fleming_boundary(fraction, alpha=ALPHA)
    spent = stats.obrien_fleming_alpha(fraction, alpha=ALPHA)
    crosses = None if effect is None else effect.p_value < spent
    is_early = fraction < 1.0
    return Sequential(
        planned_sample_size=planned,
        observed=observed,
        information_fraction=fraction,
        is_early_look=is_early,
        alpha_spent=spent,
        z_boundary=boundary,
        crosses_boundary=crosses,
        warning=_warning(planned, spent) if is_early else None,
    )


def _warning(planned: int | None, spent: float | None) -> dict[str, str]:
    if planned is None:
        return {
            "zh-CN": "未设定计划样本量：此 p 值不能作为提前停止实验的依据。",
            "en": "No planned sample size: this p-value is not valid for "
            "deciding to stop the experiment.",
        }
    threshold_zh = threshold_en = ""
    if spent is not None:
        threshold_zh = (
            f"若要提前停止，p 值须低于 {_p_text(spent)}（O'Brien–Fleming 边界）。"
        )
        threshold_en = (
            f" To stop early, p must fall below {_p_text(spent)} "
            "(O'Brien–Fleming boundary)."
        )
    return {
        "zh-CN": f"尚未达到计划样本量 {planned}："
        "中途查看时此 p 值不能作为停止实验的依据。" + threshold_zh,
        "en": f"The planned sample size of {planned} is not reached yet: this "
        "p-value is not valid for stopping the experiment at an interim look."
        + threshold_en,
    }


def headline(
    metric: str, effect: stats.Effect | None, *, level: float
) -> dict[str, str]:
    """Return the one-sentence result in zh-CN and en.

    Raises:
        InvalidInput: ``metric`` is unknown.
    """
    spec = _spec(metric)
    if effect is None:
        return {
            "zh-CN": f"{spec.name_zh}：数据不足，每组至少需要 2 个样本。",
            "en": f"{spec.name_en.capitalize()}: not enough data yet; each arm "
            "needs at least 2 units.",
        }
    size = abs(effect.absolute) * spec.scale
    low, high = effect.ci_low * spec.scale, effect.ci_high * spec.scale
    if effect.absolute < 0:
        low, high = -high, -low
    interval = f"{_number(low)}–{_number(high)}"
    level_text = f"{level * 100:g}%"
    p_text = _p_text(effect.p_value, prefix=True)
    if effect.absolute == 0:
        zh = f"处理组{spec.name_zh}与对照组持平"
        en = f"Treatment {spec.name_en} equals control"
    else:
        more = effect.absolute > 0
        zh = (
            f"处理组{spec.name_zh}{spec.more_zh if more else spec.less_zh} "
            f"{_number(size)} {spec.unit_zh}"
        )
        en = (
            f"Treatment {spec.name_en} is {_number(size)} {spec.unit_en} "
            f"{spec.more_en if more else spec.less_en}"
        )
    return {
        "zh-CN": f"{zh} ({level_text} 置信区间 {interval}, {p_text})",
        "en": f"{en} ({level_text} CI {interval}, {p_text})",
    }


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _p_text(p: float, *, prefix: bool = False) -> str:
    if p < 0.001:
        return "p<0.001" if prefix else "0.001"
    return f"p={p:.3f}" if prefix else f"{p:.3f}"


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return {
            name: _plain(getattr(value, name)) for name in value.__dataclass_fields__
        }
    return value


# --- governed services ------------------------------------------------------


def create_experiment(
    session: Session,
    actor: Actor,
    *,
    key: str,
    name: str,
    rule_ref: str | int,
    metric: str,
    holdout_share: float,
    window_days: int,
    planned_sample_size: int,
    minimum_detectable_effect: float,
    confidence_level: float = 0.95,
    salt: str | None = None,
) -> Experiment:
    """Start running a rule as an A/B test.

    ``holdout_share`` is the control share (0.2: one unit in five gets no
    intervention); ``planned_sample_size`` counts exposed units over both
    arms; ``minimum_detectable_effect`` is in the metric's own unit (a rate
    difference such as 0.05, or days). The salt defaults to a random one,
    fixed from then on.

    Raises:
        PolicyDenied: the actor may not create experiments.
        InvalidInput: a field is out of range (the message names it).
        Conflict: the key is taken, or the rule already runs an experiment.
    """
    authorize(session, actor, "create", RESOURCE)
    _check_plan(
        key=key,
        metric=metric,
        holdout_share=holdout_share,
        window_days=window_days,
        planned_sample_size=planned_sample_size,
        minimum_detectable_effect=minimum_detectable_effect,
        confidence_level=confidence_level,
    )
    _refuse_clash(session, key, str(rule_ref))
    experiment = Experiment(
        key=key,
        name=name,
        rule_ref=str(rule_ref),
        metric=metric,
        holdout_share=holdout_share,
        salt=salt if salt is not None else secrets.token_hex(8),
        window_days=window_days,
        planned_sample_size=planned_sample_size,
        minimum_detectable_effect=minimum_detectable_effect,
        confidence_level=confidence_level,
        status=ExperimentStatus.RUNNING,
        created_by=actor.username,
    )
    session.add(experiment)
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=RESOURCE,
        record_ids=[experiment.key],
        detail=f"rule {experiment.rule_ref}, metric {metric}, holdout {holdout_share}",
    )
    logger.info(
        "experiment created", extra={"experiment": key, "rule_id": experiment.rule_ref}
    )
    return experiment


def _check_plan(
    *,
    key: str,
    metric: str,
    holdout_share: float,
    window_days: int,
    planned_sample_size: int,
    minimum_detectable_effect: float,
    confidence_level: float,
) -> None:
    problems = [
        ("key", _KEY_PATTERN.match(key) is not None, "lower-case letters, digits, _.-"),
        ("metric", metric in METRICS, f"one of {sorted(METRICS)}"),
        ("holdout_share", 0.0 < holdout_share < 1.0, "strictly between 0 and 1"),
        ("window_days", 1 <= window_days <= 365, "1 to 365 days"),
        ("planned_sample_size", planned_sample_size >= 4, "at least 4 units"),
        ("minimum_detectable_effect", minimum_detectable_effect > 0, "above 0"),
        ("confidence_level", 0.5 <= confidence_level < 1.0, "in [0.5, 1)"),
    ]
    for field_name, is_valid, expected in problems:
        if not is_valid:
            raise InvalidInput(
                f"experiments.{field_name}: expected {expected}", field=field_name
            )


def _refuse_clash(session: Session, key: str, rule_ref: str) -> None:
    if session.scalar(select(Experiment.id).where(Experiment.key == key)):
        raise Conflict(f"experiment {key!r} already exists", experiment=key)
    running = running_experiment_for_rule(session, rule_ref)
    if running is not None:
        raise Conflict(
            f"rule {rule_ref!r} already runs experiment {running.key!r}",
            experiment=running.key,
        )


def list_experiments(
    session: Session, actor: Actor, *, status: str | None = None
) -> list[Experiment]:
    """Return experiments, newest first.

    Raises:
        PolicyDenied: the actor may not read experiments.
    """
    authorize(session, actor, "read", RESOURCE)
    query = select(Experiment).order_by(Experiment.id.desc())
    if status is not None:
        query = query.where(Experiment.status == status)
    experiments = list(session.scalars(query))
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[experiment.key for experiment in experiments],
    )
    return experiments


def stop_experiment(session: Session, actor: Actor, key: str) -> Experiment:
    """Stop an experiment: no more exposures, the report stays readable.

    Raises:
        PolicyDenied: the actor may not update experiments.
        NotFound: no experiment has that key.
        Conflict: it is already stopped.
    """
    authorize(session, actor, "update", RESOURCE)
    experiment = _experiment(session, key)
    if experiment.status != ExperimentStatus.RUNNING:
        raise Conflict(f"experiment {key!r} is already {experiment.status}")
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = now()
    record_audit(
        session,
        actor,
        action="update",
        resource=RESOURCE,
        record_ids=[key],
        detail="stopped",
    )
    return experiment


def experiment_report(
    session: Session, actor: Actor, key: str, *, as_of: dt.datetime | None = None
) -> ExperimentReport:
    """Compute the report of experiment ``key`` from CRM data up to ``as_of``.

    The report is aggregate only: it names no opportunity, so it covers every
    exposed unit whatever the reader's row scope.

    Raises:
        PolicyDenied: the actor may not read experiments.
        NotFound: no experiment has that key.
    """
    authorize(session, actor, "read", RESOURCE)
    experiment = _experiment(session, key)
    outcomes = unit_outcomes(session, experiment, as_of=as_of or now())
    measured = [outcome for outcome in outcomes if outcome.value is not None]
    by_arm = {arm: [o for o in measured if o.arm == arm] for arm in ARMS}
    report = build_report(
        [o.value for o in by_arm[TREATMENT] if o.value is not None],
        [o.value for o in by_arm[CONTROL] if o.value is not None],
        metric=experiment.metric,
        level=experiment.confidence_level,
        minimum_detectable_effect=experiment.minimum_detectable_effect,
        planned_sample_size=experiment.planned_sample_size,
        holdout_share=experiment.holdout_share,
        treatment_covariate=[o.covariate for o in by_arm[TREATMENT]],
        control_covariate=[o.covariate for o in by_arm[CONTROL]],
        experiment_key=experiment.key,
    )
    excluded: dict[str, int] = {
        arm: sum(1 for o in outcomes if o.arm == arm and o.value is None)
        for arm in ARMS
    }
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[key],
        detail=f"report over {len(measured)} measured units",
    )
    return replace(report, excluded=excluded)


def _experiment(session: Session, key: str) -> Experiment:
    experiment = session.scalar(select(Experiment).where(Experiment.key == key))
    if experiment is None:
        raise NotFound(f"experiment {key!r} does not exist", experiment=key)
    return experiment
