"""The sovereignty drill on the full demo company: time per phase and in total.

Builds the demo company (about 300 people, 5,000 accounts, 20,000
opportunities and their history) in a scratch SQLite database, signs an audit
checkpoint, and runs the whole drill: export to CSV, import into a fresh
instance, compare every table and the audit chain, sign the package. Then,
when PostgreSQL answers, the same export goes into a fresh PostgreSQL
database as the target.

Settings (environment):
    WAGGLE_BENCH_DRILL_SCALE     demo company scale, default 1.0
    WAGGLE_BENCH_DRILL_TARGETS   default "sqlite,postgresql"
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.bench_import import scratch_database
from waggle.core.actor import system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.core.settings import Settings
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.demo.builder import build_demo_company
from waggle.governance.audit import audit_signing_key
from waggle.governance.chain import create_checkpoint, ensure_chain_head
from waggle.governance.drill import DrillReport, run_drill
from waggle.models import load_all_models

SCALE = float(os.environ.get("WAGGLE_BENCH_DRILL_SCALE", "1.0"))
TARGETS = os.environ.get("WAGGLE_BENCH_DRILL_TARGETS", "sqlite,postgresql")
ACTOR = system_actor("bench-drill")
SEED = 7


def main() -> None:
    load_all_models()
    with tempfile.TemporaryDirectory(prefix="waggle-bench-drill-") as scratch:
        folder = Path(scratch)
        source = f"sqlite:///{folder / 'source.db'}"
        settings = Settings(
            database_url=source, data_dir=folder / "data", secret_key="bench"
        )
        build_source(settings)
        for backend in [b.strip() for b in TARGETS.split(",") if b.strip()]:
            run_against(backend, settings, folder)


def build_source(settings: Settings) -> None:
    started = time.perf_counter()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            ensure_chain_head(session)
            ensure_default_pipeline(session, ACTOR)
            build_demo_company(session, ACTOR, seed=SEED, scale=SCALE)
        with transaction(make_session_factory(engine)) as session:
            create_checkpoint(session, audit_signing_key(settings))
    finally:
        engine.dispose()
    print(
        f"demo company (scale {SCALE}) built in {time.perf_counter() - started:.1f} s"
    )


def run_against(backend: str, settings: Settings, folder: Path) -> None:
    out = folder / f"drill-{backend}"
    if backend == "sqlite":
        report = run_drill(settings, ACTOR, out=out)
        show(backend, report)
        return
    with scratch_database(backend, folder) as target_url:
        if target_url is None:
            print(f"\n[{backend} target] skipped: PostgreSQL does not answer")
            return
        report = run_drill(settings, ACTOR, out=out, target_url=target_url)
        show(backend, report)


def show(backend: str, report: DrillReport) -> None:
    totals = report.totals()
    print(f"\n[SQLite source -> {backend} target]")
    for phase, seconds in report.phases.items():
        print(f"  {phase:<28} {seconds:8.2f} s")
    print(f"  {'total':<28} {sum(report.phases.values()):8.2f} s")
    rows = totals["source_rows"]
    print(
        f"  tables matched               {totals['tables_matched']}/{totals['tables']}"
    )
    print(f"  rows matched                 {totals['rows_matched']:,}/{rows:,}")
    chain = report.comparison.chain
    verdict = "verified" if chain.is_verified else "FAILED"
    print(
        f"  audit chain                  {verdict} ({chain.entries:,} entries,"
        f" checkpoint matched: {chain.checkpoint_matched})"
    )
    export_rate = rows / report.phases["export"] if report.phases["export"] else 0
    print(f"  export rate                  {export_rate:8,.0f} rows/s")
    if not report.is_ok:
        print(f"  first mismatch: {report.first_mismatch}")
