"""Tracker matching throughput beside a bare pyahocorasick automaton.

Messages per second for ``TrackerEngine.match`` on the hand-labelled chat set
(tests/signals/labelled_messages.yaml, zh and en), split into messages that
contain a tracker phrase and messages that contain none, for the native (C)
matcher and the pure-Python one, next to a bare Aho-Corasick automaton over
the same phrases that only lower-cases the text and collects the raw matches.
Issue #3 sets the goal: within 1.5x of the bare automaton. Also reports the
one-off costs: compiling the dictionaries, loading jieba's word list and
copying it for the native matcher.

Settings (environment):
    WAGGLE_BENCH_TRACKERS_SECONDS   time spent per figure, default 1.0
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ahocorasick  # type: ignore[import-not-found]  # ships no type stubs
import yaml

from waggle.signals.trackers import (
    TrackerEngine,
    compile_trackers,
    default_dictionaries,
)

Item = tuple[str, str | None]

SECONDS = float(os.environ.get("WAGGLE_BENCH_TRACKERS_SECONDS", "1.0"))
CORPUS = (
    Path(__file__).resolve().parent.parent
    / "tests"
    / "signals"
    / "labelled_messages.yaml"
)


def load_corpus() -> list[tuple[str, str | None]]:
    """Return (text, speaker) pairs of the labelled set."""
    data = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    return [(message["text"], message["speaker"]) for message in data["messages"]]


def rate(batch: Sequence[Any], operation: Callable[[Any], object]) -> float:
    """Return items per second of ``operation`` over ``batch``, for SECONDS."""
    for item in batch:  # warm-up
        operation(item)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < SECONDS:
        for item in batch:
            operation(item)
        count += len(batch)
    return count / elapsed


def bare_automaton(engine: TrackerEngine) -> Any:
    automaton = ahocorasick.Automaton()
    for phrase in engine.phrases:
        automaton.add_word(phrase, phrase)
    automaton.make_automaton()
    return automaton


def matcher(engine: TrackerEngine) -> Callable[[Item], object]:
    def match(item: Item) -> object:
        return engine.match(item[0], speaker=item[1])

    return match


# What warm_up() does for each matcher; the Python one runs first.
WARM_UP = {"Python": "load jieba word list", "native": "copy it for the C code"}


def compile_engines() -> tuple[list[tuple[str, TrackerEngine]], list[str]]:
    """Return the native (when built) and Python engines, and their one-off costs."""
    engines: list[tuple[str, TrackerEngine]] = []
    costs = []
    for name, native in (("Python", False), ("native", True)):
        started = time.perf_counter()
        try:
            engine = compile_trackers(default_dictionaries(), native=native)
        except ImportError as exc:
            costs.append(f"  native matcher not built ({exc}): Python only")
            continue
        compiled = time.perf_counter()
        engine.warm_up()
        warmed = time.perf_counter()
        costs.append(f"  compile dictionaries, {name:6s}  {compiled - started:8.3f} s")
        costs.append(f"  {WARM_UP[name]:28s}  {warmed - compiled:8.3f} s")
        engines.insert(0, (name, engine))
    return engines, costs


def main() -> None:
    engines, costs = compile_engines()
    python = engines[-1][1]
    corpus = load_corpus()
    with_hits = [item for item in corpus if python.match(item[0], speaker=item[1])]
    without_hits = [item for item in corpus if item not in with_hits]
    automaton = bare_automaton(python)

    def bare(item: Item) -> object:
        return list(automaton.iter(item[0].lower()))

    print(
        f"{SECONDS:.1f} s per figure; one process, one core; "
        f"{len(python.phrases)} phrases in {len(python.trackers)} trackers"
    )
    print("\n".join(costs))
    for label, batch in (
        ("all messages", corpus),
        ("messages with a hit", with_hits),
        ("messages without a hit", without_hits),
    ):
        baseline = rate(batch, bare)
        print(f"  {label} ({len(batch)} messages)")
        print(f"    bare automaton   {baseline:10.0f} msg/s")
        for name, engine in engines:
            tracked = rate(batch, matcher(engine))
            print(
                f"    trackers {name:6s}  {tracked:10.0f} msg/s   "
                f"ratio {baseline / tracked:5.2f}x the bare automaton's time"
            )


if __name__ == "__main__":
    main()
