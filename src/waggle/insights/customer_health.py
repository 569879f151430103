"""Customer health: renewal and churn risk of accounts from 37 signals.

Each signal is computed per account as of an instant from behaviour events
(chats, e-mails, calls, meetings, visits, service tickets, tracker hits,
materials) and CRM records (won and lost opportunities stand for orders,
contacts for the decision chain); nothing after ``as_of`` is read. Windows
count back from ``as_of``; ``recent`` and ``window`` days and the hour limits
come from the thresholds file. A "days since" signal is 365 when nothing
happened in the year read. Tracker signals count hits in what the customer
said (not negated). Trend signals are ratios of the recent window to
the one before it (None when the earlier one is empty); a None signal never
fires a rule.

Signals that are always zero for lack of a source in the data model:

- ``web_form_submissions_90d``: Waggle has no web-form connector or table yet;
- ``negative_sentiment_hits_90d``: counts tracker hits of the ``sentiment``
  or ``complaint`` categories, which the shipped tracker dictionaries do not
  declare (a company that adds them gets the signal);
- ticket response times use the ticket's ``first_response_hours`` attribute
  when the ticketing system sends it, else the wait until the rep's next
  message, e-mail or call on the account.

The risk rules live in YAML (:file:`customer_health_default.yaml`, or the file
named by ``WAGGLE_CUSTOMER_HEALTH_FILE``): business users change thresholds
and weights without code. The risk score is the weight of the fired rules
over the weight of all rules, 0-100; health is 100 minus the risk. Each fired
rule is a reason worded in zh-CN and en with its weight, e.g.
``续约风险升高: 过去3次服务单响应超24小时, 权重32%``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import math
import operator
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Text, select, type_coerce, update
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import as_utc, now
from waggle.core.errors import InvalidInput, NotFound
from waggle.crm.models import Account, Contact, DecisionRole, Opportunity
from waggle.governance import authorize, ensure_in_scope, record_audit, row_filter
from waggle.insights.forecast_models import CustomerHealthScore
from waggle.signals.events import EventType
from waggle.signals.models import BehaviourEvent

logger = logging.getLogger(__name__)

CUSTOMER_HEALTH = "customer_health"
THRESHOLDS_ENV = "WAGGLE_CUSTOMER_HEALTH_FILE"
DEFAULT_FILE = "customer_health_default.yaml"
LOOKBACK_DAYS = 365
HALF_YEAR = 180
CHUNK = 900
RISKS = {"renewal": ("续约风险", "Renewal risk"), "churn": ("流失风险", "Churn risk")}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
DEFAULT_PARAMETERS = {
    "slow_ticket_hours": 24.0,
    "reply_wait_hours": 24.0,
    "recent_days": 30.0,
    "window_days": 90.0,
}
_REP_TOUCHES = frozenset(
    {
        EventType.CALL,
        EventType.EMAIL_SENT,
        EventType.MEETING_HELD,
        EventType.FIELD_VISIT,
        EventType.QUOTE_SENT,
        EventType.TRIAL_STARTED,
        EventType.ACTIVITY_LOGGED,
    }
)
_WITH_ATTRIBUTES = frozenset({EventType.TRACKER_HIT, EventType.SERVICE_TICKET})
_CLOSED_TICKET = frozenset({"resolved", "closed", "done"})

# (key, source, zh-CN, en)
SIGNALS: tuple[tuple[str, str, str, str], ...] = (
    (
        "days_since_customer_reply",
        "chat/email",
        "距客户上次回复天数",
        "days since the customer last replied",
    ),
    (
        "days_since_rep_touch",
        "chat/email/call",
        "距销售上次触达天数",
        "days since the rep last reached out",
    ),
    (
        "customer_messages_30d",
        "chat/email",
        "近30天客户消息数",
        "customer messages, recent window",
    ),
    (
        "customer_messages_prior_30d",
        "chat/email",
        "前30天客户消息数",
        "customer messages, window before",
    ),
    (
        "customer_message_trend",
        "chat/email",
        "客户消息趋势(近/前)",
        "customer message trend (recent / before)",
    ),
    (
        "rep_messages_30d",
        "chat/email",
        "近30天销售消息数",
        "rep messages, recent window",
    ),
    (
        "unanswered_customer_messages_30d",
        "chat/email",
        "近30天未及时回复的客户消息",
        "customer messages left unanswered",
    ),
    (
        "customer_response_hours_90d",
        "chat/email",
        "客户回复时长中位数(小时)",
        "median customer reply time (h)",
    ),
    (
        "rep_response_hours_90d",
        "chat/email",
        "销售回复时长中位数(小时)",
        "median rep reply time (h)",
    ),
    (
        "emails_received_90d",
        "email",
        "近90天收到客户邮件数",
        "customer e-mails received",
    ),
    (
        "active_contacts_90d",
        "all events",
        "近90天互动联系人数",
        "contacts who took part",
    ),
    (
        "days_since_decision_maker",
        "all events",
        "距决策人上次参与天数",
        "days since a decision maker took part",
    ),
    ("calls_30d", "call", "近30天通话数", "calls, recent window"),
    ("meetings_90d", "meeting", "近90天会议数", "meetings held"),
    ("visits_90d", "visit", "近90天拜访数", "field visits"),
    ("touches_30d", "all touches", "近30天销售触达数", "rep touches, recent window"),
    ("touch_trend", "all touches", "触达趋势(近/前)", "touch trend (recent / before)"),
    ("tickets_90d", "service ticket", "近90天服务单数", "service tickets"),
    ("open_tickets", "service ticket", "未解决服务单数", "service tickets still open"),
    (
        "high_priority_tickets_90d",
        "service ticket",
        "近90天高优先级服务单",
        "high-priority tickets",
    ),
    (
        "slow_ticket_responses_last3",
        "service ticket",
        "最近3张服务单中响应超时的张数",
        "slow answers among the last 3 tickets",
    ),
    (
        "ticket_response_hours_last3",
        "service ticket",
        "最近3张服务单响应时长中位数(小时)",
        "median answer time of the last 3 tickets (h)",
    ),
    (
        "ticket_trend",
        "service ticket",
        "服务单趋势(近/前)",
        "ticket trend (recent / before)",
    ),
    ("objection_hits_90d", "tracker", "近90天异议次数", "objections raised"),
    (
        "competitor_mentions_90d",
        "tracker",
        "近90天提及竞争对手次数",
        "competitor mentions",
    ),
    ("pricing_mentions_90d", "tracker", "近90天提及价格次数", "pricing mentions"),
    ("budget_mentions_90d", "tracker", "近90天提及预算次数", "budget mentions"),
    (
        "negative_sentiment_hits_90d",
        "tracker (no default source)",
        "近90天负面情绪次数",
        "negative sentiment hits",
    ),
    ("orders_365d", "won opportunities", "近一年成交单数", "orders won in a year"),
    ("order_amount_365d", "won opportunities", "近一年成交额", "amount won in a year"),
    (
        "order_amount_trend",
        "won opportunities",
        "成交额趋势(近半年/前半年)",
        "won amount trend (6 months / 6 before)",
    ),
    (
        "days_since_last_order",
        "won opportunities",
        "距上次成交天数",
        "days since the last order",
    ),
    ("lost_deals_180d", "lost opportunities", "近半年丢单数", "deals lost in 6 months"),
    ("open_opportunities", "opportunities", "在途商机数", "open opportunities"),
    (
        "overdue_open_opportunities",
        "opportunities",
        "逾期未关闭商机数",
        "open deals past their close date",
    ),
    (
        "materials_opened_90d",
        "tracked materials",
        "近90天打开资料次数",
        "materials opened",
    ),
    (
        "web_form_submissions_90d",
        "web forms (no source yet)",
        "近90天网页表单提交",
        "web form submissions",
    ),
)
SIGNAL_KEYS = frozenset(key for key, *_ in SIGNALS)


# --------------------------------------------------------------------------
# Thresholds


@dataclass(frozen=True)
class Rule:
    """One warning sign: fires when ``signal op value``."""

    id: str
    signal: str
    op: str
    value: float
    weight: float
    risk: str
    text: dict[str, str]

    def fires(self, figure: float | None) -> bool:
        return figure is not None and OPERATORS[self.op](figure, self.value)


@dataclass(frozen=True)
class Thresholds:
    """The parsed thresholds file: parameters, risk levels and rules."""

    source: str
    parameters: dict[str, float]
    high: float
    medium: float
    rules: tuple[Rule, ...]

    @property
    def total_weight(self) -> float:
        return sum(rule.weight for rule in self.rules)


def load_thresholds(path: Path | None = None) -> Thresholds:
    """Load the thresholds from ``path``, the file in the environment, or the default.

    Raises:
        InvalidInput: the file is missing, is not YAML, or breaks the shape
            (the message names the file, the entry and what was expected).
    """
    chosen = path or (Path(v) if (v := os.environ.get(THRESHOLDS_ENV)) else None)
    if chosen is None:
        text = package_files.files("waggle.insights").joinpath(DEFAULT_FILE)
        return parse_thresholds(text.read_text(encoding="utf-8"), source=DEFAULT_FILE)
    try:
        content = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"customer health thresholds {chosen}: cannot be read"
        ) from exc
    return parse_thresholds(content, source=str(chosen))


def parse_thresholds(text: str, *, source: str = "thresholds") -> Thresholds:
    """Parse and check a thresholds document.

    Raises:
        InvalidInput: not YAML, or an entry breaks the documented shape.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise InvalidInput(
            f"{source}: expected a mapping with parameters, levels, rules"
        )
    _refuse_unknown(source, "", document, {"parameters", "levels", "rules"})
    parameters = _parameters(source, document.get("parameters") or {})
    high, medium = _levels(source, document.get("levels") or {})
    rules = _rules(source, document.get("rules"), parameters)
    return Thresholds(source, parameters, high, medium, rules)


def _refuse_unknown(
    source: str, where: str, entry: Mapping[str, Any], known: set[str]
) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise InvalidInput(
            f"{source}: {where}{unknown[0]}: unknown key (expected one of "
            f"{', '.join(sorted(known))})"
        )


def _number(source: str, where: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{source}: {where}: {value!r} is not a number")
    if positive and value <= 0:
        raise InvalidInput(f"{source}: {where}: {value!r} must be above 0")
    return float(value)


def _parameters(source: str, entry: object) -> dict[str, float]:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{source}: parameters: expected a mapping")
    _refuse_unknown(source, "parameters.", entry, set(DEFAULT_PARAMETERS))
    found = dict(DEFAULT_PARAMETERS)
    for key, value in entry.items():
        found[key] = _number(source, f"parameters.{key}", value, positive=True)
    return found


def _levels(source: str, entry: object) -> tuple[float, float]:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{source}: levels: expected a mapping with high and medium")
    _refuse_unknown(source, "levels.", entry, {"high", "medium"})
    high = _number(source, "levels.high", entry.get("high", 50))
    medium = _number(source, "levels.medium", entry.get("medium", 25))
    if not 0 <= medium < high <= 100:
        raise InvalidInput(
            f"{source}: levels: expected 0 <= medium < high <= 100, "
            f"got medium {medium:g}, high {high:g}"
        )
    return high, medium


def _rules(
    source: str, entry: object, parameters: dict[str, float]
) -> tuple[Rule, ...]:
    if not isinstance(entry, list) or not entry:
        raise InvalidInput(f"{source}: rules: expected a non-empty list of rules")
    rules = tuple(
        _rule(source, index, item, parameters) for index, item in enumerate(entry)
    )
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.id in seen:
            raise InvalidInput(
                f"{source}: rules[{index}].id: {rule.id!r} is used twice"
            )
        seen.add(rule.id)
    return rules


def _rule(source: str, index: int, item: object, parameters: dict[str, float]) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{source}: {where}: expected a mapping")
    known = {"id", "signal", "op", "value", "weight", "risk", "text"}
    _refuse_unknown(source, f"{where}.", item, known)
    missing = sorted(known - set(item))
    if missing:
        raise InvalidInput(f"{source}: {where}.{missing[0]}: missing")
    if item["signal"] not in SIGNAL_KEYS:
        raise InvalidInput(
            f"{source}: {where}.signal: {item['signal']!r} is not a known signal "
            "(see `waggle insights customer-health --signals`)"
        )
    if item["op"] not in OPERATORS:
        raise InvalidInput(
            f"{source}: {where}.op: {item['op']!r} is not one of {', '.join(OPERATORS)}"
        )
    if item["risk"] not in RISKS:
        raise InvalidInput(
            f"{source}: {where}.risk: {item['risk']!r} is not renewal or churn"
        )
    rule = Rule(
        id=str(item["id"]),
        signal=str(item["signal"]),
        op=str(item["op"]),
        value=_number(source, f"{where}.value", item["value"]),
        weight=_number(source, f"{where}.weight", item["weight"], positive=True),
        risk=str(item["risk"]),
        text=_text(source, where, item["text"]),
    )
    for locale in ("zh-CN", "en"):
        try:
            _fill(rule, locale, rule.value, parameters)
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInput(
                f"{source}: {where}.text.{locale}: unknown placeholder {exc} "
                "(use {value}, {threshold}, {threshold_percent} or a parameter)"
            ) from exc
    return rule


def _text(source: str, where: str, entry: object) -> dict[str, str]:
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(locale), str) and entry.get(locale)
        for locale in ("zh-CN", "en")
    ):
        raise InvalidInput(f"{source}: {where}.text: expected zh-CN and en sentences")
    return {"zh-CN": entry["zh-CN"], "en": entry["en"]}


def _fill(
    rule: Rule, locale: str, figure: float, parameters: Mapping[str, float]
) -> str:
    values = {key: _figure(value) for key, value in parameters.items()}
    if rule.signal.startswith("days_since"):
        figure = float(math.floor(figure))  # "40 days", not "40.37 days"
    values |= {
        "hours": _figure(parameters["slow_ticket_hours"]),
        "value": _figure(figure),
        "threshold": _figure(rule.value),
        "threshold_percent": _figure(rule.value * 100),
    }
    return rule.text[locale].format(**values)


def _figure(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}".rstrip("0")


# --------------------------------------------------------------------------
# Scores


@dataclass(frozen=True)
class Reason:
    """A fired rule as the manager reads it."""

    rule_id: str
    signal: str
    risk: str
    value: float
    weight_percent: int
    text: dict[str, str]

    def line(self, locale: str) -> str:
        """Return e.g. ``续约风险升高: 过去3次服务单响应超24小时, 权重32%``."""
        zh, en = RISKS[self.risk]
        if locale == "zh-CN":
            return f"{zh}升高: {self.text['zh-CN']}, 权重{self.weight_percent}%"
        return f"{en} up: {self.text['en']}, weight {self.weight_percent}%"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "signal": self.signal,
            "risk": self.risk,
            "value": self.value,
            "weight_percent": self.weight_percent,
            "text": dict(self.text),
            "line": {locale: self.line(locale) for locale in ("zh-CN", "en")},
        }


@dataclass(frozen=True)
class AccountHealth:
    """One account's signals, risk score, health and reasons."""

    account_id: int
    name: str
    owner_id: int | None
    signals: dict[str, float | None]
    risk: int
    level: str
    reasons: list[Reason] = field(default_factory=list)

    @property
    def health(self) -> int:
        return 100 - self.risk


def judge(
    signals: Mapping[str, float | None], thresholds: Thresholds
) -> tuple[int, str, list[Reason]]:
    """Return the risk score, its level and the reasons (heaviest first)."""
    total = thresholds.total_weight
    reasons = [
        Reason(
            rule_id=rule.id,
            signal=rule.signal,
            risk=rule.risk,
            value=float(figure),
            weight_percent=round(100 * rule.weight / total),
            text={
                locale: _fill(rule, locale, float(figure), thresholds.parameters)
                for locale in ("zh-CN", "en")
            },
        )
        for rule in thresholds.rules
        if (figure := signals.get(rule.signal)) is not None and rule.fires(figure)
    ]
    fired = sum(
        rule.weight
        for rule in thresholds.rules
        if rule.id in {r.rule_id for r in reasons}
    )
    risk = round(100 * fired / total)
    level = (
        "high"
        if risk >= thresholds.high
        else "medium"
        if risk >= thresholds.medium
        else "low"
    )
    reasons.sort(key=lambda reason: (-reason.weight_percent, reason.rule_id))
    return risk, level, reasons


def assess_accounts(
    session: Session,
    actor: Actor,
    account_ids: Sequence[int] | None = None,
    *,
    as_of: dt.datetime | None = None,
    thresholds: Thresholds | None = None,
) -> list[AccountHealth]:
    """Return the health of the accounts (default: every one the actor sees).

    Accounts outside the actor's scope are left out; merged accounts too.

    Raises:
        PolicyDenied: the actor may not read customer health.
        InvalidInput: the configured thresholds file is invalid.
    """
    scope = authorize(session, actor, "read", CUSTOMER_HEALTH)
    thresholds = thresholds or load_thresholds()
    as_of = as_utc(as_of or now())
    query = select(Account.id, Account.name, Account.owner_id).where(
        row_filter(session, actor, scope, Account.owner_id),
        Account.merged_into_id.is_(None),
    )
    if account_ids is not None:
        query = query.where(Account.id.in_(list(account_ids)))
    accounts = list(session.execute(query.order_by(Account.id)))
    found: list[AccountHealth] = []
    for start in range(0, len(accounts), CHUNK):
        chunk = accounts[start : start + CHUNK]
        signals = compute_signals(
            session,
            [row[0] for row in chunk],
            as_of=as_of,
            parameters=thresholds.parameters,
        )
        for account_id, name, owner_id in chunk:
            risk, level, reasons = judge(signals[account_id], thresholds)
            found.append(
                AccountHealth(
                    account_id,
                    name,
                    owner_id,
                    signals[account_id],
                    risk,
                    level,
                    reasons,
                )
            )
    record_audit(
        session,
        actor,
        action="read",
        resource=CUSTOMER_HEALTH,
        record_ids=[item.account_id for item in found],
        detail=f"thresholds {thresholds.source}",
    )
    logger.debug("customer health assessed", extra={"accounts": len(found)})
    return found


def account_health(
    session: Session,
    actor: Actor,
    account_id: int,
    *,
    as_of: dt.datetime | None = None,
    thresholds: Thresholds | None = None,
) -> AccountHealth:
    """Return one account's health.

    Raises:
        PolicyDenied: the actor may not read customer health, or the account
            lies outside their scope.
        NotFound: the account does not exist.
    """
    scope = authorize(session, actor, "read", CUSTOMER_HEALTH)
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    if account.merged_into_id is not None:
        raise NotFound(
            f"account {account_id} was merged into account "
            f"{account.merged_into_id}; its health is that account's"
        )
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=account.owner_id,
        action="read",
        resource=CUSTOMER_HEALTH,
        record_id=account_id,
    )
    found = assess_accounts(
        session, actor, [account_id], as_of=as_of, thresholds=thresholds
    )
    return found[0]


@dataclass(frozen=True)
class StoredHealth:
    """The latest stored snapshot of the accounts in scope, and when it was made."""

    as_of: dt.datetime
    thresholds: str
    items: list[AccountHealth]


def store_customer_health(
    session: Session,
    actor: Actor,
    *,
    as_of: dt.datetime | None = None,
    thresholds: Thresholds | None = None,
) -> int:
    """Compute and store the health of every account in scope; return the count.

    The new snapshot becomes each account's latest; older ones are kept.

    Raises:
        PolicyDenied: the actor may not update customer health.
        InvalidInput: the configured thresholds file is invalid.
    """
    authorize(session, actor, "update", CUSTOMER_HEALTH)
    thresholds = thresholds or load_thresholds()
    as_of = as_utc(as_of or now())
    items = assess_accounts(session, actor, as_of=as_of, thresholds=thresholds)
    ids = [item.account_id for item in items]
    for start in range(0, len(ids), CHUNK):
        session.execute(
            update(CustomerHealthScore)
            .where(
                CustomerHealthScore.account_id.in_(ids[start : start + CHUNK]),
                CustomerHealthScore.is_latest.is_(True),
            )
            .values(is_latest=False)
        )
    session.add_all(_snapshot(item, as_of, thresholds.source) for item in items)
    session.flush()
    record_audit(
        session,
        actor,
        action="update",
        resource=CUSTOMER_HEALTH,
        record_ids=ids,
        detail=f"stored as of {as_of.isoformat()}; thresholds {thresholds.source}",
    )
    logger.info("customer health stored", extra={"accounts": len(items)})
    return len(items)


def _snapshot(
    item: AccountHealth, as_of: dt.datetime, source: str
) -> CustomerHealthScore:
    return CustomerHealthScore(
        account_id=item.account_id,
        owner_id=item.owner_id,
        risk=item.risk,
        health=item.health,
        level=item.level,
        reasons=[reason.as_dict() for reason in item.reasons],
        signals=dict(item.signals),
        thresholds=source[-300:],
        as_of=as_of,
        computed_at=now(),
        is_latest=True,
    )


def latest_customer_health(session: Session, actor: Actor) -> StoredHealth | None:
    """Return the latest stored snapshot of the accounts in scope (None: never run).

    Raises:
        PolicyDenied: the actor may not read customer health.
    """
    scope = authorize(session, actor, "read", CUSTOMER_HEALTH)
    rows = session.execute(
        select(CustomerHealthScore, Account.name, Account.owner_id)
        .join(Account, Account.id == CustomerHealthScore.account_id)
        .where(
            CustomerHealthScore.is_latest.is_(True),
            row_filter(session, actor, scope, Account.owner_id),
        )
        .order_by(CustomerHealthScore.account_id)
    ).all()
    if not rows:
        return None
    items = [_from_snapshot(score, name, owner_id) for score, name, owner_id in rows]
    record_audit(
        session,
        actor,
        action="read",
        resource=CUSTOMER_HEALTH,
        record_ids=[item.account_id for item in items],
        detail="stored snapshot",
    )
    newest = max(rows, key=lambda row: row[0].as_of)[0]
    return StoredHealth(newest.as_of, newest.thresholds, items)


def _from_snapshot(
    score: CustomerHealthScore, name: str, owner_id: int | None
) -> AccountHealth:
    reasons = [
        Reason(
            rule_id=str(entry["rule_id"]),
            signal=str(entry["signal"]),
            risk=str(entry["risk"]),
            value=float(entry["value"]),  # type: ignore[arg-type]
            weight_percent=int(entry["weight_percent"]),  # type: ignore[call-overload]
            text=dict(entry["text"]),  # type: ignore[call-overload]
        )
        for entry in score.reasons
    ]
    signals = {
        key: None if value is None else float(value)  # type: ignore[arg-type]
        for key, value in score.signals.items()
    }
    return AccountHealth(
        score.account_id, name, owner_id, signals, score.risk, score.level, reasons
    )


def distribution(items: Iterable[AccountHealth], *, width: int = 10) -> list[int]:
    """Count accounts per health band of ``width`` points (0-9, ..., 90-100)."""
    bands = [0] * (100 // width)
    for item in items:
        bands[min(item.health // width, len(bands) - 1)] += 1
    return bands


# --------------------------------------------------------------------------
# Signals


@dataclass(frozen=True, slots=True)
class _Event:
    type: str
    at: dt.datetime
    speaker: str | None
    contact_id: int | None
    attributes: dict[str, Any]

    @property
    def is_customer_message(self) -> bool:
        return self.type == EventType.EMAIL_RECEIVED or (
            self.type == EventType.CHAT_MESSAGE and self.speaker == "customer"
        )

    @property
    def is_rep_message(self) -> bool:
        return self.type == EventType.EMAIL_SENT or (
            self.type == EventType.CHAT_MESSAGE and self.speaker == "rep"
        )

    @property
    def is_rep_touch(self) -> bool:
        return self.is_rep_message or self.type in _REP_TOUCHES

    def tracker(self) -> str | None:
        """Return the category of a hit the customer said (not the rep), if any."""
        if self.type != EventType.TRACKER_HIT or self.speaker == "rep":
            return None
        if self.attributes.get("is_negated"):
            return None
        category = self.attributes.get("category")
        return str(category) if category else None


@dataclass(frozen=True, slots=True)
class _Deal:
    status: str
    amount: Decimal
    closed_at: dt.datetime | None
    expected_close_on: dt.date | None


def compute_signals(
    session: Session,
    account_ids: Sequence[int],
    *,
    as_of: dt.datetime,
    parameters: Mapping[str, float] | None = None,
) -> dict[int, dict[str, float | None]]:
    """Return the 37 signals of each account as of ``as_of``, by account id.

    Reads without a policy check: callers check the policy and scope first.
    """
    parameters = {**DEFAULT_PARAMETERS, **(parameters or {})}
    events = _events(session, account_ids, as_of)
    deals = _deals(session, account_ids, as_of)
    deciders = _decision_makers(session, account_ids)
    return {
        account_id: _signals(
            events.get(account_id, []),
            deals.get(account_id, []),
            deciders.get(account_id, set()),
            as_of,
            parameters,
        )
        for account_id in account_ids
    }


def _events(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, list[_Event]]:
    # Attributes are read as text and parsed only where a signal needs them
    # (tracker hits, tickets): parsing every event's JSON doubles the time.
    rows = session.execute(
        select(
            BehaviourEvent.account_id,
            BehaviourEvent.event_type,
            BehaviourEvent.occurred_at,
            BehaviourEvent.speaker,
            BehaviourEvent.contact_id,
            type_coerce(BehaviourEvent.attributes, Text),
        )
        .where(
            BehaviourEvent.account_id.in_(list(ids)),
            BehaviourEvent.occurred_at <= as_of,
            BehaviourEvent.occurred_at > as_of - dt.timedelta(days=LOOKBACK_DAYS),
        )
        .order_by(BehaviourEvent.occurred_at, BehaviourEvent.id)
    )
    found: dict[int, list[_Event]] = defaultdict(list)
    for account_id, kind, at, speaker, contact_id, raw in rows:
        assert account_id is not None  # selected by account
        attributes = json.loads(raw) if raw and kind in _WITH_ATTRIBUTES else {}
        found[account_id].append(_Event(kind, at, speaker, contact_id, attributes))
    return found


def _deals(
    session: Session, ids: Sequence[int], as_of: dt.datetime
) -> dict[int, list[_Deal]]:
    rows = session.execute(
        select(
            Opportunity.account_id,
            Opportunity.status,
            Opportunity.amount,
            Opportunity.closed_at,
            Opportunity.expected_close_on,
        ).where(Opportunity.account_id.in_(list(ids)), Opportunity.created_at <= as_of)
    )
    found: dict[int, list[_Deal]] = defaultdict(list)
    for account_id, status, amount, closed_at, close_on in rows:
        closed = as_utc(closed_at) if closed_at is not None else None
        if closed is not None and closed > as_of:
            status, closed = "open", None  # seen as it stood at as_of
        found[account_id].append(_Deal(status, amount, closed, close_on))
    return found


def _decision_makers(session: Session, ids: Sequence[int]) -> dict[int, set[int]]:
    rows = session.execute(
        select(Contact.account_id, Contact.id).where(
            Contact.account_id.in_(list(ids)),
            Contact.decision_role == DecisionRole.DECISION_MAKER,
        )
    )
    found: dict[int, set[int]] = defaultdict(set)
    for account_id, contact_id in rows:
        found[account_id].add(contact_id)
    return found


def _signals(
    events: list[_Event],
    deals: list[_Deal],
    deciders: set[int],
    as_of: dt.datetime,
    parameters: Mapping[str, float],
) -> dict[str, float | None]:
    recent = dt.timedelta(days=parameters["recent_days"])
    window = dt.timedelta(days=parameters["window_days"])
    found: dict[str, float | None] = {}
    found |= _conversation_signals(events, as_of, recent, window, parameters)
    found |= _touch_signals(events, deciders, as_of, recent, window)
    found |= _ticket_signals(events, as_of, recent, window, parameters)
    found |= _tracker_signals(events, as_of, window)
    found |= _order_signals(deals, as_of)
    found["materials_opened_90d"] = _count(
        events, as_of, window, lambda e: e.type == EventType.MATERIAL_OPENED
    )
    found["web_form_submissions_90d"] = 0.0
    return {key: found[key] for key, *_ in SIGNALS}


def _count(
    events: Iterable[_Event],
    end: dt.datetime,
    span: dt.timedelta,
    keep: Callable[[_Event], bool],
) -> float:
    return float(sum(1 for e in events if end - span < e.at <= end and keep(e)))


def _trend(recent: float, before: float) -> float | None:
    return None if before == 0 else recent / before


def _days_since(
    events: Iterable[_Event], as_of: dt.datetime, keep: Callable[[_Event], bool]
) -> float:
    times = [e.at for e in events if keep(e)]
    if not times:
        return float(LOOKBACK_DAYS)
    return round((as_of - max(times)).total_seconds() / 86_400, 2)


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _conversation_signals(
    events: list[_Event],
    as_of: dt.datetime,
    recent: dt.timedelta,
    window: dt.timedelta,
    parameters: Mapping[str, float],
) -> dict[str, float | None]:
    customer = lambda e: e.is_customer_message  # noqa: E731
    now_count = _count(events, as_of, recent, customer)
    before = _count(events, as_of - recent, recent, customer)
    customer_waits, rep_waits = _reply_waits(
        [
            e
            for e in events
            if as_of - window < e.at and (e.is_customer_message or e.is_rep_message)
        ]
    )
    return {
        "days_since_customer_reply": _days_since(events, as_of, customer),
        "days_since_rep_touch": _days_since(events, as_of, lambda e: e.is_rep_touch),
        "customer_messages_30d": now_count,
        "customer_messages_prior_30d": before,
        "customer_message_trend": _trend(now_count, before),
        "rep_messages_30d": _count(events, as_of, recent, lambda e: e.is_rep_message),
        "unanswered_customer_messages_30d": float(
            _unanswered(events, as_of, recent, parameters)
        ),
        "customer_response_hours_90d": _median(customer_waits),
        "rep_response_hours_90d": _median(rep_waits),
        "emails_received_90d": _count(
            events, as_of, window, lambda e: e.type == EventType.EMAIL_RECEIVED
        ),
    }


def _reply_waits(messages: Sequence[_Event]) -> tuple[list[float], list[float]]:
    """Waits from the first message of one side's run to the other side's answer."""
    customer_waits: list[float] = []
    rep_waits: list[float] = []
    run_start: _Event | None = None
    for message in messages:
        if (
            run_start is None
            or run_start.is_customer_message == message.is_customer_message
        ):
            run_start = run_start or message
            continue
        hours = (message.at - run_start.at).total_seconds() / 3600
        (rep_waits if run_start.is_customer_message else customer_waits).append(hours)
        run_start = message
    return customer_waits, rep_waits


def _unanswered(
    events: Sequence[_Event],
    as_of: dt.datetime,
    recent: dt.timedelta,
    parameters: Mapping[str, float],
) -> int:
    wait = dt.timedelta(hours=parameters["reply_wait_hours"])
    answers = [e.at for e in events if e.is_rep_message]  # events come sorted
    count = 0
    for message in events:
        if not (
            message.is_customer_message and as_of - recent < message.at <= as_of - wait
        ):
            continue
        after = bisect.bisect_right(answers, message.at)
        if after == len(answers) or answers[after] > message.at + wait:
            count += 1
    return count


def _touch_signals(
    events: list[_Event],
    deciders: set[int],
    as_of: dt.datetime,
    recent: dt.timedelta,
    window: dt.timedelta,
) -> dict[str, float | None]:
    touches = _count(events, as_of, recent, lambda e: e.is_rep_touch)
    before = _count(events, as_of - recent, recent, lambda e: e.is_rep_touch)
    contacts = {
        e.contact_id
        for e in events
        if e.contact_id is not None and as_of - window < e.at
    }
    return {
        "active_contacts_90d": float(len(contacts)),
        "days_since_decision_maker": _days_since(
            events, as_of, lambda e: e.contact_id in deciders
        ),
        "calls_30d": _count(events, as_of, recent, lambda e: e.type == EventType.CALL),
        "meetings_90d": _count(
            events, as_of, window, lambda e: e.type == EventType.MEETING_HELD
        ),
        "visits_90d": _count(
            events, as_of, window, lambda e: e.type == EventType.FIELD_VISIT
        ),
        "touches_30d": touches,
        "touch_trend": _trend(touches, before),
    }


def _ticket_signals(
    events: list[_Event],
    as_of: dt.datetime,
    recent: dt.timedelta,
    window: dt.timedelta,
    parameters: Mapping[str, float],
) -> dict[str, float | None]:
    tickets = [e for e in events if e.type == EventType.SERVICE_TICKET]
    answers = [e.at for e in events if e.is_rep_message or e.type == EventType.CALL]
    last3 = [_ticket_hours(t, answers, as_of) for t in tickets[-3:]]
    is_ticket = lambda e: e.type == EventType.SERVICE_TICKET  # noqa: E731
    now_count = _count(events, as_of, recent, is_ticket)
    return {
        "tickets_90d": _count(events, as_of, window, is_ticket),
        "open_tickets": float(
            sum(
                1
                for t in tickets
                if str(t.attributes.get("status", "open")).lower() not in _CLOSED_TICKET
            )
        ),
        "high_priority_tickets_90d": _count(
            tickets,
            as_of,
            window,
            lambda e: (
                str(e.attributes.get("priority", "")).lower() in {"high", "urgent"}
            ),
        ),
        "slow_ticket_responses_last3": float(
            sum(1 for h in last3 if h > parameters["slow_ticket_hours"])
        ),
        "ticket_response_hours_last3": _median(last3),
        "ticket_trend": _trend(
            now_count, _count(events, as_of - recent, recent, is_ticket)
        ),
    }


def _ticket_hours(
    ticket: _Event, answers: Sequence[dt.datetime], as_of: dt.datetime
) -> float:
    """Hours to the first answer (unanswered: the hours waited so far)."""
    given = ticket.attributes.get("first_response_hours")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    after = bisect.bisect_right(answers, ticket.at)
    end = answers[after] if after < len(answers) else as_of
    return round((end - ticket.at).total_seconds() / 3600, 2)


def _tracker_signals(
    events: list[_Event], as_of: dt.datetime, window: dt.timedelta
) -> dict[str, float | None]:
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        category = event.tracker()
        if category is not None and as_of - window < event.at:
            counts[category] += 1
    return {
        "objection_hits_90d": float(counts["objection"]),
        "competitor_mentions_90d": float(counts["competitor"]),
        "pricing_mentions_90d": float(counts["pricing"]),
        "budget_mentions_90d": float(counts["budget"]),
        "negative_sentiment_hits_90d": float(counts["sentiment"] + counts["complaint"]),
    }


def _order_signals(deals: list[_Deal], as_of: dt.datetime) -> dict[str, float | None]:
    half = dt.timedelta(days=HALF_YEAR)
    won = [d for d in deals if d.status == "won" and d.closed_at is not None]

    def won_amount(end: dt.datetime, span: dt.timedelta) -> Decimal:
        return sum(
            (d.amount for d in won if d.closed_at and end - span < d.closed_at <= end),
            Decimal(0),
        )

    year = dt.timedelta(days=LOOKBACK_DAYS)
    recent_amount, before_amount = (
        won_amount(as_of, half),
        won_amount(as_of - half, half),
    )
    last_order = max((d.closed_at for d in won if d.closed_at), default=None)
    return {
        "orders_365d": float(
            sum(1 for d in won if d.closed_at and as_of - year < d.closed_at)
        ),
        "order_amount_365d": float(won_amount(as_of, year)),
        "order_amount_trend": _trend(float(recent_amount), float(before_amount)),
        "days_since_last_order": (
            float(LOOKBACK_DAYS)
            if last_order is None
            else round((as_of - last_order).total_seconds() / 86_400, 2)
        ),
        "lost_deals_180d": float(
            sum(
                1
                for d in deals
                if d.status == "lost" and d.closed_at and as_of - half < d.closed_at
            )
        ),
        "open_opportunities": float(sum(1 for d in deals if d.status == "open")),
        "overdue_open_opportunities": float(
            sum(
                1
                for d in deals
                if d.status == "open"
                and d.expected_close_on is not None
                and d.expected_close_on < as_of.date()
            )
        ),
    }


__all__ = [
    "CUSTOMER_HEALTH",
    "SIGNALS",
    "THRESHOLDS_ENV",
    "AccountHealth",
    "Reason",
    "Rule",
    "StoredHealth",
    "Thresholds",
    "account_health",
    "assess_accounts",
    "compute_signals",
    "distribution",
    "judge",
    "latest_customer_health",
    "load_thresholds",
    "parse_thresholds",
    "store_customer_health",
]
