"""The live runner: the engine over the stored event stream, durably.

Each run reads the events after the engine's cursor in id order, applies
them, advances event time to the wall clock (firing due deadlines), and then
writes, in one transaction, the changed state, the new firings with their
pending actions, and the new cursor. A crash before that commit loses
nothing (the events are read again from the old cursor) and a crash after it
repeats nothing (the cursor has moved; firings are unique by fingerprint).
A rule edited or switched off is picked up at the next run, without a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.clock import now
from waggle.core.db import pairs_in, transaction
from waggle.crm.models import Account, Contact, Opportunity, PipelineStage
from waggle.identity.models import Department, Employee, Region
from waggle.rules.conditions import EngineEvent
from waggle.rules.engine import Firing, RuleEngine, StateKey
from waggle.rules.language import Rule, parse_rule
from waggle.rules.models import (
    EngineCursor,
    RuleAction,
    RuleFiring,
    RuleRecord,
    RuleStateRow,
)
from waggle.signals.models import BehaviourEvent

logger = logging.getLogger(__name__)

LIVE = "live"
# A firing older than this when the runner sees it (history being imported,
# a runner that was down) is recorded as late and triggers no action.
ACT_WINDOW = dt.timedelta(hours=24)
_SLICE = 400


@dataclass
class RunReport:
    events: int = 0
    firings: int = 0
    acted: int = 0
    last_event_id: int = 0


class DatabaseFacts:
    """Opportunity, account and rep facts read on demand, cached per run."""

    def __init__(self, session: Session):
        self.session = session
        self._cache: dict[tuple[str, int], Mapping[str, Any] | None] = {}

    def opportunity(self, opportunity_id: int) -> Mapping[str, Any] | None:
        return self._cached("opportunity", opportunity_id, self._opportunity)

    def account(self, account_id: int) -> Mapping[str, Any] | None:
        return self._cached("account", account_id, self._account)

    def rep(self, employee_id: int) -> Mapping[str, Any] | None:
        return self._cached("rep", employee_id, self._rep)

    def contact(self, contact_id: int) -> Mapping[str, Any] | None:
        return self._cached("contact", contact_id, self._contact)

    def _cached(
        self, kind: str, record_id: int, load: Callable[[int], Mapping[str, Any] | None]
    ) -> Mapping[str, Any] | None:
        key = (kind, record_id)
        if key not in self._cache:
            self._cache[key] = load(record_id)
        return self._cache[key]

    def _opportunity(self, opportunity_id: int) -> Mapping[str, Any] | None:
        row = self.session.execute(
            select(Opportunity, PipelineStage.key, PipelineStage.position)
            .join(PipelineStage, PipelineStage.id == Opportunity.stage_id)
            .where(Opportunity.id == opportunity_id)
        ).first()
        if row is None:
            return None
        opportunity, stage, position = row
        return {
            "amount": float(opportunity.amount),
            "stage": stage,
            "stage_position": position,
            "status": opportunity.status,
            "forecast_category": opportunity.forecast_category,
            "source": opportunity.source,
            "expected_close_on": opportunity.expected_close_on,
            "currency": opportunity.currency,
            "owner_id": opportunity.owner_id,
        }

    def _account(self, account_id: int) -> Mapping[str, Any] | None:
        row = self.session.execute(
            select(Account, Region.code)
            .outerjoin(Region, Region.id == Account.region_id)
            .where(Account.id == account_id)
        ).first()
        if row is None:
            return None
        account, region = row
        return {
            "industry": account.industry,
            "size": account.size,
            "province": account.province,
            "city": account.city,
            "region": region,
        }

    def _contact(self, contact_id: int) -> Mapping[str, Any] | None:
        contact = self.session.get(Contact, contact_id)
        if contact is None:
            return None
        return {"decision_role": contact.decision_role, "title": contact.title}

    def _rep(self, employee_id: int) -> Mapping[str, Any] | None:
        row = self.session.execute(
            select(Employee, Department.code, Region.code)
            .outerjoin(Department, Department.id == Employee.department_id)
            .outerjoin(Region, Region.id == Employee.region_id)
            .where(Employee.id == employee_id)
        ).first()
        if row is None:
            return None
        employee, department, region = row
        return {"department": department, "region": region, "title": employee.title}


def engine_event(row: BehaviourEvent) -> EngineEvent:
    """Return the engine's view of a stored behaviour event."""
    return EngineEvent(
        id=row.id,
        event_type=row.event_type,
        occurred_at=row.occurred_at,
        opportunity_id=row.opportunity_id,
        account_id=row.account_id,
        actor_id=row.actor_id,
        contact_id=row.contact_id,
        speaker=row.speaker,
        channel=row.channel,
        source=row.source,
        is_automatic=row.is_automatic,
        text=row.text,
        attributes=row.attributes or {},
    )


def enabled_rules(session: Session) -> list[Rule]:
    """Return the saved rules that are switched on, parsed."""
    records = session.scalars(
        select(RuleRecord).where(RuleRecord.is_enabled).order_by(RuleRecord.key)
    )
    return [parse_rule(record.definition, source=record.key) for record in records]


def rules_stamp(session: Session) -> tuple[object, ...]:
    """A fingerprint that changes when any rule is added, edited or removed."""
    return tuple(
        session.execute(
            select(
                func.count(),
                func.max(RuleRecord.updated_at),
                func.sum(RuleRecord.revision),
            )
        ).one()
    )


@dataclass
class RuleRunner:
    """Runs the engine over new events; one instance per process."""

    sessions: sessionmaker[Session]
    business_deadline: Callable[[dt.datetime, dt.timedelta], dt.datetime] | None = None
    arm_of: Callable[[Rule, int], str] | None = None
    name: str = LIVE
    after_store: Callable[[Session, list[RuleFiring]], None] | None = None
    engine: RuleEngine | None = None
    _stamp: tuple[object, ...] | None = None
    _rules: dict[str, Rule] = field(default_factory=dict)

    def run_once(
        self, *, limit: int = 2000, until: dt.datetime | None = None
    ) -> RunReport:
        """Process up to ``limit`` new events and the deadlines due by ``until``."""
        report = RunReport()
        try:
            with transaction(self.sessions) as session:
                self._run(session, report, limit=limit, until=until or now())
        except BaseException:
            self.engine = None  # memory may be ahead of the database: reload
            raise
        return report

    def _run(
        self, session: Session, report: RunReport, *, limit: int, until: dt.datetime
    ) -> None:
        cursor = _cursor(session, self.name)
        engine = self._engine(session, cursor)
        engine.facts = DatabaseFacts(session)
        rows = session.scalars(
            select(BehaviourEvent)
            .where(BehaviourEvent.id > cursor.last_event_id)
            .order_by(BehaviourEvent.id)
            .limit(limit)
        ).all()
        firings: list[Firing] = []
        for row in rows:
            firings.extend(engine.process(engine_event(row)))
        firings.extend(engine.advance(until))
        report.events = len(rows)
        if rows:
            cursor.last_event_id = rows[-1].id
        cursor.watermark = engine.watermark
        cursor.updated_at = now()
        report.last_event_id = cursor.last_event_id
        save_states(session, engine)
        stored = store_firings(
            session, firings, self._rules, acting_since=until - ACT_WINDOW
        )
        if self.after_store is not None:
            self.after_store(session, stored)
        report.firings = len(stored)
        report.acted = sum(1 for firing in stored if firing.status == "fired")

    def _engine(self, session: Session, cursor: EngineCursor) -> RuleEngine:
        stamp = rules_stamp(session)
        if self.engine is None:
            self.engine = RuleEngine(arm_of=self.arm_of)
            if self.business_deadline is not None:
                self.engine.business_deadline = self.business_deadline
            self.engine.restore(load_states(session), cursor.watermark)
            self._stamp = None
        if stamp != self._stamp:
            rules = enabled_rules(session)
            self._rules = {rule.key: rule for rule in rules}
            self.engine.load_rules(rules)
            self._stamp = stamp
        return self.engine


def _cursor(session: Session, name: str) -> EngineCursor:
    cursor = session.scalar(select(EngineCursor).where(EngineCursor.name == name))
    if cursor is None:
        cursor = EngineCursor(name=name, last_event_id=0)
        session.add(cursor)
        session.flush()
    return cursor


def load_states(session: Session) -> dict[StateKey, dict[str, Any]]:
    """Read every persisted (rule, key) state."""
    return {
        (row.rule_key, row.key_id): dict(row.state)
        for row in session.scalars(select(RuleStateRow))
    }


def save_states(session: Session, engine: RuleEngine) -> None:
    """Write the states the engine changed since the last save; drop empty ones."""
    dirty = sorted(engine.dirty)
    engine.dirty.clear()
    for start in range(0, len(dirty), _SLICE):
        part = dirty[start : start + _SLICE]
        existing = {
            (row.rule_key, row.key_id): row
            for row in session.scalars(
                select(RuleStateRow).where(
                    pairs_in(RuleStateRow.rule_key, RuleStateRow.key_id, part)
                )
            )
        }
        for key in part:
            _save_one(session, key, engine.states.get(key), existing.get(key))


def _save_one(
    session: Session,
    key: StateKey,
    state: dict[str, Any] | None,
    row: RuleStateRow | None,
) -> None:
    meaningful = {name: value for name, value in (state or {}).items() if value}
    if not meaningful:
        if row is not None:
            session.delete(row)
        return
    deadline = meaningful.get("deadline")
    if row is None:
        session.add(
            RuleStateRow(
                rule_key=key[0], key_id=key[1], state=meaningful, deadline=deadline
            )
        )
        return
    row.state = meaningful
    row.deadline = deadline


def store_firings(
    session: Session,
    firings: Iterable[Firing],
    rules: Mapping[str, Rule],
    *,
    acting_since: dt.datetime,
) -> list[RuleFiring]:
    """Insert the firings not stored before, with the actions of those that act."""
    firings = list(firings)
    known = _known_fingerprints(session, [firing.fingerprint for firing in firings])
    stored = []
    for firing in firings:
        if firing.fingerprint in known:
            continue
        known.add(firing.fingerprint)
        status = firing.status
        if status == "fired" and firing.fired_at < acting_since:
            status = "late"
        row = RuleFiring(
            rule_key=firing.rule_key,
            rule_version=firing.rule_version,
            per=firing.per,
            key_id=firing.key_id,
            fingerprint=firing.fingerprint,
            fired_at=firing.fired_at,
            status=status,
            arm=firing.arm,
            trigger_event_id=firing.trigger_event_id,
            opportunity_id=firing.opportunity_id,
            account_id=firing.account_id,
            actor_id=firing.actor_id,
            facts=[fact.as_dict() for fact in firing.facts],
            explanation=firing.explanation,
        )
        session.add(row)
        session.flush()
        if status == "fired" and firing.rule_key in rules:
            _queue_actions(session, row, rules[firing.rule_key])
        stored.append(row)
    return stored


def _known_fingerprints(session: Session, fingerprints: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(fingerprints), _SLICE):
        part = fingerprints[start : start + _SLICE]
        known.update(
            session.scalars(
                select(RuleFiring.fingerprint).where(RuleFiring.fingerprint.in_(part))
            )
        )
    return known


def _queue_actions(session: Session, firing: RuleFiring, rule: Rule) -> None:
    not_before = _after_quiet_hours(rule, now())
    for position, action in enumerate(rule.then):
        session.add(
            RuleAction(
                firing_id=firing.id,
                position=position,
                kind=action.kind,
                spec=action.model_dump(mode="json", exclude_none=True)[action.kind],
                not_before=not_before,
            )
        )


def _after_quiet_hours(rule: Rule, instant: dt.datetime) -> dt.datetime:
    """Return ``instant``, or the end of the rule's quiet hours if it falls inside."""
    quiet = rule.quiet_hours
    if quiet is None:
        return instant
    zone = ZoneInfo(quiet.timezone)
    local = instant.astimezone(zone)
    start = local.replace(
        hour=quiet.start.hour, minute=quiet.start.minute, second=0, microsecond=0
    )
    end = local.replace(
        hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0
    )
    if quiet.start <= quiet.end:
        inside = start <= local < end
        resume = end
    else:  # across midnight, e.g. 21:00-08:00
        inside = local >= start or local < end
        resume = end if local < end else end + dt.timedelta(days=1)
    return resume.astimezone(dt.UTC) if inside else instant


__all__ = [
    "ACT_WINDOW",
    "DatabaseFacts",
    "RuleRunner",
    "RunReport",
    "enabled_rules",
    "engine_event",
    "load_states",
    "save_states",
    "store_firings",
]
