"""The streaming rule evaluator: events in, firings out, state per rule and key.

The engine holds, for every (rule, key) pair that needs it, a small JSON-ready
state: the window of a count, the run of a consecutive pattern, the deadline
of an absence, the progress of a sequence, the recent points of a change,
and the times it fired (for throttling). :mod:`waggle.rules.store` persists
that state with the engine's cursor in one transaction, so a restart resumes
exactly where the last commit left off.

Time is event time. Before an event is applied the engine advances its
watermark to the event's instant, firing every absence whose deadline lies
strictly before it; :meth:`RuleEngine.advance` moves the watermark on without
an event (the live runner calls it with the wall clock). Events are applied
in the order given; an event at the very instant of a deadline still counts
as in time.

Rules are dispatched by event type, so an event only meets the rules that
listen to its type.

State that can no longer matter is swept away as event time moves on: count
and change windows that have slid past, sequences that timed out, firing
times older than their throttle, and then the emptied states themselves.
A state holding such timed entries has one look scheduled (a heap) for the
instant its oldest entry could go; when the watermark passes it, the state
is pruned and, if anything is left, its next look is scheduled. No state is
ever scanned for nothing and the cost per write stays constant. Each look
keeps :data:`SWEEP_GRACE` of history behind the watermark, so an event
arriving up to that late is judged as if nothing had been swept.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import heapq
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from waggle.rules.conditions import (
    EngineEvent,
    Facts,
    Getter,
    NoFacts,
    Predicate,
    compile_conditions,
    compile_filter,
    event_equalities,
    filter_conditions,
    filter_types,
    getter,
)
from waggle.rules.language import Rule
from waggle.rules.wording import explain

State = dict[str, Any]
StateKey = tuple[str, int]
Deadline = Callable[[dt.datetime, dt.timedelta], dt.datetime]
ArmOf = Callable[[Rule, int], str]
MAX_FACTS = 20
SWEEP_GRACE = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Fact:
    """An event that contributed to a firing."""

    event_id: int
    event_type: str
    occurred_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "occurred_at": self.occurred_at.isoformat(),
        }


@dataclass
class Firing:
    """One rule firing for one key, with the facts that caused it."""

    rule_key: str
    rule_version: str
    per: str
    key_id: int
    fired_at: dt.datetime
    facts: list[Fact]
    status: str  # fired | throttled | holdout
    fingerprint: str
    trigger_event_id: int | None
    rule: Rule = field(repr=False, compare=False)
    opportunity_id: int | None = None
    account_id: int | None = None
    actor_id: int | None = None
    arm: str | None = None

    @functools.cached_property
    def explanation(self) -> dict[str, str]:
        """Why it fired, in zh-CN and en (worded when first asked, then kept)."""
        return explain(self.rule, self.facts)


def _stamp(instant: dt.datetime) -> float:
    return instant.timestamp()


def _instant(stamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def plain_deadline(start: dt.datetime, within: dt.timedelta) -> dt.datetime:
    return start + within


def rule_version(rule: Rule) -> str:
    """Return a digest of the rule's pattern: state survives edits of the rest."""
    body = json.dumps(rule.when.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class _Compiled:
    """A rule ready to run: its predicates and the roles it listens for."""

    def __init__(self, rule: Rule, *, business_deadline: Deadline):
        self.rule = rule
        self.version = rule_version(rule)
        self.kind = rule.when.kind
        self.pattern = rule.when.pattern
        self.key_of = _key_getter(rule.per)
        self.deadline = (
            business_deadline
            if self.kind == "absence" and self.pattern.business_hours
            else plain_deadline
        )
        self.roles: dict[str, tuple[Predicate, list[str]]] = {}
        self.equalities: dict[str, dict[str, Any]] = {}
        for role, spec in _role_filters(rule):
            self.roles[role] = (compile_filter(spec), list(filter_types(spec)))
            self.equalities[role] = event_equalities(filter_conditions(spec))
        self.extra = _extra_predicates(rule)
        window = getattr(self.pattern, "within", None)
        self.window_seconds = window.total_seconds() if window is not None else None
        self.throttle_seconds = rule.throttle.every.total_seconds()

    def types(self) -> set[str]:
        return {kind for _, kinds in self.roles.values() for kind in kinds}


_Listener = tuple[int, _Compiled, str]  # position among the type's listeners


@dataclass(frozen=True, slots=True)
class _Dispatch:
    """The listeners of one event type, indexed by one equality test.

    Many rules of a type differ in one field (``event.segment: smb``,
    ``category: pricing``): the field most of them test is read once per
    event and only the rules expecting its value, plus those that don't test
    it, are evaluated, in their original order.
    """

    read: Getter | None
    by_value: dict[Any, list[_Listener]]
    others: list[_Listener]

    @classmethod
    def build(cls, listeners: list[_Listener]) -> _Dispatch:
        counts: dict[str, int] = defaultdict(int)
        for _, compiled, role in listeners:
            for path in compiled.equalities[role]:
                counts[path] += 1
        if not counts or max(counts.values()) < 2:
            return cls(None, {}, listeners)
        path = max(sorted(counts), key=counts.__getitem__)
        by_value: dict[Any, list[_Listener]] = defaultdict(list)
        others: list[_Listener] = []
        for listener in listeners:
            _, compiled, role = listener
            equalities = compiled.equalities[role]
            if path in equalities:
                by_value[equalities[path]].append(listener)
            else:
                others.append(listener)
        return cls(getter(path), dict(by_value), others)

    def candidates(self, event: EngineEvent, facts: Facts) -> list[_Listener]:
        if self.read is None:
            return self.others
        try:
            chosen = self.by_value.get(self.read(event, facts), [])
        except TypeError:  # an unhashable value equals no indexed one
            chosen = []
        if not self.others:
            return chosen
        if not chosen:
            return self.others
        return sorted([*chosen, *self.others], key=_position)


def _position(listener: _Listener) -> int:
    return listener[0]


def _role_filters(rule: Rule) -> list[tuple[str, Any]]:
    pattern = rule.when.pattern
    kind = rule.when.kind
    if kind == "match":
        return [("match", pattern)]
    if kind == "count":
        roles = [("of", pattern.of)]
        return roles + ([("on", pattern.on)] if pattern.on is not None else [])
    if kind in ("consecutive", "change"):
        return [("of", pattern.of)]
    if kind == "absence":
        return [("expect", pattern.expect), ("after", pattern.after)]
    return [(f"step{index}", step) for index, step in enumerate(pattern.steps)]


def _extra_predicates(rule: Rule) -> dict[str, Any]:
    pattern = rule.when.pattern
    kind = rule.when.kind
    if kind == "consecutive":
        return {"all": compile_conditions(pattern.all)}
    if kind == "count" and (pattern.distinct or pattern.sum):
        return {"value": getter(pattern.distinct or pattern.sum)}
    if kind == "change":
        return {"value": getter(pattern.field)}
    return {}


def _key_getter(per: str) -> Callable[[EngineEvent], int | None]:
    if per == "opportunity":
        return lambda event: event.opportunity_id
    if per == "account":
        return lambda event: event.account_id
    return lambda event: event.actor_id


@dataclass
class RuleEngine:
    """Evaluates events against compiled rules and keeps their state."""

    facts: Facts = field(default_factory=NoFacts)
    business_deadline: Deadline = plain_deadline
    arm_of: ArmOf | None = None
    states: dict[StateKey, State] = field(default_factory=dict)
    watermark: dt.datetime | None = None
    _rules: dict[str, _Compiled] = field(default_factory=dict)
    _by_type: dict[str, _Dispatch] = field(default_factory=dict)
    _timers: list[tuple[float, str, int]] = field(default_factory=list)
    dirty: set[StateKey] = field(default_factory=set)
    _expiries: list[tuple[float, str, int]] = field(default_factory=list)
    _scheduled: set[StateKey] = field(default_factory=set)
    sweeping: bool = True

    def load_rules(self, rules: Iterable[Rule]) -> None:
        """Use ``rules`` from now on; state of rules whose pattern changed is reset."""
        compiled = {
            rule.key: _Compiled(rule, business_deadline=self.business_deadline)
            for rule in rules
            if rule.enabled
        }
        for key in list(self.states):
            current = compiled.get(key[0])
            known = self._rules.get(key[0])
            if current is None or (known and known.version != current.version):
                del self.states[key]
                self.dirty.add(key)
        self._rules = compiled
        self._index()
        self._rebuild_timers()

    def _index(self) -> None:
        by_type: dict[str, list[_Listener]] = defaultdict(list)
        for compiled in self._rules.values():
            for role, (_, kinds) in compiled.roles.items():
                for kind in kinds:
                    listeners = by_type[kind]
                    listeners.append((len(listeners), compiled, role))
        self._by_type = {
            kind: _Dispatch.build(listeners) for kind, listeners in by_type.items()
        }

    def _rebuild_timers(self) -> None:
        self._timers = [
            (state["deadline"], rule_key, key_id)
            for (rule_key, key_id), state in self.states.items()
            if "deadline" in state and rule_key in self._rules
        ]
        heapq.heapify(self._timers)

    def restore(
        self, states: Mapping[StateKey, State], watermark: dt.datetime | None
    ) -> None:
        """Take up persisted state (after a restart)."""
        self.states = {key: dict(value) for key, value in states.items()}
        self.watermark = watermark
        self._rebuild_timers()
        self._expiries, self._scheduled = [], set()
        for key in self.states:
            self._schedule_next(key)

    @property
    def rule_keys(self) -> list[str]:
        return sorted(self._rules)

    def process(self, event: EngineEvent) -> list[Firing]:
        """Apply one event: due deadlines first, then every rule that listens."""
        firings = self.advance(event.occurred_at)
        typed = self._by_type.get(event.event_type)
        wildcard = self._by_type.get("*")
        listeners = typed.candidates(event, self.facts) if typed else []
        if wildcard is not None:
            listeners = [*listeners, *wildcard.candidates(event, self.facts)]
        if not listeners:
            return firings
        matched: dict[str, set[str]] = defaultdict(set)
        order: list[_Compiled] = []
        for _, compiled, role in listeners:
            predicate = compiled.roles[role][0]
            if predicate(event, self.facts):
                if compiled.rule.key not in matched:
                    order.append(compiled)
                matched[compiled.rule.key].add(role)
        for compiled in order:
            key_id = compiled.key_of(event)
            if key_id is None:
                continue
            found = self._apply(compiled, key_id, event, matched[compiled.rule.key])
            if found is not None:
                firings.append(found)
        return firings

    def advance(self, instant: dt.datetime) -> list[Firing]:
        """Move event time to ``instant``, firing deadlines that fell before it."""
        if self.watermark is None or instant > self.watermark:
            self.watermark = instant
        limit = _stamp(instant)
        firings = []
        while self._timers and self._timers[0][0] < limit:
            deadline, rule_key, key_id = heapq.heappop(self._timers)
            found = self._expire(rule_key, key_id, deadline)
            if found is not None:
                firings.append(found)
        before = limit - SWEEP_GRACE.total_seconds()
        while self._expiries and self._expiries[0][0] < limit:
            _, rule_key, key_id = heapq.heappop(self._expiries)
            key = (rule_key, key_id)
            self._scheduled.discard(key)
            if not self._sweep_one(key, before):
                self._schedule_next(key)
        return firings

    def _sweep_later(self, compiled: _Compiled, key_id: int, until: float) -> None:
        """Make sure this state is looked at once the watermark passes ``until``."""
        key = (compiled.rule.key, key_id)
        if self.sweeping and key not in self._scheduled:
            self._scheduled.add(key)
            due = until + SWEEP_GRACE.total_seconds()
            heapq.heappush(self._expiries, (due, key[0], key_id))

    def _schedule_next(self, key: StateKey) -> None:
        compiled, state = self._rules.get(key[0]), self.states.get(key)
        if compiled is None or state is None:
            return
        until = _oldest_expiry(compiled, state)
        if until is not None:
            self._sweep_later(compiled, key[1], until)

    def _sweep_one(self, key: StateKey, before: float) -> bool:
        state = self.states.get(key)
        if state is None:
            return False
        compiled = self._rules.get(key[0])
        if compiled is not None:
            _prune(compiled, state, before)
        if any(state.values()):
            return False
        del self.states[key]
        self.dirty.add(key)
        return True

    # -- patterns ---------------------------------------------------------

    def _apply(
        self, compiled: _Compiled, key_id: int, event: EngineEvent, roles: set[str]
    ) -> Firing | None:
        handler = getattr(self, f"_on_{compiled.kind}")
        facts: list[Fact] | None = handler(compiled, key_id, event, roles)
        if facts is None:
            return None
        return self._fire(compiled, key_id, event.occurred_at, facts, event=event)

    def _state(self, compiled: _Compiled, key_id: int) -> State:
        key = (compiled.rule.key, key_id)
        self.dirty.add(key)
        return self.states.setdefault(key, {})

    def _on_match(self, compiled, key_id, event, roles) -> list[Fact] | None:  # type: ignore[no-untyped-def]
        return [_fact(event)]

    def _on_count(self, compiled, key_id, event, roles) -> list[Fact] | None:  # type: ignore[no-untyped-def]
        pattern = compiled.pattern
        state = self._state(compiled, key_id)
        items: list[list[Any]] = state.setdefault("items", [])
        if "of" in roles:
            value = (
                compiled.extra["value"](event, self.facts)
                if "value" in compiled.extra
                else 1
            )
            items.append([event.timestamp, value, event.id, event.event_type])
            if compiled.window_seconds is not None:
                self._sweep_later(
                    compiled, key_id, event.timestamp + compiled.window_seconds
                )
        if pattern.within is not None:
            horizon = event.timestamp - pattern.within.total_seconds()
            while items and items[0][0] <= horizon:
                items.pop(0)
        if pattern.on is not None and "on" not in roles:
            return None
        total = _aggregate(
            items, distinct=bool(pattern.distinct), summed=bool(pattern.sum)
        )
        if pattern.at_least is not None and total < pattern.at_least:
            return None
        if pattern.at_most is not None and total > pattern.at_most:
            return None
        facts = [_stored_fact(item) for item in items[-MAX_FACTS:]]
        if "of" not in roles:
            facts.append(_fact(event))
        return facts

    def _on_consecutive(self, compiled, key_id, event, roles) -> list[Fact] | None:  # type: ignore[no-untyped-def]
        if not compiled.extra["all"](event, self.facts):
            broken = self.states.get((compiled.rule.key, key_id))
            if broken is not None and broken.pop("run", None) is not None:
                self.dirty.add((compiled.rule.key, key_id))
            return None
        state = self._state(compiled, key_id)
        run: list[list[Any]] = state.setdefault("run", [])
        run.append([event.timestamp, None, event.id, event.event_type])
        if len(run) < compiled.pattern.times:
            return None
        facts = [_stored_fact(item) for item in run]
        state.pop("run")
        return facts

    def _on_absence(self, compiled, key_id, event, roles) -> list[Fact] | None:  # type: ignore[no-untyped-def]
        key = (compiled.rule.key, key_id)
        state = self.states.get(key)
        if (
            "expect" in roles
            and state is not None
            and "deadline" in state
            and event.timestamp >= state["since"]
        ):
            for name in ("deadline", "since", "cause"):
                state.pop(name, None)
            self.dirty.add(key)
        if "after" in roles and (
            not state or "deadline" not in state or compiled.pattern.restart
        ):
            state = self._state(compiled, key_id)
            due = compiled.deadline(event.occurred_at, compiled.pattern.within)
            state["deadline"] = _stamp(due)
            state["since"] = event.timestamp
            state["cause"] = [event.timestamp, None, event.id, event.event_type]
            heapq.heappush(self._timers, (state["deadline"], compiled.rule.key, key_id))
        return None

    def _expire(self, rule_key: str, key_id: int, deadline: float) -> Firing | None:
        compiled = self._rules.get(rule_key)
        state = self.states.get((rule_key, key_id))
        if compiled is None or state is None or state.get("deadline") != deadline:
            return None  # cancelled, restarted or the rule was removed
        cause = state.pop("cause", None)
        state.pop("deadline")
        state.pop("since", None)
        self.dirty.add((rule_key, key_id))
        facts = [_stored_fact(cause)] if cause else []
        return self._fire(compiled, key_id, _instant(deadline), facts, event=None)

    def _on_sequence(self, compiled, key_id, event, roles) -> list[Fact] | None:  # type: ignore[no-untyped-def]
        known = self.states.get((compiled.rule.key, key_id))
        if "step0" not in roles and not (known and known.get("steps")):
            return None  # nothing begun and this event cannot begin it
        state = self._state(compiled, key_id)
        steps: list[list[Any]] = state.setdefault("steps", [])
        window = compiled.pattern.within.total_seconds()
        if steps and event.timestamp - steps[0][0] > window:
            steps.clear()
        if f"step{len(steps)}" in roles:
            steps.append([event.timestamp, None, event.id, event.event_type])
            self._sweep_later(compiled, key_id, steps[0][0] + window)
        elif not steps or "step0" not in roles:
            return None
        else:
            steps[:] = [[event.timestamp, None, event.id, event.event_type]]
            self._sweep_later(compiled, key_id, event.timestamp + window)
        if len(steps) < len(compiled.pattern.steps):
            return None
        facts = [_stored_fact(item) for item in steps]
        steps.clear()
        return facts

    def _on_change(self, compiled, key_id, event, roles) -> list[Fact] | None:  # type: ignore[no-untyped-def]
        value = compiled.extra["value"](event, self.facts)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        pattern = compiled.pattern
        state = self._state(compiled, key_id)
        points: list[list[Any]] = state.setdefault("points", [])
        horizon = event.timestamp - pattern.within.total_seconds()
        while points and points[0][0] < horizon:
            points.pop(0)
        points.append([event.timestamp, value, event.id, event.event_type])
        self._sweep_later(compiled, key_id, event.timestamp + compiled.window_seconds)
        earlier = points[:-1]
        if not earlier:
            return None
        if pattern.drop_by is not None:
            peak = max(earlier, key=lambda point: point[1])
            hit = peak[1] - value >= pattern.drop_by
        else:
            peak = min(earlier, key=lambda point: point[1])
            hit = value - peak[1] >= pattern.rise_by
        if not hit:
            return None
        facts = [_stored_fact(peak), _fact(event)]
        points[:] = [points[-1]]
        return facts

    # -- firing -----------------------------------------------------------

    def _fire(
        self,
        compiled: _Compiled,
        key_id: int,
        at: dt.datetime,
        facts: list[Fact],
        *,
        event: EngineEvent | None,
    ) -> Firing:
        rule = compiled.rule
        status = self._throttle(compiled, key_id, at)
        arm = self.arm_of(rule, key_id) if self.arm_of and rule.experiment else None
        if status == "fired" and arm == "control":
            status = "holdout"
        trigger = event.id if event is not None else None
        fingerprint = (
            f"{rule.key}:{key_id}:event:{trigger}"
            if trigger is not None
            else f"{rule.key}:{key_id}:deadline:{int(_stamp(at))}"
        )
        return Firing(
            rule_key=rule.key,
            rule_version=compiled.version,
            per=rule.per,
            key_id=key_id,
            fired_at=at,
            facts=facts,
            status=status,
            fingerprint=fingerprint,
            trigger_event_id=trigger,
            rule=rule,
            opportunity_id=event.opportunity_id
            if event
            else _key_if(rule.per, "opportunity", key_id),
            account_id=event.account_id
            if event
            else _key_if(rule.per, "account", key_id),
            actor_id=event.actor_id if event else _key_if(rule.per, "rep", key_id),
            arm=arm,
        )

    def _throttle(self, compiled: _Compiled, key_id: int, at: dt.datetime) -> str:
        throttle = compiled.rule.throttle
        state = self._state(compiled, key_id)
        recent = [
            stamp
            for stamp in state.get("fired", [])
            if stamp > _stamp(at) - throttle.every.total_seconds()
        ]
        if len(recent) >= throttle.at_most:
            state["fired"] = recent
            return "throttled"
        state["fired"] = [*recent, _stamp(at)]
        self._sweep_later(compiled, key_id, _stamp(at) + compiled.throttle_seconds)
        return "fired"


def _oldest_expiry(compiled: _Compiled, state: State) -> float | None:
    """When the oldest timed entry of ``state`` slides out, if it has one."""
    window = compiled.window_seconds
    found = []
    if window is not None:
        for name in ("items", "points", "steps"):
            entries = state.get(name)
            if entries:
                found.append(entries[0][0] + window)
    if state.get("fired"):
        found.append(state["fired"][0] + compiled.throttle_seconds)
    return min(found, default=None)


def _prune(compiled: _Compiled, state: State, before: float) -> None:
    # Mirrors what the pattern handlers drop themselves when the next event
    # comes, for an event at ``before`` (the earliest one still expected).
    seconds = compiled.window_seconds
    if seconds is not None and state.get("items"):
        state["items"] = [item for item in state["items"] if item[0] > before - seconds]
    if seconds is not None and state.get("points"):
        state["points"] = [
            point for point in state["points"] if point[0] >= before - seconds
        ]
    steps = state.get("steps")
    if steps and seconds is not None and before - steps[0][0] > seconds:
        steps.clear()
    if state.get("fired"):
        every = compiled.throttle_seconds
        state["fired"] = [stamp for stamp in state["fired"] if stamp > before - every]


def _key_if(per: str, wanted: str, key_id: int) -> int | None:
    return key_id if per == wanted else None


def _aggregate(items: list[list[Any]], *, distinct: bool, summed: bool) -> float:
    if distinct:
        return float(len({item[1] for item in items if item[1] is not None}))
    if summed:
        return float(sum(item[1] for item in items if isinstance(item[1], int | float)))
    return float(len(items))


def _fact(event: EngineEvent) -> Fact:
    return Fact(event.id, event.event_type, event.occurred_at)


def _stored_fact(item: list[Any]) -> Fact:
    return Fact(int(item[2]), str(item[3]), _instant(float(item[0])))


__all__ = ["Fact", "Firing", "RuleEngine", "plain_deadline", "rule_version"]
