"""The rules benchmark's workload and its two comparison evaluators.

The workload is a seeded stream of behaviour events over 10,000 open
opportunities and 500 rules of the shapes the rule language offers (stateless
matches, windowed counts, consecutive runs, absences with deadlines, two-step
sequences), each selective on a type, a tracker category, a speaker and a
``segment`` attribute, as real rules are.

:class:`PlainEvaluator` is the hand-written plain-Python evaluator: every
event is checked against every rule, reading the rule's definition as data,
with per-rule, per-key state in dictionaries. It shares no code with the
engine. :func:`durable_match_firings` runs the stateless rules through
durable_rules, which has no sliding time windows or deadlines of the kind
the other shapes need; each event is asserted as a fact and retracted at
once, since durable_rules hands an event (unlike a fact) to one rule only.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from waggle.rules.conditions import EngineEvent

T0 = dt.datetime(2025, 1, 6, 1, 0, tzinfo=dt.UTC)
TYPES = [
    "chat_message", "tracker_hit", "call", "email_sent", "email_received",
    "meeting_held", "quote_sent", "trial_started", "stage_change",
]  # fmt: skip
CATEGORIES = ["pricing", "objection", "competitor", "budget", "trial", "legal"]
SPEAKERS = ["rep", "customer"]
SEGMENTS = 20
HOUR = 3600.0


def events(count: int, *, keys: int = 10_000, seed: int = 11) -> Iterator[EngineEvent]:
    """Yield ``count`` events in time order, about 6 a minute."""
    rng = random.Random(seed)
    stamp = T0.timestamp()
    for number in range(1, count + 1):
        stamp += rng.expovariate(1 / 10.0)
        kind = rng.choice(TYPES)
        attributes: dict[str, Any] = {"segment": rng.randrange(SEGMENTS)}
        if kind == "tracker_hit":
            attributes["category"] = rng.choice(CATEGORIES)
            attributes["is_negated"] = rng.random() < 0.1
        attributes["flag"] = rng.random() < 0.7
        yield EngineEvent(
            id=number,
            event_type=kind,
            occurred_at=dt.datetime.fromtimestamp(stamp, dt.UTC),
            opportunity_id=rng.randrange(1, keys + 1),
            speaker=rng.choice(SPEAKERS),
            attributes=attributes,
        )


def _filter(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(TYPES)
    spec: dict[str, Any] = {
        "type": kind,
        "where": {"event.segment": rng.randrange(SEGMENTS)},
    }
    if kind == "tracker_hit":
        spec["category"] = rng.choice(CATEGORIES)
    if rng.random() < 0.5:
        spec["speaker"] = rng.choice(SPEAKERS)
    return spec


def rules(count: int = 500, *, seed: int = 5) -> list[dict[str, Any]]:
    """Return ``count`` rule definitions, a fifth of each shape."""
    rng = random.Random(seed)
    shapes = ["match", "count", "consecutive", "absence", "sequence"]
    made = []
    for number in range(count):
        shape = shapes[number % len(shapes)]
        when = _when(shape, rng)
        throttle = {"at_most": 1_000_000, "every": "1m"} if shape == "match" else {
            "at_most": 1, "every": "1d"
        }  # fmt: skip
        made.append({"key": f"r{number:03d}", "name": f"rule {number}", "when": when,
                     "throttle": throttle})  # fmt: skip
    return made


def _when(shape: str, rng: random.Random) -> dict[str, Any]:
    if shape == "match":
        return {"match": _filter(rng)}
    if shape == "count":
        return {"count": {"of": _filter(rng), "within": f"{rng.randint(2, 14)}d",
                          "at_least": rng.randint(2, 4)}}  # fmt: skip
    if shape == "consecutive":
        return {"consecutive": {"of": _filter(rng), "all": {"event.flag": True},
                                "times": rng.randint(2, 3)}}  # fmt: skip
    if shape == "absence":
        return {"absence": {"after": _filter(rng), "expect": _filter(rng),
                            "within": f"{rng.randint(24, 168)}h"}}  # fmt: skip
    return {"sequence": {"steps": [_filter(rng), _filter(rng)],
                         "within": f"{rng.randint(3, 21)}d"}}  # fmt: skip


def _seconds(text: str) -> float:
    units = {"m": 60, "h": 3600, "d": 86400}
    return float(text[:-1]) * units[text[-1]]


class PlainEvaluator:
    """Every rule against every event, definitions read as data each time."""

    def __init__(self, definitions: list[dict[str, Any]]):
        self.rules = definitions
        self.state: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
        self.timers: list[tuple[float, str, int, int]] = []
        self.fired: list[tuple[str, int, float]] = []

    def matches(self, spec: dict[str, Any], event: EngineEvent) -> bool:
        if event.event_type != spec["type"]:
            return False
        attributes = event.attributes
        if "category" in spec and (
            attributes.get("category") != spec["category"]
            or attributes.get("is_negated")
        ):
            return False
        if "speaker" in spec and event.speaker != spec["speaker"]:
            return False
        return all(
            attributes.get(path.removeprefix("event.")) == value
            for path, value in spec["where"].items()
        )

    def process(self, event: EngineEvent) -> None:
        now = event.occurred_at.timestamp()
        self._expire(now)
        key = event.opportunity_id or 0
        for rule in self.rules:
            kind, pattern = next(iter(rule["when"].items()))
            getattr(self, f"_{kind}")(rule, pattern, key, event, now)

    def finish(self, until: float) -> None:
        self._expire(until)

    def _fire(self, rule: dict[str, Any], key: int, at: float) -> None:
        throttle = rule["throttle"]
        state = self.state[(rule["key"], key)]
        every = _seconds(throttle["every"])
        recent = [stamp for stamp in state.get("fired", []) if stamp > at - every]
        if len(recent) >= throttle["at_most"]:
            state["fired"] = recent
            return
        state["fired"] = [*recent, at]
        self.fired.append((rule["key"], key, at))

    def _match(self, rule, pattern, key, event, now) -> None:  # type: ignore[no-untyped-def]
        if self.matches(pattern, event):
            self._fire(rule, key, now)

    def _count(self, rule, pattern, key, event, now) -> None:  # type: ignore[no-untyped-def]
        if not self.matches(pattern["of"], event):
            return
        state = self.state[(rule["key"], key)]
        horizon = now - _seconds(pattern["within"])
        times = [stamp for stamp in state.get("times", []) if stamp > horizon] + [now]
        state["times"] = times
        if len(times) >= pattern["at_least"]:
            self._fire(rule, key, now)

    def _consecutive(self, rule, pattern, key, event, now) -> None:  # type: ignore[no-untyped-def]
        if not self.matches(pattern["of"], event):
            return
        state = self.state[(rule["key"], key)]
        if not event.attributes.get("flag"):
            state["run"] = 0
            return
        state["run"] = state.get("run", 0) + 1
        if state["run"] >= pattern["times"]:
            state["run"] = 0
            self._fire(rule, key, now)

    def _absence(self, rule, pattern, key, event, now) -> None:  # type: ignore[no-untyped-def]
        state = self.state[(rule["key"], key)]
        expected = "deadline" in state and self.matches(pattern["expect"], event)
        if expected and now >= state["since"]:
            del state["deadline"], state["since"]
        if "deadline" not in state and self.matches(pattern["after"], event):
            state["deadline"] = now + _seconds(pattern["within"])
            state["since"] = now
            self.timers.append((state["deadline"], rule["key"], key, 0))

    def _expire(self, now: float) -> None:
        due = [timer for timer in self.timers if timer[0] < now]
        if not due:
            return
        self.timers = [timer for timer in self.timers if timer[0] >= now]
        by_key = {rule["key"]: rule for rule in self.rules}
        for deadline, rule_key, key, _ in sorted(due):
            state = self.state[(rule_key, key)]
            if state.get("deadline") == deadline:
                del state["deadline"], state["since"]
                self._fire(by_key[rule_key], key, deadline)

    def _sequence(self, rule, pattern, key, event, now) -> None:  # type: ignore[no-untyped-def]
        state = self.state[(rule["key"], key)]
        first, second = pattern["steps"]
        started = state.get("started")
        if started is not None and now - started > _seconds(pattern["within"]):
            started = state["started"] = None
        if started is not None and self.matches(second, event):
            state["started"] = None
            self._fire(rule, key, now)
        elif self.matches(first, event):
            state["started"] = now


_RULESET_NUMBERS = itertools.count(1)


def durable_match_firings(
    definitions: list[dict[str, Any]], stream: list[EngineEvent]
) -> tuple[set[tuple[str, int, float]], float] | None:
    """Run the stateless rules through durable_rules; ``None`` if not installed."""
    try:
        from durable.engine import MessageNotHandledException
        from durable.lang import assert_fact, m, retract_fact, ruleset, when_all
    except ImportError:
        return None
    import time

    fired: set[tuple[str, int, float]] = set()
    matches = [rule for rule in definitions if "match" in rule["when"]]
    name = f"waggle_bench_{next(_RULESET_NUMBERS)}"  # a name registers once
    with ruleset(name):
        for rule in matches:
            _durable_rule(rule, m, when_all, fired)
    started = time.perf_counter()
    for event in stream:
        message = {
            "id": event.id, "type": event.event_type, "speaker": event.speaker,
            "opportunity": event.opportunity_id, "at": event.occurred_at.timestamp(),
            "category": event.attributes.get("category", ""),
            "negated": bool(event.attributes.get("is_negated", False)),
            "segment": event.attributes["segment"],
        }  # fmt: skip
        # Facts, not events: durable_rules hands an event to one rule only,
        # while every matching rule sees a fact; retracted at once.
        try:
            assert_fact(name, message)
        except MessageNotHandledException:
            continue
        retract_fact(name, message)
    return fired, time.perf_counter() - started


def _durable_rule(rule: dict[str, Any], m: Any, when_all: Any, fired: set) -> None:  # type: ignore[type-arg]
    spec = rule["when"]["match"]
    condition = (m.type == spec["type"]) & (m.segment == spec["where"]["event.segment"])
    if "category" in spec:
        condition = condition & (m.category == spec["category"]) & (m.negated == False)  # noqa: E712
    if "speaker" in spec:
        condition = condition & (m.speaker == spec["speaker"])
    key = rule["key"]

    def action(c: Any) -> None:
        fired.add((key, int(c.m.opportunity), float(c.m.at)))

    action.__name__ = f"rule_{key}"
    when_all(condition)(action)
