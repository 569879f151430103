"""The engine's equality index and its state sweep change no firing.

Many rules of one event type that differ in one tested field are indexed by
that field; the index must only skip rules an event cannot match. The sweep
drops state that has slid out of every window; it must only drop state no
later event could use.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from waggle.rules.conditions import EngineEvent
from waggle.rules.engine import Firing, RuleEngine
from waggle.rules.language import parse_rule

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
SEGMENTS = ["smb", "mid", "enterprise", "public"]
NO_THROTTLE = {"at_most": 1_000_000, "every": "1m"}


def _rules() -> list[Any]:
    definitions: list[dict[str, Any]] = []
    for number in range(24):
        segment = SEGMENTS[number % len(SEGMENTS)]
        where: dict[str, Any] = {"event.segment": segment}
        if number % 3 == 0:
            where = {"event.segment": {"eq": segment}, "event.flag": True}
        if number % 5 == 0:
            where = {"event.flag": False}  # no segment test: never indexed
        match = {"type": "chat_message", "where": where}
        if number % 2:
            match["speaker"] = "customer"
        when = (
            {"match": match}
            if number % 4
            else {"count": {"of": match, "within": "2d", "at_least": 2}}
        )
        definitions.append(
            {
                "key": f"r{number:02d}",
                "name": f"rule {number}",
                "when": when,
                "throttle": NO_THROTTLE,
            }
        )
    return [parse_rule(definition) for definition in definitions]


def _events(count: int, *, seed: int) -> list[EngineEvent]:
    rng = random.Random(seed)
    made, hours = [], 0.0
    for number in range(1, count + 1):
        hours += rng.choice([0.5, 3, 9, 30])
        made.append(
            EngineEvent(
                id=number,
                event_type="chat_message",
                occurred_at=T0 + dt.timedelta(hours=hours),
                opportunity_id=rng.randint(1, 6),
                speaker=rng.choice(["rep", "customer"]),
                attributes={
                    "segment": rng.choice([*SEGMENTS, "unknown"]),
                    "flag": rng.random() < 0.5,
                },
            )
        )
    return made


def _signature(firings: list[Firing]) -> list[tuple[Any, ...]]:
    return [
        (f.rule_key, f.key_id, f.fired_at, tuple(x.event_id for x in f.facts))
        for f in firings
    ]


def _run(
    rules: list[Any], events: list[EngineEvent], *, sweeping: bool = True
) -> tuple[RuleEngine, list[Any]]:
    engine = RuleEngine(sweeping=sweeping)
    engine.load_rules(rules)
    found: list[Firing] = []
    for event in events:
        found.extend(engine.process(event))
    return engine, _signature(found)


def test_indexed_dispatch_fires_exactly_what_one_engine_per_rule_fires() -> None:
    """All rules in one (indexed) engine fire what each rule fires alone, in order."""
    rules, events = _rules(), _events(400, seed=11)

    _, together = _run(rules, events)
    # An engine of one rule has one listener per type, so it builds no index.
    alone: list[tuple[Any, ...]] = []
    per_rule = {rule.key: _run([rule], events)[1] for rule in rules}
    by_event: dict[int, list[tuple[Any, ...]]] = {}
    for rule in rules:
        for firing in per_rule[rule.key]:
            by_event.setdefault(firing[3][-1], []).append(firing)
    for event in events:
        alone.extend(by_event.get(event.id, []))

    assert together == alone
    assert len(together) > 100  # the stream really fires many of the rules


def test_an_event_meets_only_the_rules_expecting_its_indexed_value() -> None:
    """The index hands an enterprise chat to enterprise rules and unindexed ones."""
    engine = RuleEngine()
    engine.load_rules(_rules())
    event = EngineEvent(
        id=1,
        event_type="chat_message",
        occurred_at=T0,
        attributes={"segment": "enterprise", "flag": True},
    )

    dispatch = engine._by_type["chat_message"]
    keys = [compiled.rule.key for _, compiled, _ in dispatch.candidates(event, None)]  # type: ignore[arg-type]

    assert keys == [
        "r00",
        "r02",
        "r05",
        "r06",
        "r10",
        "r14",
        "r15",
        "r18",
        "r20",
        "r22",
    ]


def test_sweeping_changes_no_firing_and_drops_expired_state() -> None:
    """With and without sweeps the firings agree; sweeps leave fewer states."""
    rules, events = _rules(), _events(600, seed=5)

    swept_engine, swept = _run(rules, events)
    kept_engine, kept = _run(rules, events, sweeping=False)

    assert swept == kept
    assert len(swept_engine.states) < len(kept_engine.states)


def test_a_count_window_that_slid_past_is_swept_with_its_state() -> None:
    """One chat, then the window (2 days) and the grace (1 day) pass: state gone."""
    rule = parse_rule(
        {
            "key": "twice",
            "name": "three chats in two days",
            "when": {
                "count": {
                    "of": {"type": "chat_message"},
                    "within": "2d",
                    "at_least": 3,
                }
            },
        }
    )
    engine = RuleEngine()
    engine.load_rules([rule])
    first = EngineEvent(
        id=1, event_type="chat_message", occurred_at=T0, opportunity_id=7
    )
    engine.process(first)
    assert ("twice", 7) in engine.states

    engine.dirty.clear()

    engine.advance(T0 + dt.timedelta(days=3))
    kept = ("twice", 7) in engine.states
    engine.advance(T0 + dt.timedelta(days=3, seconds=1))

    assert kept  # not a second before the window and the grace are over
    assert ("twice", 7) not in engine.states
    assert ("twice", 7) in engine.dirty  # the store deletes its row too
