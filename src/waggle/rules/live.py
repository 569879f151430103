"""Rules in the running server: the engine woken by new events, and actions done.

:func:`build_runner` wires the engine to business time (Chinese holidays and
调休 make-up days) and to running experiments. :class:`LiveRules` runs it on
every chunk the signal pipeline commits, so a rule acts within seconds of the
behaviour, and from the periodic jobs for deadlines. :func:`perform_due_actions`
carries out the actions of firings once they are due (after quiet hours),
through the channels context, each at most once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import urllib.request
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import system_actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, UpstreamFailure, WaggleError
from waggle.crm.models import Activity, LineItem, Opportunity
from waggle.identity.models import Employee
from waggle.rules.calendar import BusinessCalendar
from waggle.rules.language import Rule
from waggle.rules.models import RuleAction, RuleFiring, RuleRecord
from waggle.rules.runner import RuleRunner, RunReport
from waggle.signals.stream import StoredEvent

logger = logging.getLogger(__name__)

# Lenient outside the years the holiday tables cover: a deadline running into
# a year without data counts Monday to Friday rather than failing.
CALENDAR = BusinessCalendar(strict_holidays=False)
ACTOR = system_actor("rules")
# The rule language's channel names, and the channels context's.
CHANNELS = {
    "inapp": "inbox",
    "wecom": "wecom_app",
    "wecom_robot": "wecom_robot",
    "dingtalk": "dingtalk_robot",
    "feishu": "feishu_bot",
    "email": "email",
}


def business_deadline(start: dt.datetime, within: dt.timedelta) -> dt.datetime:
    return CALENDAR.add(start, within)


def build_runner(sessions: sessionmaker[Session]) -> RuleRunner:
    """Return the live runner: business-hours deadlines, experiment arms."""
    return RuleRunner(
        sessions,
        business_deadline=business_deadline,
        arm_of=_arm_of(sessions),
        after_store=record_exposures,
    )


def _arm_of(sessions: sessionmaker[Session]) -> Any:
    from waggle.rules.experiments import arm_of, running_experiment

    def arm(rule: Rule, unit_id: int) -> str:
        if rule.experiment is None:
            return "treatment"
        with sessions() as session:
            experiment = running_experiment(session, rule.experiment.key)
        return "treatment" if experiment is None else arm_of(experiment, unit_id)

    return arm


def record_exposures(session: Session, firings: Sequence[RuleFiring]) -> None:
    """Log the first exposure of each experiment unit a firing reached."""
    from waggle.rules.experiments import record_exposure, running_experiment

    for firing in firings:
        if firing.arm is None or firing.opportunity_id is None:
            continue
        record = session.scalar(
            select(RuleRecord).where(RuleRecord.key == firing.rule_key)
        )
        spec: Any = (record.definition.get("experiment") if record else None) or {}
        experiment = running_experiment(session, str(spec.get("key", "")))
        if experiment is not None:
            record_exposure(
                session,
                experiment,
                firing.opportunity_id,
                arm=firing.arm,
                at=firing.fired_at,
                rule_id=firing.rule_key,
            )


class LiveRules:
    """One live runner per process, safe to wake from several threads."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self.runner = build_runner(sessions)
        self._lock = threading.Lock()

    def on_events(self, events: Sequence[StoredEvent]) -> None:
        """Stream subscriber: evaluate the chunk just stored (skip if busy)."""
        if self._lock.acquire(blocking=False):
            try:
                self._drain()
                perform_due_actions(self.sessions)
            finally:
                self._lock.release()

    def tick(self, sessions: sessionmaker[Session]) -> RunReport:
        """Periodic job: catch up on events and fire deadlines that fell due."""
        with self._lock:
            report = self._drain()
            perform_due_actions(self.sessions)
        return report

    def _drain(self) -> RunReport:
        report = self.runner.run_once()
        while report.events:
            report = self.runner.run_once()
        return report


def perform_due_actions(sessions: sessionmaker[Session], *, limit: int = 200) -> int:
    """Carry out pending actions whose time has come; return how many were done."""
    with sessions() as session:
        due = list(
            session.scalars(
                select(RuleAction.id)
                .where(RuleAction.status == "pending", RuleAction.not_before <= now())
                .order_by(RuleAction.id)
                .limit(limit)
            )
        )
    done = 0
    for action_id in due:
        done += _perform(sessions, action_id)
    return done


def _perform(sessions: sessionmaker[Session], action_id: int) -> int:
    with transaction(sessions) as session:
        action = session.get_one(RuleAction, action_id)
        firing = session.get_one(RuleFiring, action.firing_id)
        context = _context(session, firing)
    try:
        result = _run_action(sessions, action, firing, context)
    except WaggleError as error:
        _finish(sessions, action_id, status="failed", error=error.message)
        logger.warning(
            "rule action failed",
            extra={
                "action_id": action_id,
                "rule_id": firing.rule_key,
                "code": error.code,
            },
        )
        return 0
    _finish(sessions, action_id, status="done", result=result)
    return 1


def _finish(
    sessions: sessionmaker[Session],
    action_id: int,
    *,
    status: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    with transaction(sessions) as session:
        action = session.get_one(RuleAction, action_id)
        action.attempts += 1
        action.status = status
        action.result = result
        action.last_error = error[:500] if error else None
        action.done_at = now()


@dataclasses.dataclass(frozen=True)
class _Context:
    owner_id: int | None
    manager_id: int | None
    opportunity_name: str | None
    rule_name: dict[str, str]


def _context(session: Session, firing: RuleFiring) -> _Context:
    opportunity = (
        session.get(Opportunity, firing.opportunity_id)
        if firing.opportunity_id
        else None
    )
    owner_id = opportunity.owner_id if opportunity else firing.actor_id
    owner = session.get(Employee, owner_id) if owner_id else None
    record = session.scalar(select(RuleRecord).where(RuleRecord.key == firing.rule_key))
    raw: Any = (record.definition.get("name") if record else None) or {}
    name = dict(raw)
    return _Context(
        owner_id=owner_id,
        manager_id=owner.manager_id if owner else None,
        opportunity_name=opportunity.name if opportunity else None,
        rule_name={str(k): str(v) for k, v in name.items()} or {"en": firing.rule_key},
    )


def _run_action(
    sessions: sessionmaker[Session],
    action: RuleAction,
    firing: RuleFiring,
    context: _Context,
) -> dict[str, Any]:
    spec = dict(action.spec)
    if action.kind == "recommend":
        return _recommend(sessions, action, firing, context, spec)
    if action.kind in ("notify", "escalate"):
        return _notify(sessions, action, firing, context, spec)
    if action.kind == "create_task":
        return _create_task(sessions, firing, context, spec)
    if action.kind == "webhook":
        return _webhook(firing, spec)
    if action.kind == "set_field":
        return _set_field(sessions, firing, spec)
    raise InvalidInput(f"unknown action kind {action.kind!r}")


def _recipient(context: _Context, to: str) -> int | None:
    if to == "manager":
        return context.manager_id or context.owner_id
    return context.owner_id


def _notify(
    sessions: sessionmaker[Session],
    action: RuleAction,
    firing: RuleFiring,
    context: _Context,
    spec: dict[str, Any],
) -> dict[str, Any]:
    from waggle.channels.base import Message
    from waggle.channels.service import deliver

    channel = CHANNELS[str(spec.get("channel", "inapp"))]
    employee_id = _recipient(context, str(spec.get("to", "owner")))
    if employee_id is None:
        raise InvalidInput(f"firing {firing.id}: nobody to notify")
    locale = _locale_of(sessions, employee_id)
    title = context.rule_name.get(locale) or next(iter(context.rule_name.values()))
    if context.opportunity_name:
        title = f"{title} · {context.opportunity_name}"
    body = _message(spec, firing, locale)
    outcome = deliver(
        sessions,
        ACTOR,
        Message(
            title=title,
            body=body,
            employee_id=employee_id,
            dedup_key=f"rule-action:{action.id}",
            locale=locale,
            source=f"rule:{firing.rule_key}",
        ),
        channel=channel,
        # The in-app inbox needs no settings; the others use the saved ones.
        settings={} if channel == "inbox" else None,
    )
    return {"employee_id": employee_id, "delivery": str(getattr(outcome, "status", ""))}


def _recommend(
    sessions: sessionmaker[Session],
    action: RuleAction,
    firing: RuleFiring,
    context: _Context,
    spec: dict[str, Any],
) -> dict[str, Any]:
    """Pick the material closest to the deal and send the owner a tracked link.

    Materials are ranked by how many of the wanted traits (industry, product,
    stage) they share with the deal; ties go to the newest.
    """
    from waggle.signals.materials import create_link

    with transaction(sessions) as session:
        chosen = _closest_material(session, firing, spec)
        if chosen is None:
            raise InvalidInput(f"firing {firing.id}: no material fits the deal")
        link = create_link(
            session,
            ACTOR,
            material_id=chosen.id,
            opportunity_id=firing.opportunity_id,
        )
        url = f"/t/{link.token}"
        title = chosen.title
    note = {
        "notify": {
            "to": spec.get("to", "owner"),
            "channel": "inapp",
            "message": {
                "zh-CN": f"推荐资料：{title}（追踪链接 {url}）",
                "en": f"Suggested material: {title} (tracked link {url})",
            },
        }
    }
    result = _notify(sessions, action, firing, context, note["notify"])
    return {**result, "material_id": chosen.id, "link": url}


def _closest_material(
    session: Session, firing: RuleFiring, spec: dict[str, Any]
) -> Any:
    from waggle.crm.models import Account, PipelineStage, Product
    from waggle.signals.models import Material

    query = select(Material)
    if spec.get("kind"):
        query = query.where(Material.kind == spec["kind"])
    candidates = list(session.scalars(query))
    if not candidates or firing.opportunity_id is None:
        return max(candidates, key=lambda m: m.id, default=None)
    opportunity = session.get_one(Opportunity, firing.opportunity_id)
    account = session.get(Account, opportunity.account_id)
    stage = session.get(PipelineStage, opportunity.stage_id)
    products = {
        name
        for (name,) in session.execute(
            select(Product.name)
            .join(LineItem, LineItem.product_id == Product.id)
            .where(LineItem.opportunity_id == opportunity.id)
        )
    }
    wanted = set(spec.get("match") or ("industry", "stage"))

    def score(material: Any) -> tuple[int, int]:
        shared = 0
        if "industry" in wanted and account and material.industry == account.industry:
            shared += 1
        if "stage" in wanted and stage and material.stage_key == stage.key:
            shared += 1
        if "product" in wanted and material.product in products:
            shared += 1
        return shared, material.id

    return max(candidates, key=score)


def _locale_of(sessions: sessionmaker[Session], employee_id: int) -> str:
    """Return the language of the employee's login (zh-CN when they have none)."""
    from waggle.identity.models import User

    with sessions() as session:
        locale = session.scalar(
            select(User.locale).where(User.employee_id == employee_id).limit(1)
        )
    return locale if locale in ("zh-CN", "en") else "zh-CN"


def _message(spec: dict[str, Any], firing: RuleFiring, locale: str) -> str:
    custom = spec.get("message") or {}
    explanation = firing.explanation.get(locale) or firing.explanation.get("en", "")
    if isinstance(custom, dict) and custom.get(locale):
        return f"{custom[locale]}\n{explanation}"
    return explanation


def _create_task(
    sessions: sessionmaker[Session],
    firing: RuleFiring,
    context: _Context,
    spec: dict[str, Any],
) -> dict[str, Any]:
    from waggle.rules.language import parse_duration

    title = dict(spec.get("title") or {})
    due = now() + parse_duration(str(spec.get("due_in", "1d")))
    with transaction(sessions) as session:
        task = Activity(
            kind="task",
            subject=(title.get("zh-CN") or title.get("en") or firing.rule_key)[:200],
            body=f"due {due.isoformat()} · {firing.explanation.get('zh-CN', '')}",
            opportunity_id=firing.opportunity_id,
            account_id=firing.account_id,
            owner_id=_recipient(context, str(spec.get("assignee", "owner"))),
            occurred_at=due,
        )
        session.add(task)
        session.flush()
        return {"activity_id": task.id, "due_at": due.isoformat()}


def _set_field(
    sessions: sessionmaker[Session], firing: RuleFiring, spec: dict[str, Any]
) -> dict[str, Any]:
    from waggle.crm.service import OPPORTUNITIES
    from waggle.governance.records import update_record

    if firing.opportunity_id is None:
        raise InvalidInput(f"firing {firing.id}: set_field needs an opportunity")
    with transaction(sessions) as session:
        update_record(
            session,
            ACTOR,
            OPPORTUNITIES,
            firing.opportunity_id,
            {str(spec["field"]): spec.get("value")},
        )
    return {"field": spec["field"], "value": spec.get("value")}


def _webhook(firing: RuleFiring, spec: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(
        {
            "rule": firing.rule_key,
            "firing_id": firing.id,
            "opportunity_id": firing.opportunity_id,
            "fired_at": firing.fired_at.isoformat(),
            "facts": firing.facts,
            "explanation": firing.explanation,
        },
        ensure_ascii=False,
    ).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310  # http(s) only, checked by the language
        str(spec["url"]),
        data=payload,
        method=str(spec.get("method", "POST")),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return {"status": answer.status}
    except OSError as exc:
        raise UpstreamFailure(f"webhook {spec['url']}: {exc}") from exc


__all__ = [
    "LiveRules",
    "build_runner",
    "business_deadline",
    "perform_due_actions",
    "record_exposures",
]
