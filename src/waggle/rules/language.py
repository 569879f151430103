"""The rule language: what a business user writes, in YAML or as JSON over the API.

A rule has a key (the unit its state is kept per: an opportunity, an account
or a rep), one pattern under ``when`` and a list of actions under ``then``::

    key: price-objections
    name: {zh-CN: 一周三次价格异议, en: Three price objections in a week}
    per: opportunity
    when:
      count:
        of: {type: tracker_hit, category: objection, speaker: customer}
        within: 7d
        at_least: 3
    then:
      - notify: {to: owner, channel: inapp}
      - escalate: {to: manager}

Patterns (exactly one):

``match``        every event that passes the filter (stateless);
``count``        a windowed aggregate per key: count, sum of a field or distinct
                 values of a field, compared with ``at_least`` / ``at_most``;
``consecutive``  the last ``times`` events of a kind all satisfied a condition;
``absence``      an ``after`` event not followed by an ``expect`` event within a
                 deadline (optionally in business hours), firing at the deadline;
``sequence``     events matching each step in order, within a window;
``change``       a numeric field (a score) dropped or rose by an amount.

A filter names event types and conditions. Conditions map a field path to a
value (equality) or to an operator: ``{gte: 100000}``, ``{in: [a, b]}``,
``{empty: true}``, ``{contains: 报价}``. Paths start with ``event.``,
``opportunity.``, ``account.``, ``contact.`` or ``rep.`` (see :data:`FIELDS`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from waggle.rules.errors import RuleInvalid

KeyKind = Literal["opportunity", "account", "rep"]
OPERATORS = frozenset(
    {
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "not_in",
        "contains",
        "empty",
        "exists",
    }
)
# Fields a condition may name, with their type, for validation and for the
# editor's autocompletion. ``event.<name>`` also reaches any attribute.
FIELDS: dict[str, str] = {
    "event.type": "text",
    "event.channel": "text",
    "event.speaker": "text",
    "event.source": "text",
    "event.category": "text",
    "event.tracker": "text",
    "event.is_negated": "bool",
    "event.is_question": "bool",
    "event.is_automatic": "bool",
    "event.text": "text",
    "event.field": "text",
    "event.value": "any",
    "event.to_stage": "text",
    "event.from_stage": "text",
    "event.duration_seconds": "number",
    "event.duration_minutes": "number",
    "event.pages_viewed": "number",
    "event.contact_id": "number",
    "event.decision_role": "text",
    "opportunity.amount": "number",
    "opportunity.stage": "text",
    "opportunity.stage_position": "number",
    "opportunity.status": "text",
    "opportunity.forecast_category": "text",
    "opportunity.source": "text",
    "opportunity.expected_close_on": "date",
    "opportunity.currency": "text",
    "account.industry": "text",
    "account.size": "text",
    "account.province": "text",
    "account.city": "text",
    "account.region": "text",
    "contact.decision_role": "text",
    "contact.title": "text",
    "rep.department": "text",
    "rep.region": "text",
    "rep.title": "text",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$")
_ISO_DURATION = TypeAdapter(dt.timedelta)
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str | int | float) -> dt.timedelta:
    """Read ``30m``, ``72h``, ``7d`` or ``2w`` (a bare number is seconds).

    Raises:
        ValueError: any other shape.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=float(value))
    if isinstance(value, str) and value.startswith("P"):
        return _ISO_DURATION.validate_python(value)  # ISO 8601, as JSON writes it
    found = _DURATION.match(str(value))
    if found is None:
        raise ValueError(f"{value!r} is not a duration such as 30m, 72h, 7d or 2w")
    return dt.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EventFilter(_Model):
    """Which events count: types, and conditions that must all hold."""

    type: list[str] = Field(default_factory=list)
    category: str | None = None
    speaker: Literal["rep", "customer"] | None = None
    channel: str | None = None
    negated: bool | None = None
    where: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("where")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path, test in value.items():
            check_condition(path, test)
        return value


def check_condition(path: str, test: Any) -> None:
    """Refuse a condition on an unknown field or with an unknown operator.

    Raises:
        ValueError: naming the field or the operator.
    """
    namespace, _, name = path.partition(".")
    if (
        namespace not in {"event", "opportunity", "account", "contact", "rep"}
        or not name
    ):
        raise ValueError(
            f"field {path!r}: expected event.*, opportunity.*, account.*, "
            "contact.* or rep.*"
        )
    if namespace != "event" and path not in FIELDS:
        known = ", ".join(sorted(f for f in FIELDS if f.startswith(namespace)))
        raise ValueError(f"field {path!r} is unknown; {namespace} has {known}")
    if isinstance(test, dict):
        unknown = set(test) - OPERATORS
        if unknown:
            raise ValueError(
                f"field {path!r}: unknown operator {sorted(unknown)[0]!r}; "
                f"expected one of {', '.join(sorted(OPERATORS))}"
            )


class Duration(_Model):
    seconds: float


def _duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    return parse_duration(value)


class CountPattern(_Model):
    of: EventFilter
    within: dt.timedelta | None = None
    at_least: float | None = None
    at_most: float | None = None
    distinct: str | None = None
    sum: str | None = None
    on: EventFilter | None = None

    _window = field_validator("within", mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )

    @model_validator(mode="after")
    def _bounded(self) -> CountPattern:
        if self.at_least is None and self.at_most is None:
            raise ValueError("count needs at_least or at_most")
        if self.distinct and self.sum:
            raise ValueError("count takes distinct or sum, not both")
        if self.at_most is not None and self.on is None:
            raise ValueError(
                "count with at_most needs on: the event at which to check it "
                "(a count that stays low never arrives by itself)"
            )
        return self


class ConsecutivePattern(_Model):
    of: EventFilter
    all: dict[str, Any]
    times: int = Field(ge=2)

    @field_validator("all")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path, test in value.items():
            check_condition(path, test)
        return value


class AbsencePattern(_Model):
    after: EventFilter
    expect: EventFilter
    within: dt.timedelta
    business_hours: bool = False
    restart: bool = False

    _window = field_validator("within", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class SequencePattern(_Model):
    steps: list[EventFilter] = Field(min_length=2)
    within: dt.timedelta

    _window = field_validator("within", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class ChangePattern(_Model):
    of: EventFilter
    field: str
    drop_by: float | None = None
    rise_by: float | None = None
    within: dt.timedelta

    _window = field_validator("within", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )

    @model_validator(mode="after")
    def _direction(self) -> ChangePattern:
        if (self.drop_by is None) == (self.rise_by is None):
            raise ValueError("change needs exactly one of drop_by or rise_by")
        return self


class When(_Model):
    match: EventFilter | None = None
    count: CountPattern | None = None
    consecutive: ConsecutivePattern | None = None
    absence: AbsencePattern | None = None
    sequence: SequencePattern | None = None
    change: ChangePattern | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> When:
        given = [name for name in PATTERN_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"when needs exactly one of {', '.join(PATTERN_KINDS)}; got "
                f"{', '.join(given) or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in PATTERN_KINDS if getattr(self, name) is not None)

    @property
    def pattern(self) -> Any:
        return getattr(self, self.kind)


PATTERN_KINDS = ("match", "count", "consecutive", "absence", "sequence", "change")
Recipient = str  # owner | manager | user:<username> | employee:<external id>
ChannelName = Literal["inapp", "wecom", "wecom_robot", "dingtalk", "feishu", "email"]


class Notify(_Model):
    to: Recipient = "owner"
    channel: ChannelName = "inapp"
    message: dict[str, str] | None = None  # per locale, with {placeholders}


class Escalate(_Model):
    to: Recipient = "manager"
    channel: ChannelName = "inapp"
    message: dict[str, str] | None = None


class Recommend(_Model):
    kind: str | None = None  # case_study, deck, price_sheet ...
    match: tuple[Literal["industry", "product", "stage"], ...] = ("industry", "stage")
    to: Recipient = "owner"


class CreateTask(_Model):
    title: dict[str, str]
    due_in: dt.timedelta = dt.timedelta(days=1)
    assignee: Recipient = "owner"

    _due = field_validator("due_in", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class SetField(_Model):
    field: Literal["forecast_category", "manual_probability", "customer_pain_points"]
    value: Any


class Webhook(_Model):
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT"] = "POST"


class Action(_Model):
    notify: Notify | None = None
    escalate: Escalate | None = None
    recommend: Recommend | None = None
    create_task: CreateTask | None = None
    set_field: SetField | None = None
    webhook: Webhook | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Action:
        given = [name for name in ACTION_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an action is exactly one of {', '.join(ACTION_KINDS)}; got "
                f"{', '.join(given) or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in ACTION_KINDS if getattr(self, name) is not None)


ACTION_KINDS = (
    "notify",
    "escalate",
    "recommend",
    "create_task",
    "set_field",
    "webhook",
)


class Throttle(_Model):
    at_most: int = Field(default=1, ge=1)
    every: dt.timedelta = dt.timedelta(days=1)

    _every = field_validator("every", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class QuietHours(_Model):
    start: dt.time
    end: dt.time
    timezone: str = "Asia/Shanghai"


class ExperimentSpec(_Model):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$")
    holdout: float = Field(default=0.2, gt=0, lt=1)


class Rule(_Model):
    """One rule as written."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", max_length=80)
    name: dict[str, str]
    description: dict[str, str] = Field(default_factory=dict)
    per: KeyKind = "opportunity"
    enabled: bool = True
    when: When
    then: list[Action] = Field(default_factory=list)
    throttle: Throttle = Field(default_factory=Throttle)
    quiet_hours: QuietHours | None = None
    experiment: ExperimentSpec | None = None

    @field_validator("name", "description", mode="before")
    @classmethod
    def _localised(cls, value: Any) -> Any:
        return {"zh-CN": value, "en": value} if isinstance(value, str) else value


def parse_rule(data: Any, *, source: str = "rule") -> Rule:
    """Validate one rule given as parsed YAML or JSON.

    Raises:
        RuleInvalid: the message names the place and what was expected.
    """
    try:
        return Rule.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "rule"
        raise RuleInvalid(
            f"{source}: {where}: {first['msg']}",
            problems=[
                {
                    "field": ".".join(str(part) for part in error["loc"]),
                    "message": error["msg"],
                }
                for error in exc.errors()
            ],
        ) from exc


class _RuleLoader(yaml.SafeLoader):
    """A safe loader where only true/false are booleans.

    YAML 1.1 reads ``on``, ``off``, ``yes`` and ``no`` as booleans, which would
    turn a count's ``on:`` key into ``True``.
    """


_RuleLoader.yaml_implicit_resolvers = {
    first: [
        (tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RuleLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_rules_text(text: str, *, source: str = "rules.yaml") -> list[Rule]:
    """Read one rule, a list of rules, or ``{rules: [...]}`` from YAML text.

    Raises:
        RuleInvalid: not YAML, or a rule is invalid (named by its position).
    """
    try:
        data = yaml.load(text, Loader=_RuleLoader)  # noqa: S506  # a SafeLoader
    except yaml.YAMLError as exc:
        raise RuleInvalid(f"{source}: not valid YAML ({exc})") from exc
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    items = data if isinstance(data, list) else [data]
    rules = [
        parse_rule(item, source=f"{source} rule {number}")
        for number, item in enumerate(items, start=1)
    ]
    keys = [rule.key for rule in rules]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise RuleInvalid(f"{source}: rule key {duplicated[0]!r} appears twice")
    return rules


def rule_to_data(rule: Rule) -> dict[str, Any]:
    """Return the rule as plain JSON-ready data (durations as ``72h`` strings)."""
    data: dict[str, Any] = _plain(rule.model_dump(mode="python", exclude_none=True))
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return value


def format_duration(value: dt.timedelta) -> str:
    """Write a duration in the largest unit that divides it (``7d``, ``72h``)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(seconds)


__all__ = [
    "ACTION_KINDS",
    "FIELDS",
    "PATTERN_KINDS",
    "Action",
    "EventFilter",
    "Rule",
    "When",
    "format_duration",
    "load_rules_text",
    "parse_duration",
    "parse_rule",
    "rule_to_data",
]
