"""The engine against a tiny reference evaluator, on random event streams.

The reference recomputes each pattern per key from the whole list of events,
with none of the engine's indexing, compiled predicates or incremental
state. The same streams also run through an engine that is stopped half-way,
its state written to JSON and read back into a new engine: a restart must
change nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.rules.conditions import EngineEvent
from waggle.rules.engine import RuleEngine
from waggle.rules.language import parse_rule

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
TYPES = ["chat_message", "call", "quote_sent", "meeting_held"]
HOUR = 3600.0
NO_THROTTLE = {"at_most": 1_000_000, "every": "1m"}
UNTIL = T0 + dt.timedelta(days=400)

events_strategy = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.integers(min_value=1, max_value=3),  # opportunity
        st.integers(min_value=1, max_value=40),  # hours since the previous event
        st.booleans(),  # flag
    ),
    max_size=60,
)


def build(raw: list[tuple[str, int, int, bool]]) -> list[EngineEvent]:
    events, hours = [], 0
    for number, (kind, key, gap, flag) in enumerate(raw, start=1):
        hours += gap
        events.append(
            EngineEvent(
                id=number,
                event_type=kind,
                occurred_at=T0 + dt.timedelta(hours=hours),
                opportunity_id=key,
                attributes={"flag": flag},
            )
        )
    return events


def engine_firings(rule, events, until, *, stop_at=None):
    engine = RuleEngine()
    engine.load_rules([rule])
    found = []
    for index, event in enumerate(events):
        if stop_at is not None and index == stop_at:
            engine = restarted(engine, rule)
        found.extend(engine.process(event))
    found.extend(engine.advance(until))
    return sorted(
        (f.key_id, f.fired_at.timestamp(), tuple(x.event_id for x in f.facts))
        for f in found
    )


def restarted(engine: RuleEngine, rule: Any) -> RuleEngine:
    """Write the state to JSON, read it into a new engine, as after a restart."""
    saved = json.loads(
        json.dumps({f"{k[0]}|{k[1]}": v for k, v in engine.states.items()})
    )
    fresh = RuleEngine()
    fresh.load_rules([rule])
    states = {
        (key.split("|")[0], int(key.split("|")[1])): value
        for key, value in saved.items()
    }
    fresh.restore(states, engine.watermark)
    return fresh


def per_key(events: list[EngineEvent]) -> dict[int, list[EngineEvent]]:
    grouped: dict[int, list[EngineEvent]] = defaultdict(list)
    for event in events:
        grouped[event.opportunity_id or 0].append(event)
    return grouped


def ts(event: EngineEvent) -> float:
    return event.occurred_at.timestamp()


def reference_count(events, kind, window_hours, at_least):
    found = []
    for key, mine in per_key(events).items():
        matching = [e for e in mine if e.event_type == kind]
        for index, event in enumerate(matching):
            horizon = ts(event) - window_hours * HOUR
            inside = [e for e in matching[: index + 1] if ts(e) > horizon]
            if len(inside) >= at_least:
                found.append((key, ts(event), tuple(e.id for e in inside[-20:])))
    return sorted(found)


def reference_consecutive(events, kind, times):
    found = []
    for key, mine in per_key(events).items():
        run: list[EngineEvent] = []
        for event in (e for e in mine if e.event_type == kind):
            if not event.attributes["flag"]:
                run = []
                continue
            run.append(event)
            if len(run) == times:
                found.append((key, ts(event), tuple(e.id for e in run)))
                run = []
    return sorted(found)


def reference_absence(events, after, expect, window_hours, restart, until):
    found = []
    for key, mine in per_key(events).items():
        pending: tuple[float, float, int] | None = None
        for event in mine:
            if pending and pending[0] < ts(event):
                found.append((key, pending[0], (pending[2],)))
                pending = None
            if event.event_type == expect and pending and ts(event) >= pending[1]:
                pending = None
            if event.event_type == after and (pending is None or restart):
                pending = (ts(event) + window_hours * HOUR, ts(event), event.id)
        if pending and pending[0] < until:
            found.append((key, pending[0], (pending[2],)))
    return sorted(found)


def reference_sequence(events, first, second, window_hours):
    found = []
    for key, mine in per_key(events).items():
        started: EngineEvent | None = None
        for event in mine:
            if started and ts(event) - ts(started) > window_hours * HOUR:
                started = None
            if started is not None and event.event_type == second:
                found.append((key, ts(event), (started.id, event.id)))
                started = None
            elif event.event_type == first:
                started = event
    return sorted(found)


def rule(when: dict[str, Any]):
    return parse_rule({"key": "p", "name": "p", "when": when, "throttle": NO_THROTTLE})


@settings(max_examples=150, deadline=None)
@given(
    raw=events_strategy,
    window=st.integers(1, 72),
    at_least=st.integers(1, 4),
    stop=st.integers(0, 60),
)
def test_count_matches_the_reference(raw, window, at_least, stop):
    """Windowed counts fire exactly where the reference says, across a restart."""
    events = build(raw)
    counted = rule(
        {
            "count": {
                "of": {"type": "call"},
                "within": f"{window}h",
                "at_least": at_least,
            }
        }
    )

    expected = reference_count(events, "call", window, at_least)

    assert engine_firings(counted, events, UNTIL) == expected
    assert engine_firings(counted, events, UNTIL, stop_at=stop) == expected


@settings(max_examples=150, deadline=None)
@given(raw=events_strategy, times=st.integers(2, 4), stop=st.integers(0, 60))
def test_consecutive_matches_the_reference(raw, times, stop):
    """Runs of flagged events fire exactly where the reference says."""
    events = build(raw)
    run = rule(
        {
            "consecutive": {
                "of": {"type": "chat_message"},
                "all": {"event.flag": True},
                "times": times,
            }
        }
    )

    expected = reference_consecutive(events, "chat_message", times)

    assert engine_firings(run, events, UNTIL) == expected
    assert engine_firings(run, events, UNTIL, stop_at=stop) == expected


@settings(max_examples=150, deadline=None)
@given(
    raw=events_strategy,
    window=st.integers(1, 96),
    restart=st.booleans(),
    stop=st.integers(0, 60),
)
def test_absence_matches_the_reference(raw, window, restart, stop):
    """Deadlines fire, are cancelled and restart exactly as the reference says."""
    events = build(raw)
    silent = rule(
        {
            "absence": {
                "after": {"type": "quote_sent"},
                "expect": {"type": "chat_message"},
                "within": f"{window}h",
                "restart": restart,
            }
        }
    )

    expected = reference_absence(
        events, "quote_sent", "chat_message", window, restart, UNTIL.timestamp()
    )

    assert engine_firings(silent, events, UNTIL) == expected
    assert engine_firings(silent, events, UNTIL, stop_at=stop) == expected


@settings(max_examples=150, deadline=None)
@given(raw=events_strategy, window=st.integers(1, 120), stop=st.integers(0, 60))
def test_sequence_matches_the_reference(raw, window, stop):
    """Two-step sequences fire exactly where the reference says."""
    events = build(raw)
    ordered = rule(
        {
            "sequence": {
                "steps": [{"type": "quote_sent"}, {"type": "meeting_held"}],
                "within": f"{window}h",
            }
        }
    )

    expected = reference_sequence(events, "quote_sent", "meeting_held", window)

    assert engine_firings(ordered, events, UNTIL) == expected
    assert engine_firings(ordered, events, UNTIL, stop_at=stop) == expected
