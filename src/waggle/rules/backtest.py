"""Backtests and dry runs: a rule over history, and how the deals it hit ended.

A fresh engine reads the stored events in time order, so a backtest shows
how often the rule would have fired, on which deals and when, without
touching the live engine's state or sending anything. The deals it fired on
are then compared with the other deals that had events in the period: how
many closed, how many were won, and how long they took.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.crm.models import Opportunity
from waggle.rules.engine import Firing, RuleEngine
from waggle.rules.language import Rule
from waggle.rules.runner import DatabaseFacts, engine_event
from waggle.signals.models import BehaviourEvent

Deadline = Callable[[dt.datetime, dt.timedelta], dt.datetime]
_BATCH = 2000


@dataclass(frozen=True)
class GroupOutcome:
    """How one group of deals ended."""

    deals: int
    closed: int
    won: int
    mean_cycle_days: float | None

    @property
    def win_rate(self) -> float | None:
        return self.won / self.closed if self.closed else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "deals": self.deals,
            "closed": self.closed,
            "won": self.won,
            "win_rate": self.win_rate,
            "mean_cycle_days": self.mean_cycle_days,
        }


@dataclass
class BacktestReport:
    rule_key: str
    since: dt.datetime
    until: dt.datetime
    events_read: int = 0
    firings: list[Firing] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    by_week: dict[str, int] = field(default_factory=dict)
    fired: GroupOutcome | None = None
    others: GroupOutcome | None = None

    @property
    def deals_fired(self) -> list[int]:
        return sorted({f.opportunity_id for f in self.firings if f.opportunity_id})

    def as_dict(self, *, firing_limit: int = 200) -> dict[str, Any]:
        return {
            "rule_key": self.rule_key,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "events_read": self.events_read,
            "firing_count": len(self.firings),
            "by_status": self.by_status,
            "by_week": self.by_week,
            "deals_fired": len(self.deals_fired),
            "fired": self.fired.as_dict() if self.fired else None,
            "others": self.others.as_dict() if self.others else None,
            "firings": [
                {
                    "opportunity_id": f.opportunity_id,
                    "key_id": f.key_id,
                    "fired_at": f.fired_at.isoformat(),
                    "status": f.status,
                    "explanation": f.explanation,
                }
                for f in self.firings[:firing_limit]
            ],
        }


def backtest(
    session: Session,
    rule: Rule,
    *,
    since: dt.datetime,
    until: dt.datetime,
    business_deadline: Deadline | None = None,
    event_limit: int | None = None,
) -> BacktestReport:
    """Run ``rule`` over the events of ``[since, until)`` and compare outcomes.

    The caller checks the policy; this reads events and deals as they are.
    """
    engine = RuleEngine(facts=DatabaseFacts(session))
    if business_deadline is not None:
        engine.business_deadline = business_deadline
    engine.load_rules([rule.model_copy(update={"enabled": True})])
    report = BacktestReport(rule_key=rule.key, since=since, until=until)
    seen: set[int] = set()
    for row in _events(session, since, until, event_limit):
        report.events_read += 1
        if row.opportunity_id is not None:
            seen.add(row.opportunity_id)
        report.firings.extend(engine.process(engine_event(row)))
    report.firings.extend(engine.advance(until))
    _summarise(report)
    _compare(session, report, seen)
    return report


def _events(
    session: Session, since: dt.datetime, until: dt.datetime, limit: int | None
) -> Iterator[BehaviourEvent]:
    query = (
        select(BehaviourEvent)
        .where(BehaviourEvent.occurred_at >= since, BehaviourEvent.occurred_at < until)
        .order_by(BehaviourEvent.occurred_at, BehaviourEvent.id)
        .execution_options(yield_per=_BATCH)
    )
    if limit is not None:
        query = query.limit(limit)
    yield from session.scalars(query)


def _summarise(report: BacktestReport) -> None:
    report.by_status = dict(Counter(firing.status for firing in report.firings))
    weeks: dict[str, int] = defaultdict(int)
    for firing in report.firings:
        year, week, _ = firing.fired_at.isocalendar()
        weeks[f"{year}-W{week:02d}"] += 1
    report.by_week = dict(sorted(weeks.items()))


def _compare(session: Session, report: BacktestReport, seen: set[int]) -> None:
    fired = set(report.deals_fired)
    report.fired = _outcome(session, fired)
    report.others = _outcome(session, seen - fired)


def _outcome(session: Session, ids: set[int]) -> GroupOutcome:
    closed = won = 0
    cycles: list[float] = []
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        rows = session.execute(
            select(
                Opportunity.status, Opportunity.created_at, Opportunity.closed_at
            ).where(Opportunity.id.in_(ordered[start : start + 500]))
        )
        for status, created, closed_at in rows:
            if status in ("won", "lost"):
                closed += 1
            if status == "won":
                won += 1
                if closed_at is not None:
                    cycles.append((closed_at - created).total_seconds() / 86400)
    mean = round(sum(cycles) / len(cycles), 1) if cycles else None
    return GroupOutcome(deals=len(ids), closed=closed, won=won, mean_cycle_days=mean)


__all__ = ["BacktestReport", "GroupOutcome", "backtest"]
