"""Rule engine throughput and latency beside a plain evaluator and durable_rules.

The workload (see ``bench/rules_workload.py``): 500 rules of five shapes over a
seeded stream of events across 10,000 open opportunities. Figures:

* the engine's events per second and p50/p99 latency per event over the
  whole stream;
* the same for the hand-written plain-Python evaluator, on a prefix of the
  stream (it checks every rule for every event), with both firing sets
  compared on that prefix;
* durable_rules on the stateless rules (the only shape it can express here),
  its firing set compared with the engine's for those rules;
* the engine's state memory per 10,000 open opportunities.

Settings (environment):
    WAGGLE_BENCH_RULES_EVENTS      events through the engine, default 1000000
    WAGGLE_BENCH_RULES_BASELINE    events through the baselines, default 100000
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from bench.rules_workload import PlainEvaluator, durable_match_firings, events, rules
from waggle.rules.engine import RuleEngine
from waggle.rules.language import parse_rule

EVENTS = int(os.environ.get("WAGGLE_BENCH_RULES_EVENTS", "1000000"))
BASELINE = int(os.environ.get("WAGGLE_BENCH_RULES_BASELINE", "100000"))
KEYS = 10_000


def main() -> None:
    definitions = rules(500)
    parsed = [parse_rule(definition) for definition in definitions]
    print(f"{len(parsed)} rules, {EVENTS} events over {KEYS} open opportunities")

    engine, seconds, latencies, firings = run_engine(parsed, events(EVENTS, keys=KEYS))
    show("engine", EVENTS, seconds, latencies, len(firings))
    held = state_bytes(engine.states)
    keys = max(1, len({key for _, key in engine.states}))
    print(
        f"  state: {held / 2**20:.1f} MiB for {keys} keys = "
        f"{held / keys * 10_000 / 2**20:.1f} MiB per 10,000 open opportunities"
    )

    prefix = list(events(BASELINE, keys=KEYS))
    _, _, _, engine_prefix = run_engine(parsed, prefix)
    plain, seconds, latencies = run_plain(definitions, prefix)
    show("plain Python", BASELINE, seconds, latencies, len(plain.fired))
    same = set(plain.fired) == set(engine_prefix)
    print(f"  firing sets equal to the engine's on the same {BASELINE} events: {same}")

    compare_durable(definitions, prefix, engine_prefix)


def run_engine(parsed: list[Any], stream: Iterable[Any]):  # type: ignore[no-untyped-def]
    engine = RuleEngine()
    engine.load_rules(parsed)
    latencies: list[int] = []
    firings: list[tuple[str, int, float]] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    last = None
    for event in stream:
        before = clock()
        found = engine.process(event)
        latencies.append(clock() - before)
        last = event
        for firing in found:
            if firing.status == "fired":
                firings.append(
                    (firing.rule_key, firing.key_id, firing.fired_at.timestamp())
                )
    if last is not None:
        for firing in engine.advance(last.occurred_at):
            if firing.status == "fired":
                firings.append(
                    (firing.rule_key, firing.key_id, firing.fired_at.timestamp())
                )
    return engine, time.perf_counter() - started, latencies, firings


def run_plain(definitions: list[dict[str, Any]], stream: list[Any]):  # type: ignore[no-untyped-def]
    plain = PlainEvaluator(definitions)
    latencies: list[int] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    for event in stream:
        before = clock()
        plain.process(event)
        latencies.append(clock() - before)
    plain.finish(stream[-1].occurred_at.timestamp())
    return plain, time.perf_counter() - started, latencies


def compare_durable(definitions, prefix, engine_prefix) -> None:  # type: ignore[no-untyped-def]
    result = durable_match_firings(definitions, prefix)
    if result is None:
        print("\n[durable_rules] not installed (`make bench` installs it)")
        return
    fired, seconds = result
    stateless = [rule for rule in definitions if "match" in rule["when"]]
    matches = {rule["key"] for rule in stateless}
    ours = {firing for firing in engine_prefix if firing[0] in matches}
    print(f"\n[durable_rules] stateless rules ({len(matches)} of {len(definitions)})")
    rate = BASELINE / seconds
    print(f"  {BASELINE} events in {seconds:.1f} s = {rate:,.0f} events/s; "
          f"{len(fired)} firings; equal to the engine's firings of those rules: "
          f"{fired == ours}")  # fmt: skip
    # The same rules alone through the engine, for a like-for-like rate.
    _, alone, latencies, found = run_engine(
        [parse_rule(rule) for rule in stateless], prefix
    )
    show("engine, the same stateless rules", BASELINE, alone, latencies, len(found))
    print(f"  engine / durable_rules events per second: {seconds / alone:.2f}x")


def show(
    label: str, count: int, seconds: float, latencies: list[int], fired: int
) -> None:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[int(len(ordered) * 0.99)] / 1000
    print(f"\n[{label}]")
    print(f"  {count} events in {seconds:.1f} s = {count / seconds:,.0f} events/s; "
          f"p50 {p50:.1f} us, p99 {p99:.1f} us per event; {fired} firings")  # fmt: skip


def state_bytes(value: Any) -> int:
    """Deep size of the engine's state (dicts, lists, numbers, strings)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(state_bytes(k) + state_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return size + sum(state_bytes(item) for item in value)
    return size
