"""Tracker matching throughput beside a bare pyahocorasick automaton.

Messages per second for ``TrackerEngine.match`` on the hand-labelled chat set
(tests/signals/labelled_messages.yaml, zh and en), split into messages that
contain a tracker phrase and messages that contain none, next to a bare
Aho-Corasick automaton over the same phrases that only lower-cases the text
and collects the raw matches. Issue #3 sets the goal: within 1.5x of the bare
automaton. Also reports the one-off costs: compiling the dictionaries and
loading jieba's word list.

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


def main() -> None:
    started = time.perf_counter()
    engine = compile_trackers(default_dictionaries())
    compiled = time.perf_counter()
    engine.warm_up()
    warmed = time.perf_counter()

    corpus = load_corpus()
    with_hits = [item for item in corpus if engine.match(item[0], speaker=item[1])]
    without_hits = [item for item in corpus if item not in with_hits]
    automaton = bare_automaton(engine)

    def match(item: tuple[str, str | None]) -> object:
        return engine.match(item[0], speaker=item[1])

    def bare(item: tuple[str, str | None]) -> object:
        return list(automaton.iter(item[0].lower()))

    print(
        f"{SECONDS:.1f} s per figure; one process, one core; "
        f"{len(engine.phrases)} phrases in {len(engine.trackers)} trackers"
    )
    print(f"  compile dictionaries      {compiled - started:8.3f} s")
    print(f"  load jieba word list      {warmed - compiled:8.3f} s")
    for label, batch in (
        ("all messages", corpus),
        ("messages with a hit", with_hits),
        ("messages without a hit", without_hits),
    ):
        tracked = rate(batch, match)
        baseline = rate(batch, bare)
        print(
            f"  {label:24s}  trackers {tracked:10.0f} msg/s   "
            f"bare automaton {baseline:10.0f} msg/s   "
            f"ratio {baseline / tracked:5.2f}x   ({len(batch)} messages)"
        )


if __name__ == "__main__":
    main()
