"""Behaviour-event ingestion throughput on SQLite and PostgreSQL.

Builds the demo company in a scratch database, generates its behaviour-event
stream (Chinese chats, calls, e-mails, visits, ...) and runs it through the
whole pipeline: the generic connector's JSON parsing (normalise), matching
against the directory, trackers on every text, and storage with raw records,
tracker-hit child events and one audit row per chunk. Generation is timed on
its own first and subtracted, so the figure is the pipeline's.

Settings (environment):
    WAGGLE_BENCH_SIGNALS_EVENTS     events to ingest, default 1000000
    WAGGLE_BENCH_SIGNALS_BACKENDS   default "sqlite,postgresql"
    WAGGLE_BENCH_SIGNALS_CHUNK      records per transaction, default 1000
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from sqlalchemy import func, select

from bench.bench_import import scratch_database
from waggle.core.actor import system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.demo.builder import build_demo_company
from waggle.demo.signals import demo_event_stream, load_deal_facts
from waggle.governance.chain import ensure_chain_head
from waggle.models import load_all_models
from waggle.signals.connectors.generic import GenericEventConnector, draft_to_json
from waggle.signals.events import RawRecord
from waggle.signals.ingest import Pipeline, ingest_batch
from waggle.signals.models import BehaviourEvent
from waggle.signals.trackers import default_engine

EVENTS = int(os.environ.get("WAGGLE_BENCH_SIGNALS_EVENTS", "1000000"))
BACKENDS = os.environ.get("WAGGLE_BENCH_SIGNALS_BACKENDS", "sqlite,postgresql")
CHUNK = int(os.environ.get("WAGGLE_BENCH_SIGNALS_CHUNK", "1000"))
ACTOR = system_actor("bench-signals")
SEED = 7


def main() -> None:
    load_all_models()
    print(f"{EVENTS} demo events through parse, match, trackers and store")
    with tempfile.TemporaryDirectory(prefix="waggle-bench-signals-") as scratch:
        for backend in [b.strip() for b in BACKENDS.split(",") if b.strip()]:
            with scratch_database(backend, Path(scratch)) as url:
                if url is None:
                    print(f"\n[{backend}] skipped: PostgreSQL does not answer")
                    continue
                bench_backend(backend, url)


def bench_backend(backend: str, url: str) -> None:
    print(f"\n[{backend}]")
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        started = time.perf_counter()
        with transaction(sessions) as session:
            ensure_chain_head(session)
            ensure_default_pipeline(session, ACTOR)
            build_demo_company(session, ACTOR, seed=SEED)
        print(f"  demo company built           {time.perf_counter() - started:8.1f} s")
        with sessions() as session:
            deals = load_deal_facts(session, ACTOR)
        now = dt.datetime.now(dt.UTC)

        generation = time_generation(deals, now)
        print(f"  generate + serialise only    {generation:8.1f} s")

        pipeline = Pipeline(GenericEventConnector({}), trackers=default_engine())
        started = time.perf_counter()
        report = ingest_batch(
            sessions, ACTOR, pipeline, records(deals, now), chunk_size=CHUNK
        )
        total = time.perf_counter() - started
        show(backend, report.received, report.events_stored, total - generation)
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(BehaviourEvent))
        print(
            f"  reconciles: {report.reconciles} (received {report.received} = "
            f"accepted {report.accepted} + quarantined {report.quarantined} + "
            f"duplicates {report.duplicates}); rows in behaviour_events: {stored}"
        )
    finally:
        engine.dispose()


def records(deals: list, now: dt.datetime) -> Iterator[RawRecord]:  # type: ignore[type-arg]
    stream = demo_event_stream(deals, seed=SEED, now=now, include_stage_changes=False)
    for number, draft in enumerate(islice(stream, EVENTS), start=1):
        yield RawRecord(draft_to_json(draft), f"demo {number}")


def time_generation(deals: list, now: dt.datetime) -> float:  # type: ignore[type-arg]
    started = time.perf_counter()
    count = sum(1 for _ in records(deals, now))
    seconds = time.perf_counter() - started
    if count < EVENTS:
        print(f"  (the demo stream holds only {count} events)")
    return seconds


def show(backend: str, received: int, stored: int, seconds: float) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  pipeline                     {seconds:8.1f} s  "
        f"{received / seconds:9.0f} events/s  "
        f"({stored} rows stored incl. tracker hits)"
    )
    print(f"  peak memory (process RSS)    {peak:8.0f} MiB")
