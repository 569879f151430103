"""Feeding the demo company's behaviour-event stream into the pipeline.

The stream (about 1.5 million events over two years) takes minutes to ingest,
so ``waggle serve --feed-demo-signals`` runs it on a background thread once
the demo company exists, while the server already answers; ``waggle signals
demo`` runs it in the foreground. Either way it is an ordinary batch: run
twice, the second run stores nothing.
"""

from __future__ import annotations

import logging
import threading
from itertools import islice

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now
from waggle.signals.connectors.generic import GenericEventConnector, draft_to_json
from waggle.signals.events import RawRecord
from waggle.signals.ingest import BatchReport, Pipeline, Progress, ingest_batch
from waggle.signals.models import IngestBatch
from waggle.signals.trackers import default_engine

logger = logging.getLogger(__name__)

DEMO_LABEL = "demo stream"
DEMO_SEED = 7


def feed_demo_stream(
    sessions: sessionmaker[Session],
    actor: Actor,
    *,
    events: int | None = None,
    seed: int = DEMO_SEED,
    progress: Progress | None = None,
) -> BatchReport:
    """Ingest the demo stream of the opportunities ``actor`` may see.

    Stage changes are left out of the stream: the ``crm`` source passes the
    demo's own stage history in.

    Raises:
        PolicyDenied: the actor may not read the deals or import events.
    """
    from waggle.demo.signals import demo_event_stream, load_deal_facts

    with sessions() as session:
        deals = load_deal_facts(session, actor)
        session.commit()
    stream = demo_event_stream(deals, seed=seed, now=now(), include_stage_changes=False)
    records = (
        RawRecord(draft_to_json(draft), f"demo event {number}")
        for number, draft in enumerate(islice(stream, events), start=1)
    )
    pipeline = Pipeline(GenericEventConnector({}), trackers=default_engine())
    return ingest_batch(
        sessions,
        actor,
        pipeline,
        records,
        label=DEMO_LABEL,
        chunk_size=1000,
        progress=progress,
    )


def start_demo_feed(sessions: sessionmaker[Session]) -> threading.Thread | None:
    """Feed the demo stream on a daemon thread unless a feed already completed.

    Returns the thread, or ``None`` when there is nothing to do (no demo
    company, or its stream is already in).
    """
    from waggle.demo.builder import holds_employees

    with sessions() as session:
        if not holds_employees(session) or _fed_already(session):
            return None

    def run() -> None:
        try:
            report = feed_demo_stream(sessions, system_actor("demo-signals"))
        except Exception:
            logger.exception("demo signal feed failed")
            return
        logger.info("demo signal feed finished", extra=report.as_dict())

    thread = threading.Thread(target=run, name="waggle-demo-signals", daemon=True)
    thread.start()
    return thread


def _fed_already(session: Session) -> bool:
    finished = session.scalar(
        select(IngestBatch.id).where(
            IngestBatch.label == DEMO_LABEL, IngestBatch.status == "completed"
        )
    )
    return finished is not None
