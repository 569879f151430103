"""The ingestion pipeline: parse, match, track and store, chunk by chunk.

Records go through in chunks, each chunk one transaction: its raw records,
events, quarantine entries, batch counts and audit row commit together. A
batch killed half-way therefore leaves whole chunks behind, and running it
again stores only what is missing, because a record is recognised twice over:
by its digest (the same bytes, already held) and by its events' source ids
(the same event, sent again in other bytes).

Each record ends as exactly one of

* **accepted**: its events are stored (a record may rightly give none, such as
  a platform's URL-verification ping; it is still kept);
* **quarantined**: the connector could not read it; it is kept with the
  reason, and :func:`replay_quarantined` tries again after a fix;
* **duplicate**: Waggle already holds it, or every event it carries.

so ``received = accepted + quarantined + duplicates`` holds after every chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import pairs_in, transaction
from waggle.core.errors import InvalidInput
from waggle.governance import authorize, record_audit
from waggle.signals.events import Connector, EventDraft, EventType, RawRecord
from waggle.signals.matching import Directory, Matcher, load_directory
from waggle.signals.models import (
    BatchStatus,
    BehaviourEvent,
    IngestBatch,
    QuarantinedRecord,
    QuarantineStatus,
)
from waggle.signals.models import RawRecord as RawRow
from waggle.signals.stream import StoredEvent, publish
from waggle.signals.trackers import TrackerEngine, TrackerHit

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 500
RESOURCE = "behaviour_events"
TRACKED_TYPES = frozenset(
    {
        EventType.CHAT_MESSAGE,
        EventType.EMAIL_SENT,
        EventType.EMAIL_RECEIVED,
        EventType.MEETING_MINUTES,
        EventType.CALL,
    }
)
TRACKER_SOURCE = "trackers"
_LOOKUP_SLICE = 400

Progress = Callable[[int], None]


@dataclass
class BatchReport:
    """The reconciled counts of one batch."""

    batch_id: int
    connector: str
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    events_stored: int = 0
    quarantine_ids: list[int] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        return self.received == self.accepted + self.quarantined + self.duplicates

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "connector": self.connector,
            "received": self.received,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "events_stored": self.events_stored,
            "reconciles": self.reconciles,
        }


@dataclass
class _Item:
    """One record on its way through a chunk."""

    record: RawRecord
    raw_id: int | None = None  # set when the raw record is already stored
    quarantine: QuarantinedRecord | None = None  # set when replaying
    drafts: list[EventDraft] = field(default_factory=list)
    error: InvalidInput | None = None
    outcome: str = ""


class Pipeline:
    """Turns raw records of one connector into stored behaviour events."""

    def __init__(
        self,
        connector: Connector,
        *,
        trackers: TrackerEngine | None = None,
        source_name: str | None = None,
    ):
        self.connector = connector
        self.trackers = trackers
        self.source_name = source_name
        self._directory: Directory | None = None

    def matcher(self, session: Session) -> Matcher:
        """Return a matcher over the directory, loaded once per pipeline."""
        if self._directory is None:
            self._directory = load_directory(session)
        return Matcher(self._directory)

    def run_chunk(
        self,
        session: Session,
        actor: Actor,
        batch: IngestBatch,
        items: list[_Item],
    ) -> list[StoredEvent]:
        """Process one chunk inside the caller's transaction; update ``batch``."""
        authorize(session, actor, "import", RESOURCE)
        fresh = self._drop_held_records(session, items)
        for item in fresh:
            self._parse(item)
        self._drop_held_events(session, fresh)
        stored = self._store(session, batch, fresh)
        _count(batch, items, len(stored))
        record_audit(
            session,
            actor,
            action="import",
            resource=RESOURCE,
            record_ids=[f"batch:{batch.id}"],
            detail=_audit_detail(items, len(stored)),
        )
        return stored

    def _drop_held_records(self, session: Session, items: list[_Item]) -> list[_Item]:
        new = [item for item in items if item.raw_id is None]
        held = _held_digests(session, self.connector.name, new)
        seen: set[str] = set()
        fresh = []
        for item in items:
            digest = item.record.digest
            if item.raw_id is None and (digest in held or digest in seen):
                item.outcome = "duplicate"
                continue
            seen.add(digest)
            fresh.append(item)
        return fresh

    def _parse(self, item: _Item) -> None:
        try:
            item.drafts = list(self.connector.parse(item.record))
        except InvalidInput as error:
            item.error = error
        except Exception as error:  # a parser bug must not sink the batch
            logger.exception(
                "connector failed on a record",
                extra={
                    "connector": self.connector.name,
                    "locator": item.record.locator,
                },
            )
            item.error = InvalidInput(
                f"the {self.connector.name} connector failed: "
                f"{type(error).__name__}: {error}",
                code="connector_error",
            )

    def _drop_held_events(self, session: Session, items: list[_Item]) -> None:
        keys = [(d.source, d.source_id) for item in items for d in item.drafts]
        held = _held_event_keys(session, keys)
        for item in items:
            if item.error is not None:
                continue
            new = [d for d in item.drafts if (d.source, d.source_id) not in held]
            held.update((d.source, d.source_id) for d in new)
            if item.drafts and not new:
                item.outcome = "duplicate"
            item.drafts = new

    def _store(
        self, session: Session, batch: IngestBatch, items: list[_Item]
    ) -> list[StoredEvent]:
        kept = [item for item in items if item.outcome != "duplicate"]
        self._store_raw(session, batch, kept)
        for item in items:
            if item.error is not None:
                self._quarantine(session, batch, item)
                continue
            if item.outcome != "duplicate":
                item.outcome = "accepted"
            if item.quarantine is not None:
                # Replayed: whether its events are new or were stored meanwhile
                # from another copy, the entry has nothing left to wait for.
                item.quarantine.status = QuarantineStatus.REPLAYED
                item.quarantine.resolved_at = now()
        accepted = [item for item in kept if item.outcome == "accepted"]
        return self._store_events(session, batch, accepted)

    def _store_raw(
        self, session: Session, batch: IngestBatch, items: list[_Item]
    ) -> None:
        new = [item for item in items if item.raw_id is None]
        if not new:
            return
        rows = [
            {
                "connector": self.connector.name,
                "digest": item.record.digest,
                "payload": item.record.payload,
                "locator": item.record.locator[:300],
                "batch_id": batch.id,
                "received_at": now(),
            }
            for item in new
        ]
        ids = _insert_returning_ids(
            session,
            RawRow,
            rows,
            (RawRow.connector, RawRow.digest),
            [(self.connector.name, item.record.digest) for item in new],
        )
        for item, raw_id in zip(new, ids, strict=True):
            item.raw_id = raw_id

    def _quarantine(self, session: Session, batch: IngestBatch, item: _Item) -> None:
        assert item.error is not None and item.raw_id is not None
        item.outcome = "quarantined"
        reason = item.error.message[:500]
        if item.quarantine is not None:
            item.quarantine.attempts += 1
            item.quarantine.reason_code = item.error.code[:40]
            item.quarantine.reason = reason
            item.quarantine.batch_id = batch.id
            return
        entry = QuarantinedRecord(
            connector=self.connector.name,
            source_name=self.source_name,
            raw_id=item.raw_id,
            batch_id=batch.id,
            reason_code=item.error.code[:40],
            reason=reason,
        )
        session.add(entry)
        session.flush()
        item.quarantine = entry
        logger.warning(
            "record quarantined",
            extra={
                "connector": self.connector.name,
                "batch_id": batch.id,
                "reason_code": entry.reason_code,
                "locator": item.record.locator,
            },
        )

    def _store_events(
        self, session: Session, batch: IngestBatch, items: list[_Item]
    ) -> list[StoredEvent]:
        matcher = self.matcher(session)
        parents: list[dict[str, Any]] = []
        hits: list[list[TrackerHit]] = []
        for item in items:
            for draft in item.drafts:
                row = _event_row(draft, matcher, batch_id=batch.id, raw_id=item.raw_id)
                found = self._track(draft, row["speaker"])
                if found:
                    row["attributes"] = {
                        **row["attributes"],
                        "trackers": [_hit_summary(hit) for hit in found],
                    }
                parents.append(row)
                hits.append(found)
        if not parents:
            return []
        parent_ids = _insert_events(session, parents)
        children = [
            _tracker_row(parent, parent_id, index, hit)
            for parent, parent_id, found in zip(parents, parent_ids, hits, strict=True)
            for index, hit in enumerate(found)
        ]
        child_ids = _insert_events(session, children) if children else []
        return [
            *map(_stored, parents, parent_ids),
            *map(_stored, children, child_ids),
        ]

    def _track(self, draft: EventDraft, speaker: str | None) -> list[TrackerHit]:
        if self.trackers is None or not draft.text:
            return []
        if draft.event_type not in TRACKED_TYPES:
            return []
        return self.trackers.match(draft.text, speaker=speaker)


def ingest_batch(
    sessions: sessionmaker[Session],
    actor: Actor,
    pipeline: Pipeline,
    records: Iterable[RawRecord],
    *,
    label: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> BatchReport:
    """Run ``records`` through ``pipeline``, committing chunk by chunk.

    Raises:
        PolicyDenied: the actor may not import behaviour events.
    """
    batch_id = _open_batch(sessions, actor, pipeline, label)
    report = BatchReport(batch_id=batch_id, connector=pipeline.connector.name)
    for chunk in _chunks(records, chunk_size):
        items = [_Item(record) for record in chunk]
        _run_committed(sessions, actor, pipeline, batch_id, items, report)
        if progress is not None:
            progress(len(items))
    _close_batch(sessions, batch_id)
    logger.info("batch ingested", extra=report.as_dict())
    return report


def replay_quarantined(
    sessions: sessionmaker[Session],
    actor: Actor,
    pipeline: Pipeline,
    quarantine_ids: Sequence[int],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> BatchReport:
    """Parse quarantined records again; the ones that now pass become events.

    Only open entries of the pipeline's connector are replayed; the replay is a
    batch of its own, whose counts reconcile like any other.

    Raises:
        PolicyDenied: the actor may not import behaviour events.
    """
    batch_id = _open_batch(sessions, actor, pipeline, "replay")
    report = BatchReport(batch_id=batch_id, connector=pipeline.connector.name)
    for chunk in _chunks(quarantine_ids, chunk_size):
        with transaction(sessions) as session:
            items = _replay_items(session, pipeline.connector.name, list(chunk))
            batch = session.get_one(IngestBatch, batch_id)
            stored = pipeline.run_chunk(session, actor, batch, items)
            _tally(report, items, stored)
        publish(stored)
    _close_batch(sessions, batch_id)
    logger.info("quarantine replayed", extra=report.as_dict())
    return report


def _replay_items(
    session: Session, connector: str, quarantine_ids: list[int]
) -> list[_Item]:
    rows = session.execute(
        select(QuarantinedRecord, RawRow)
        .join(RawRow, RawRow.id == QuarantinedRecord.raw_id)
        .where(
            QuarantinedRecord.id.in_(quarantine_ids),
            QuarantinedRecord.connector == connector,
            QuarantinedRecord.status == QuarantineStatus.OPEN,
        )
        .order_by(QuarantinedRecord.id)
    ).all()
    return [
        _Item(RawRecord(raw.payload, raw.locator), raw_id=raw.id, quarantine=entry)
        for entry, raw in rows
    ]


def _run_committed(
    sessions: sessionmaker[Session],
    actor: Actor,
    pipeline: Pipeline,
    batch_id: int,
    items: list[_Item],
    report: BatchReport,
) -> None:
    with transaction(sessions) as session:
        batch = session.get_one(IngestBatch, batch_id)
        stored = pipeline.run_chunk(session, actor, batch, items)
    _tally(report, items, stored)
    publish(stored)


def _tally(report: BatchReport, items: list[_Item], stored: list[StoredEvent]) -> None:
    report.received += len(items)
    report.accepted += sum(item.outcome == "accepted" for item in items)
    report.quarantined += sum(item.outcome == "quarantined" for item in items)
    report.duplicates += sum(item.outcome == "duplicate" for item in items)
    report.events_stored += len(stored)
    report.quarantine_ids.extend(
        item.quarantine.id
        for item in items
        if item.outcome == "quarantined" and item.quarantine is not None
    )


def _count(batch: IngestBatch, items: list[_Item], stored: int) -> None:
    batch.received += len(items)
    batch.accepted += sum(item.outcome == "accepted" for item in items)
    batch.quarantined += sum(item.outcome == "quarantined" for item in items)
    batch.duplicates += sum(item.outcome == "duplicate" for item in items)
    batch.events_stored += stored


def _open_batch(
    sessions: sessionmaker[Session], actor: Actor, pipeline: Pipeline, label: str
) -> int:
    with transaction(sessions) as session:
        authorize(session, actor, "import", RESOURCE)
        batch = IngestBatch(
            connector=pipeline.connector.name,
            source_name=pipeline.source_name,
            label=label[:300],
            started_by=actor.username,
        )
        session.add(batch)
        session.flush()
        return batch.id


def _close_batch(sessions: sessionmaker[Session], batch_id: int) -> None:
    with transaction(sessions) as session:
        batch = session.get_one(IngestBatch, batch_id)
        batch.status = BatchStatus.COMPLETED
        batch.finished_at = now()


def _chunks(values: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _held_digests(session: Session, connector: str, items: list[_Item]) -> set[str]:
    digests = sorted({item.record.digest for item in items})
    held: set[str] = set()
    for start in range(0, len(digests), _LOOKUP_SLICE):
        part = digests[start : start + _LOOKUP_SLICE]
        held.update(
            session.scalars(
                select(RawRow.digest).where(
                    RawRow.connector == connector, RawRow.digest.in_(part)
                )
            )
        )
    return held


def _held_event_keys(
    session: Session, keys: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    unique = sorted(set(keys))
    held: set[tuple[str, str]] = set()
    for start in range(0, len(unique), _LOOKUP_SLICE):
        part = unique[start : start + _LOOKUP_SLICE]
        rows = session.execute(
            select(BehaviourEvent.source, BehaviourEvent.source_id).where(
                pairs_in(BehaviourEvent.source, BehaviourEvent.source_id, part)
            )
        )
        held.update((source, source_id) for source, source_id in rows)
    return held


def _event_row(
    draft: EventDraft, matcher: Matcher, *, batch_id: int, raw_id: int | None
) -> dict[str, Any]:
    match = matcher.match(
        sender=draft.sender,
        recipients=draft.recipients,
        account_ref=draft.account_ref,
        opportunity_ref=draft.opportunity_ref,
        thread_ref=draft.thread_ref,
        occurred_at=draft.occurred_at,
    )
    return {
        "source": draft.source,
        "source_id": draft.source_id[:200],
        "event_type": str(draft.event_type),
        "channel": str(draft.channel),
        "occurred_at": draft.occurred_at,
        "actor_id": match.actor_id,
        "contact_id": match.contact_id,
        "account_id": match.account_id,
        "opportunity_id": match.opportunity_id,
        "speaker": match.speaker,
        "is_automatic": draft.is_automatic,
        "thread_ref": draft.thread_ref[:200] if draft.thread_ref else None,
        "text": draft.text,
        "attributes": dict(draft.attributes),
        "sender_ref": draft.sender[:200] if draft.sender else None,
        "recipient_refs": list(draft.recipients),
        "account_ref": draft.account_ref,
        "opportunity_ref": draft.opportunity_ref,
        "match_status": str(match.status),
        "match_note": match.note[:300] if match.note else None,
        "parent_id": None,
        "raw_id": raw_id,
        "batch_id": batch_id,
        "created_at": now(),
    }


def _tracker_row(
    parent: dict[str, Any], parent_id: int, index: int, hit: TrackerHit
) -> dict[str, Any]:
    return {
        **parent,
        "source": TRACKER_SOURCE,
        "source_id": f"{parent['source']}:{parent['source_id']}:{index}"[:200],
        "event_type": str(EventType.TRACKER_HIT),
        "text": None,
        "attributes": {
            **_hit_summary(hit),
            "phrase": hit.phrase,
            "matched": hit.matched,
            "start": hit.start,
            "end": hit.end,
            "parent_type": parent["event_type"],
        },
        "parent_id": parent_id,
    }


def _hit_summary(hit: TrackerHit) -> dict[str, Any]:
    return {
        "tracker": hit.tracker_id,
        "category": hit.category,
        "is_negated": hit.is_negated,
        "is_question": hit.is_question,
    }


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    return _insert_returning_ids(
        session,
        BehaviourEvent,
        rows,
        (BehaviourEvent.source, BehaviourEvent.source_id),
        [(row["source"], row["source_id"]) for row in rows],
    )


def _insert_returning_ids(
    session: Session,
    model: Any,
    rows: list[dict[str, Any]],
    columns: tuple[Any, Any],
    keys: list[tuple[str, str]],
) -> list[int]:
    """Insert ``rows`` and return their ids in order.

    On PostgreSQL the ids come from the table's sequence before the insert;
    SQLite has no sequence, so there a plain multi-row insert is followed by
    a look-up of the ids by the rows' unique keys. ``INSERT ... RETURNING``
    is slower on both (SQLite sends a statement per few rows, psycopg parses
    each batch anew).
    """
    if session.get_bind().dialect.name == "postgresql":
        # Ids drawn from the table's sequence first: the insert then needs no
        # RETURNING, which psycopg would parse anew for every batch.
        sequence = f"{model.__tablename__}_id_seq"
        ids = list(
            session.scalars(
                text("SELECT nextval(:sequence) FROM generate_series(1, :count)"),
                {"sequence": sequence, "count": len(rows)},
            )
        )
        session.execute(
            insert(model),
            [{**row, "id": row_id} for row, row_id in zip(rows, ids, strict=True)],
        )
        return ids
    session.execute(insert(model), rows)
    return _ids_by_key(session, columns, keys)


def _ids_by_key(
    session: Session, columns: tuple[Any, Any], keys: list[tuple[str, str]]
) -> list[int]:
    """Return the ids of just-inserted rows, in the order of their unique keys.

    A plain multi-row insert followed by one look-up per slice is several
    times faster than ``INSERT ... RETURNING`` row batches on SQLite.
    """
    found: dict[tuple[str, str], int] = {}
    table = columns[0].class_
    for start in range(0, len(keys), _LOOKUP_SLICE):
        part = keys[start : start + _LOOKUP_SLICE]
        rows = session.execute(
            select(table.id, *columns).where(pairs_in(*columns, part))
        )
        found.update({(first, second): row_id for row_id, first, second in rows})
    return [found[key] for key in keys]


def _stored(row: dict[str, Any], event_id: int) -> StoredEvent:
    return StoredEvent(
        id=event_id,
        source=row["source"],
        source_id=row["source_id"],
        event_type=row["event_type"],
        channel=row["channel"],
        occurred_at=row["occurred_at"],
        actor_id=row["actor_id"],
        contact_id=row["contact_id"],
        account_id=row["account_id"],
        opportunity_id=row["opportunity_id"],
        speaker=row["speaker"],
        attributes=row["attributes"],
        parent_id=row["parent_id"],
    )


def _audit_detail(items: list[_Item], stored: int) -> str:
    counts = {
        outcome: sum(item.outcome == outcome for item in items)
        for outcome in ("accepted", "quarantined", "duplicate")
    }
    return (
        f"received {len(items)}: accepted {counts['accepted']}, quarantined "
        f"{counts['quarantined']}, duplicates {counts['duplicate']}; "
        f"events stored {stored}"
    )


__all__ = [
    "BatchReport",
    "Pipeline",
    "ingest_batch",
    "replay_quarantined",
]
