"""Stage gates: the conditions an opportunity must meet to enter a stage.

A gate file (YAML, edited by business users; see ``default_gates.yaml``) names
one pipeline and, per stage key, the conditions that must all hold before an
opportunity may enter that stage: an opportunity field that is filled, at
least a number or equal to a value; a count of behaviour events of the
opportunity (meetings held, a customer talking about price); or at least *n*
different kinds of such evidence.

Which stages a move must pass:

- a move forwards enters every stage after the current one up to and
  including the target, so skipping stages needs the skipped stages'
  conditions too (a deal cannot jump from 线索确认 to 赢单 past 方案确认);
- a move backwards, or to the lost stage, is never gated;
- a deal reopened from the lost stage starts again from the first stage.

The gates are installed on a session factory (:func:`install_stage_gates`),
so that every session it makes, whether from the API, the web board or an
import, judges moves by the same file. The file is read again whenever its
modification time or size changes, so an edited gate takes effect without a
restart; an edit that breaks the file refuses forward moves with the file's
error until it is fixed (backward moves still go through).

Each failed condition gives one reason, in Chinese and English at once
(``缺少客户痛点 (customer pain points missing)``), since the crm layer has no
locale; a condition's ``reason`` replaces the generated wording.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.db import Money
from waggle.core.errors import InvalidInput
from waggle.crm.models import Opportunity, Pipeline, PipelineStage
from waggle.crm.service import register_stage_gate
from waggle.signals.events import EventType
from waggle.signals.models import BehaviourEvent

logger = logging.getLogger(__name__)

SHIPPED_GATES_FILE = Path(__file__).with_name("default_gates.yaml")
INFO_KEY = "waggle.rules.stage_gates"
KEY_PATTERN = r"^[a-z0-9_]{1,60}$"

Wording = tuple[str, str]  # (zh-CN, en)


# The gate file --------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Label(_Strict):
    """A text in both languages of the UI."""

    zh_cn: str = Field(alias="zh-CN", min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)

    @property
    def wording(self) -> Wording:
        return self.zh_cn, self.en


class Evidence(_Strict):
    """Behaviour events of the opportunity to count: one event type or tracker."""

    event_type: str | None = None
    tracker_category: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,40}$")
    speaker: Literal["rep", "customer"] | None = None
    at_least: int = Field(default=1, ge=1)
    label: Label | None = None

    @field_validator("event_type")
    @classmethod
    def _known_event_type(cls, value: str | None) -> str | None:
        if value == EventType.TRACKER_HIT:
            raise ValueError("count tracker hits with tracker_category, not event_type")
        if value is not None and value not in set(EventType):
            raise ValueError(
                f"{value!r} is not an event type; expected one of "
                + ", ".join(sorted(set(EventType) - {EventType.TRACKER_HIT}))
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.event_type is None) == (self.tracker_category is None):
            raise ValueError("name exactly one of event_type or tracker_category")
        return self

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        return self.event_type, self.tracker_category, self.speaker


class FieldCondition(_Strict):
    """An opportunity field that must be filled, at least a number, or a value."""

    field: str
    filled: Literal[True] | None = None
    at_least: Decimal | None = None
    equals: bool | int | float | str | None = None
    reason: Label | None = None

    @field_validator("field")
    @classmethod
    def _opportunity_field(cls, value: str) -> str:
        if value not in Opportunity.__table__.columns:
            raise ValueError(f"{value!r} is not an opportunity field")
        return value

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        tests = [self.filled, self.at_least, self.equals]
        if sum(test is not None for test in tests) != 1:
            raise ValueError("give exactly one of filled: true, at_least or equals")
        kind = _field_kind(self.field)
        if self.at_least is not None and kind != "number":
            raise ValueError(f"at_least needs a number field; {self.field} is not one")
        if self.equals is not None and not _comparable(kind, self.equals):
            raise ValueError(
                f"equals {self.equals!r} does not fit {self.field} ({kind} field); "
                "equals works on yes/no, number and text fields"
            )
        return self


class EvidenceCondition(_Strict):
    """At least so many behaviour events of one kind."""

    evidence: Evidence
    reason: Label | None = None


class EvidenceKinds(_Strict):
    at_least: int = Field(ge=1)
    of: list[Evidence] = Field(min_length=1)

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.at_least > len(self.of):
            raise ValueError(
                f"at_least {self.at_least} asks for more kinds than the "
                f"{len(self.of)} listed"
            )
        return self


class EvidenceKindsCondition(_Strict):
    """At least *n* of the listed kinds of evidence present."""

    evidence_kinds: EvidenceKinds
    reason: Label | None = None


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((key for key in CONDITION_TAGS if key in value), None)
    if isinstance(value, FieldCondition):
        return "field"
    if isinstance(value, EvidenceCondition):
        return "evidence"
    return "evidence_kinds" if isinstance(value, EvidenceKindsCondition) else None


CONDITION_TAGS = ("field", "evidence_kinds", "evidence")
Condition = Annotated[
    Annotated[FieldCondition, Tag("field")]
    | Annotated[EvidenceCondition, Tag("evidence")]
    | Annotated[EvidenceKindsCondition, Tag("evidence_kinds")],
    Discriminator(
        _condition_tag,
        custom_error_type="unknown_condition",
        custom_error_message="a condition names field, evidence or evidence_kinds",
    ),
]


class StageConditions(_Strict):
    label: Label | None = None
    conditions: list[Condition] = Field(min_length=1)


class GateFile(_Strict):
    """One pipeline's gates: the hard conditions of entering each stage."""

    pipeline: str = Field(pattern=KEY_PATTERN)
    stages: dict[Annotated[str, Field(pattern=KEY_PATTERN)], StageConditions]


def _field_kind(name: str) -> str:
    column = Opportunity.__table__.columns[name]
    if isinstance(column.type, Money):
        return "number"
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return "other"
    if python_type is bool:
        return "yes/no"
    if python_type in (int, float, Decimal):
        return "number"
    return "text" if python_type is str else "other"


def _comparable(kind: str, expected: object) -> bool:
    if kind == "yes/no":
        return isinstance(expected, bool)
    if kind == "number":
        return isinstance(expected, int | float) and not isinstance(expected, bool)
    return kind == "text" and isinstance(expected, str)


def parse_gate_file(document: Any, *, origin: str) -> GateFile:
    """Validate a gate document.

    Raises:
        InvalidInput: the message names ``origin``, the stage, the condition
            and the field at fault.
    """
    try:
        return GateFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInput(
            f"{origin}: {_where(first['loc'])}: {message}", code="invalid_stage_gates"
        ) from exc


def _where(location: tuple[int | str, ...]) -> str:
    """Say where in the file an error is: ``stage solution, condition 2, at_least``."""
    parts = list(location)
    said: list[str] = []
    if len(parts) >= 2 and parts[0] == "stages":
        said.append(f"stage {parts[1]}")
        parts = parts[2:]
        if len(parts) >= 2 and parts[0] == "conditions" and isinstance(parts[1], int):
            said.append(f"condition {parts[1] + 1}")
            parts = parts[2:]
            if parts and parts[0] in CONDITION_TAGS:
                parts = parts[1:]  # the union's tag, not a key of the file
    if parts:
        said.append(".".join(str(part) for part in parts))
    return ", ".join(said) or "the document"


def load_gate_file(path: Path) -> GateFile:
    """Read and validate a gate file.

    Raises:
        InvalidInput: the file cannot be read, is not YAML, or is invalid.
    """
    origin = f"stage gate file {path}"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{origin}: not a readable YAML file ({exc})") from exc
    return parse_gate_file(document, origin=origin)


class GateSource:
    """A gate file and the version last read from it; re-read when it changes."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._gates: GateFile | None = None

    def current(self) -> GateFile:
        """Return the file's gates, reading it again if it changed since.

        Raises:
            InvalidInput: the file is gone, unreadable or invalid.
        """
        stamp = self._stamp_now()
        with self._lock:
            if self._gates is None or stamp != self._stamp:
                self._gates = load_gate_file(self.path)
                self._stamp = stamp
                logger.info(
                    "stage gates loaded",
                    extra={"path": str(self.path), "stages": len(self._gates.stages)},
                )
            return self._gates

    def _stamp_now(self) -> tuple[int, int]:
        try:
            status = self.path.stat()
        except OSError as exc:
            raise InvalidInput(
                f"stage gate file {self.path}: cannot be read ({exc.strerror})"
            ) from exc
        return status.st_mtime_ns, status.st_size


# Installing -----------------------------------------------------------------

_registered = False
_register_lock = threading.Lock()


def install_stage_gates(sessions: sessionmaker[Session], path: Path | None) -> None:
    """Judge stage moves made in ``sessions``' sessions by the gate file at ``path``.

    ``None`` removes the gates from the factory. The file is read at once, so
    that a bad file stops start-up, and again whenever it changes.

    Raises:
        InvalidInput: the file is unreadable or invalid.
    """
    info = dict(sessions.kw.get("info") or {})
    info.pop(INFO_KEY, None)
    if path is not None:
        source = GateSource(path)
        source.current()
        info[INFO_KEY] = source
    sessions.configure(info=info)
    _register()


def _register() -> None:
    global _registered
    with _register_lock:
        if not _registered:
            register_stage_gate(stage_gate)
            _registered = True


def stage_gate(
    session: Session, opportunity: Opportunity, stage: PipelineStage
) -> list[str]:
    """Return why ``opportunity`` may not enter ``stage`` (the crm stage gate).

    The opportunity is still in its current stage. Sessions from a factory
    without installed gates are never refused.

    Raises:
        InvalidInput: the installed gate file is broken or names stages the
            pipeline does not have.
    """
    source = session.info.get(INFO_KEY)
    if not isinstance(source, GateSource):
        return []
    entered = stages_entered(session, opportunity, stage)
    if not entered:
        return []
    return gate_reasons(session, opportunity, entered, gates=source.current())


# Judging --------------------------------------------------------------------


def stages_entered(
    session: Session, opportunity: Opportunity, target: PipelineStage
) -> list[PipelineStage]:
    """Return the stages a move to ``target`` enters, in order, ending in it.

    Empty for a move backwards, to the same stage or to the lost stage.
    """
    if target.is_lost:
        return []
    current = session.get(PipelineStage, opportunity.stage_id)
    start = -1 if current is None or current.is_lost else current.position
    if target.position <= start:
        return []
    stages = session.scalars(
        select(PipelineStage)
        .where(
            PipelineStage.pipeline_id == target.pipeline_id,
            PipelineStage.position > start,
            PipelineStage.position <= target.position,
            PipelineStage.is_lost.is_(False),
        )
        .order_by(PipelineStage.position)
    )
    return list(stages)


def gate_reasons(
    session: Session,
    opportunity: Opportunity,
    entered: list[PipelineStage],
    *,
    gates: GateFile,
) -> list[str]:
    """Return one reason per failed condition of the stages in ``entered``.

    ``entered`` ends with the target stage; reasons of the stages before it
    (skipped stages) name their stage.

    Raises:
        InvalidInput: ``gates`` names a stage its pipeline does not have.
    """
    target = entered[-1]
    pipeline = session.get(Pipeline, target.pipeline_id)
    if pipeline is None or pipeline.key != gates.pipeline:
        return []
    _check_stage_keys(gates, pipeline)
    counter = _EvidenceCounter(session, opportunity.id)
    reasons = []
    for stage in entered:
        spec = gates.stages.get(stage.key)
        if spec is None:
            continue
        for condition in spec.conditions:
            failure = _judge(condition, opportunity, counter)
            if failure is not None:
                skipped = None if stage is target else _stage_label(stage, spec)
                reasons.append(_bilingual(failure, skipped))
    return reasons


def _check_stage_keys(gates: GateFile, pipeline: Pipeline) -> None:
    stages = {stage.key: stage for stage in pipeline.stages}
    for key in gates.stages:
        stage = stages.get(key)
        if stage is None or stage.is_lost:
            usable = ", ".join(s.key for s in pipeline.stages if not s.is_lost)
            raise InvalidInput(
                f"stage gates of pipeline {pipeline.key}: stage {key!r} cannot be "
                f"gated; expected one of {usable}",
                code="invalid_stage_gates",
            )


def _judge(
    condition: FieldCondition | EvidenceCondition | EvidenceKindsCondition,
    opportunity: Opportunity,
    counter: _EvidenceCounter,
) -> Wording | None:
    if isinstance(condition, FieldCondition):
        failure = _judge_field(condition, getattr(opportunity, condition.field, None))
    elif isinstance(condition, EvidenceCondition):
        failure = _judge_evidence(condition.evidence, counter)
    else:
        failure = _judge_kinds(condition.evidence_kinds, counter)
    if failure is None or condition.reason is None:
        return failure
    return condition.reason.wording


def _judge_field(condition: FieldCondition, value: object) -> Wording | None:
    zh, en = FIELD_LABELS.get(condition.field, (condition.field, condition.field))
    if condition.filled:
        return None if _is_filled(value) else (f"缺少{zh}", f"{en} missing")
    if condition.at_least is not None:
        limit, number = condition.at_least, _number(value)
        if number is not None and number >= limit:
            return None
        return f"{zh}至少为 {_plain(limit)}", f"{en} must be at least {_plain(limit)}"
    expected = condition.equals
    if _equals(value, expected):
        return None
    shown_zh, shown_en = _shown(expected)
    return f"{zh}须为{shown_zh}", f"{en} must be {shown_en}"


def _judge_evidence(evidence: Evidence, counter: _EvidenceCounter) -> Wording | None:
    have = counter.count(evidence)
    if have >= evidence.at_least:
        return None
    zh, en = _evidence_label(evidence)
    return (
        f"至少需要 {evidence.at_least} 次{zh}，目前 {have} 次",
        f"at least {evidence.at_least} × {en} needed, {have} so far",
    )


def _judge_kinds(kinds: EvidenceKinds, counter: _EvidenceCounter) -> Wording | None:
    missing = [item for item in kinds.of if counter.count(item) < item.at_least]
    have = len(kinds.of) - len(missing)
    if have >= kinds.at_least:
        return None
    labels = [_evidence_label(item) for item in missing]
    return (
        f"至少需要 {kinds.at_least} 类证据，目前 {have} 类；缺少："
        + "、".join(zh for zh, _ in labels),
        f"at least {kinds.at_least} kinds of evidence needed, {have} so far; "
        "missing: " + ", ".join(en for _, en in labels),
    )


class _EvidenceCounter:
    """Counts the opportunity's behaviour events, once per kind of evidence."""

    def __init__(self, session: Session, opportunity_id: int):
        self.session = session
        self.opportunity_id = opportunity_id
        self._counts: dict[tuple[str | None, str | None, str | None], int] = {}

    def count(self, evidence: Evidence) -> int:
        if evidence.key not in self._counts:
            self._counts[evidence.key] = self._count(evidence)
        return self._counts[evidence.key]

    def _count(self, evidence: Evidence) -> int:
        conditions = [BehaviourEvent.opportunity_id == self.opportunity_id]
        if evidence.speaker is not None:
            conditions.append(BehaviourEvent.speaker == evidence.speaker)
        if evidence.event_type is not None:
            statement = (
                select(func.count())
                .select_from(BehaviourEvent)
                .where(BehaviourEvent.event_type == evidence.event_type, *conditions)
            )
            return self.session.scalar(statement) or 0
        # Attributes are JSON text on both backends, so the category is read
        # here; a message with several hits of one category counts once.
        hits = self.session.execute(
            select(
                BehaviourEvent.id, BehaviourEvent.parent_id, BehaviourEvent.attributes
            ).where(BehaviourEvent.event_type == EventType.TRACKER_HIT, *conditions)
        )
        return len(
            {
                parent_id or event_id
                for event_id, parent_id, attributes in hits
                if attributes.get("category") == evidence.tracker_category
                and not attributes.get("is_negated")
            }
        )


# Wording --------------------------------------------------------------------

FIELD_LABELS: dict[str, Wording] = {
    "name": ("商机名称", "name"),
    "amount": ("商机金额", "amount"),
    "currency": ("币种", "currency"),
    "expected_close_on": ("预计成交日期", "expected close date"),
    "owner_id": ("负责人", "owner"),
    "source": ("来源", "source"),
    "loss_reason": ("输单原因", "loss reason"),
    "forecast_category": ("预测类别", "forecast category"),
    "manual_probability": ("手动赢率", "manual probability"),
    "customer_pain_points": ("客户痛点", "customer pain points"),
    "decision_maker_contact_id": ("决策人", "decision maker"),
    "budget_confirmed": ("预算已确认", "budget confirmed"),
}
EVENT_LABELS: dict[str, Wording] = {
    EventType.CHAT_MESSAGE: ("聊天消息", "chat message"),
    EventType.CALL: ("通话", "call"),
    EventType.EMAIL_SENT: ("发给客户的邮件", "email sent"),
    EventType.EMAIL_RECEIVED: ("客户来信", "email from the customer"),
    EventType.MEETING_HELD: ("会议", "meeting held"),
    EventType.MEETING_MINUTES: ("会议纪要", "meeting minutes"),
    EventType.FIELD_VISIT: ("拜访", "field visit"),
    EventType.MATERIAL_OPENED: ("客户查看资料", "material opened"),
    EventType.QUOTE_SENT: ("报价单", "quote sent"),
    EventType.TRIAL_STARTED: ("试用", "trial started"),
    EventType.STAGE_CHANGE: ("阶段变更", "stage change"),
    EventType.CRM_FIELD_UPDATE: ("字段更新", "CRM field update"),
    EventType.TASK_COMPLETED: ("完成的任务", "completed task"),
    EventType.SERVICE_TICKET: ("服务工单", "service ticket"),
    EventType.ACTIVITY_LOGGED: ("跟进记录", "logged activity"),
}
CATEGORY_LABELS: dict[str, Wording] = {
    "pricing": ("价格", "pricing"),
    "trial": ("试用", "trial"),
    "tender": ("招投标", "tender"),
    "competitor": ("竞争对手", "competitors"),
    "objection": ("异议", "objections"),
    "budget": ("预算", "budget"),
    "procurement": ("采购流程", "procurement"),
    "legal": ("合同与法务", "legal terms"),
    "decision_maker": ("决策人", "the decision maker"),
}
SPEAKER_LABELS: dict[str | None, Wording] = {
    "customer": ("客户", "customer"),
    "rep": ("销售", "rep"),
    None: ("", ""),
}


def _evidence_label(evidence: Evidence) -> Wording:
    if evidence.label is not None:
        return evidence.label.wording
    who_zh, who_en = SPEAKER_LABELS[evidence.speaker]
    if evidence.event_type is not None:
        zh, en = EVENT_LABELS[evidence.event_type]
        return f"{who_zh}{zh}", f"{en} ({who_en})" if who_en else en
    category = evidence.tracker_category or ""
    zh, en = CATEGORY_LABELS.get(category, (category, category))
    return f"{who_zh}谈及{zh}", f"{who_en or 'any'} talk about {en}"


def _stage_label(stage: PipelineStage, spec: StageConditions) -> Wording:
    return spec.label.wording if spec.label else (stage.name, stage.name_en)


def _bilingual(wording: Wording, stage: Wording | None) -> str:
    zh, en = wording
    if stage is not None:
        zh, en = f"「{stage[0]}」{zh}", f"{stage[1]}: {en}"
    return f"{zh} ({en})"


def _is_filled(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return value not in (None, False, 0)


def _number(value: object) -> Decimal | None:
    """Return ``value`` as a number; a service caller may pass amounts as text."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _equals(value: object, expected: object) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(value, bool) and value is expected
    if isinstance(expected, int | float):
        number = _number(value)
        return number is not None and number == Decimal(str(expected))
    return value == expected


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


def _shown(expected: object) -> Wording:
    if isinstance(expected, bool):
        return ("是", "yes") if expected else ("否", "no")
    return str(expected), str(expected)


__all__ = [
    "SHIPPED_GATES_FILE",
    "Evidence",
    "GateFile",
    "GateSource",
    "gate_reasons",
    "install_stage_gates",
    "load_gate_file",
    "parse_gate_file",
    "stage_gate",
    "stages_entered",
]
