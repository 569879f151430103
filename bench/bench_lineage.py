"""What lineage costs the dashboard: headline figures with provenance or without.

Builds the demo company (about 20,000 opportunities) in a scratch SQLite
database, adds WAGGLE_BENCH_LINEAGE_EVENTS interactions over the last four
weeks (the captured-share tile reads them), then times, as sales ops (every
row) and as one manager (a team):

* the dashboard's figures with their provenance (``dashboard_specs``: every
  tile, the stage chart and the captured share), on a first view that stores
  new provenance rows and on a repeat view that finds them unchanged;
* the same figures by the queries the page used before lineage (amount and
  count by stage, the accounts count, the coverage report);

and prints the ratio and the size of the record ids one view stores.

Settings (environment):
    WAGGLE_BENCH_LINEAGE_EVENTS   interactions in the window, default 60000
    WAGGLE_BENCH_LINEAGE_SCALE    demo company scale, default 1.0
    WAGGLE_BENCH_LINEAGE_VIEWS    repeat views timed, default 5
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.crm.models import Pipeline
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.crm.service import ACCOUNTS
from waggle.demo.builder import build_demo_company
from waggle.governance.chain import ensure_chain_head
from waggle.governance.lineage import compute_figures
from waggle.governance.lineage_models import FigureProvenance
from waggle.identity.models import Employee, User
from waggle.identity.service import actor_for_user
from waggle.models import load_all_models
from waggle.signals.models import BehaviourEvent
from waggle.signals.service import captured_share
from waggle.web.lineage_pages import dashboard_specs
from waggle.web.queries import count_visible, stage_totals

EVENTS = int(os.environ.get("WAGGLE_BENCH_LINEAGE_EVENTS", "60000"))
SCALE = float(os.environ.get("WAGGLE_BENCH_LINEAGE_SCALE", "1.0"))
VIEWS = int(os.environ.get("WAGGLE_BENCH_LINEAGE_VIEWS", "5"))
ACTOR = system_actor("bench-lineage")
WINDOW = dt.timedelta(weeks=4)
CHUNK = 5_000


def main() -> None:
    load_all_models()
    with tempfile.TemporaryDirectory(prefix="waggle-bench-lineage-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'lineage.db'}"
        upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        _build(sessions)
        print(f"demo company (scale {SCALE}) and {EVENTS:,} interactions")
        for actor in (_actor(sessions, "sales_ops"), _actor(sessions, "manager")):
            _measure(sessions, actor)
        engine.dispose()


def _build(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        ensure_chain_head(session)
        ensure_default_pipeline(session, ACTOR)
        build_demo_company(session, ACTOR, scale=SCALE)
    with transaction(sessions) as session:
        people = list(session.scalars(select(Employee.id)))
    until = now()
    rows: list[dict[str, object]] = [
        {
            "source": "bench",
            "source_id": f"bench-{number}",
            "event_type": "chat_message" if number % 3 else "call",
            "channel": "wecom" if number % 3 else "phone",
            "occurred_at": until - WINDOW * (number / max(EVENTS, 1)),
            "actor_id": people[number % len(people)],
            "is_automatic": number % 4 != 0,
            "attributes": {},
            "recipient_refs": [],
            "match_status": "matched",
            "created_at": until,
        }
        for number in range(EVENTS)
    ]
    for start in range(0, len(rows), CHUNK):
        with transaction(sessions) as session:
            session.execute(insert(BehaviourEvent), rows[start : start + CHUNK])


def _actor(sessions: sessionmaker[Session], role: str) -> Actor:
    with sessions() as session:
        users = session.scalars(select(User).order_by(User.id))
        user = next(u for u in users if role in u.role_names and u.employee_id)
        return actor_for_user(user)


def _measure(sessions: sessionmaker[Session], actor: Actor) -> None:
    with sessions() as session:
        pipeline = session.scalars(select(Pipeline).order_by(Pipeline.id)).first()
        assert pipeline is not None
        pipeline_id = pipeline.id
    until = now().replace(minute=0, second=0, microsecond=0)

    def with_lineage(session: Session) -> None:
        pipeline = session.get_one(Pipeline, pipeline_id)
        specs = dashboard_specs(pipeline, with_accounts=True, capture_until=until)
        compute_figures(session, actor, specs, reuse=True)

    def without_lineage(session: Session) -> None:
        stage_totals(session, actor, pipeline_id=pipeline_id)
        count_visible(session, actor, ACCOUNTS)
        captured_share(session, actor, since=until - WINDOW, until=until)

    stored_before = _stored_ids(sessions)
    first = _timed(sessions, with_lineage)
    stored = _stored_ids(sessions) - stored_before
    repeat = statistics.median(_timed(sessions, with_lineage) for _ in range(VIEWS))
    plain = statistics.median(_timed(sessions, without_lineage) for _ in range(VIEWS))
    print(
        f"  {actor.username} ({', '.join(sorted(actor.roles))}): with lineage "
        f"{first * 1000:.0f} ms first view, {repeat * 1000:.0f} ms repeat "
        f"(median of {VIEWS}); plain queries {plain * 1000:.0f} ms; ratio "
        f"{repeat / plain:.2f}; a first view stores {stored / 1024:.0f} KiB of "
        "record ids"
    )


def _timed(sessions: sessionmaker[Session], work: Callable[[Session], None]) -> float:
    started = time.perf_counter()
    with transaction(sessions) as session:
        work(session)
    return time.perf_counter() - started


def _stored_ids(sessions: sessionmaker[Session]) -> int:
    """Return the bytes of the stored record id lists, as JSON."""
    with sessions() as session:
        lists = session.scalars(select(FigureProvenance.record_ids))
        return sum(len(json.dumps(ids)) for ids in lists)


if __name__ == "__main__":
    main()
