"""The tamper-evident audit chain: hash-linked entries and signed checkpoints.

Every audit row is staged by :func:`waggle.governance.record_audit` and
sealed when its transaction commits: the commit first bumps the single
chain-head row (which serialises appenders), then gives each staged entry
the next sequence number, the previous entry's hash and its own hash over
its fields. A rolled-back transaction leaves no entry and no gap.

Checkpoints sign the Merkle root of a run of entries and the chain's hash at
its end. :func:`verify_chain` recomputes everything and names the first bad
entry: a changed row breaks its own hash, a deleted one leaves a gap in the
sequence, an inserted or reordered one breaks a link or its hash, and a
rewritten tail no longer matches the signed checkpoints. Entries after the
newest checkpoint are protected by the links alone: whoever can write the
database could extend them, so checkpoints should be frequent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from sqlalchemy import Row, event, select, update
from sqlalchemy.orm import Session

from waggle.core.clock import now
from waggle.core.db import make_engine
from waggle.core.errors import InvalidInput
from waggle.governance.crypto import (
    CryptoError,
    SigningKey,
    VerifyingKey,
    get_suite,
    load_signature_envelope,
)
from waggle.governance.models import AuditChainHead, AuditCheckpoint, AuditEntry

logger = logging.getLogger(__name__)

HEAD_ID = 1
GENESIS_HASH = "0" * 64
CHAIN_ALGORITHMS = {"gm": "sm3", "intl": "sha256"}
AUDIT_KEY_NAME = "audit-chain"
_PENDING = "waggle.audit.pending"
_VERIFY_BATCH = 20_000


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_HASHES: dict[str, Callable[[bytes], bytes]] = {"sm3": _sm3, "sha256": _sha256}


def hash_function(algorithm: str) -> Callable[[bytes], bytes]:
    """Return the chain's hash function called ``algorithm`` (sm3 or sha256).

    Raises:
        InvalidInput: no such algorithm.
    """
    try:
        return _HASHES[algorithm]
    except KeyError:
        raise InvalidInput(
            f"audit chain: hash {algorithm!r} is unknown; expected {sorted(_HASHES)}"
        ) from None


# Hashing one entry ------------------------------------------------------------

ENTRY_FIELDS = (
    "seq",
    "occurred_at",
    "user_id",
    "username",
    "roles",
    "action",
    "resource",
    "record_ids",
    "result",
    "source_ip",
    "request_id",
    "detail",
)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def canonical_bytes(values: Sequence[Any]) -> bytes:
    """Encode an entry's fields (in :data:`ENTRY_FIELDS` order) unambiguously.

    Times are UTC in ISO 8601; everything else is a JSON scalar or list.
    """
    plain = [
        value.astimezone(dt.UTC).isoformat()
        if isinstance(value, dt.datetime)
        else value
        for value in values
    ]
    return _ENCODER.encode(plain).encode()


def entry_digest(
    digest: Callable[[bytes], bytes], prev_hash: str, values: Sequence[Any]
) -> str:
    """Return the hex hash linking an entry's fields to its predecessor."""
    return digest(prev_hash.encode("ascii") + b"\n" + canonical_bytes(values)).hex()


def _values(entry: AuditEntry) -> list[Any]:
    return [getattr(entry, name) for name in ENTRY_FIELDS]


# Sealing at commit ---------------------------------------------------------------


def stage_entry(session: Session, entry: AuditEntry) -> None:
    """Queue ``entry`` to be chained and inserted when ``session`` commits."""
    session.info.setdefault(_PENDING, []).append(entry)


def ensure_chain_head(session: Session, *, suite: str = "gm") -> AuditChainHead:
    """Create the chain's head (its genesis) if the database has none yet."""
    head = session.get(AuditChainHead, HEAD_ID)
    if head is None:
        head = AuditChainHead(
            id=HEAD_ID,
            seq=0,
            entry_hash=GENESIS_HASH,
            algorithm=CHAIN_ALGORITHMS[get_suite(suite).name],
            checkpoint_seq=0,
        )
        session.add(head)
        session.flush()
    return head


def seal_entries(session: Session, entries: list[AuditEntry]) -> None:
    """Number, link and insert ``entries`` after every entry committed before.

    The head row is updated first, so the lock that serialises appenders is
    taken before the previous hash is read.
    """
    claimed = _claim_sequence(session, len(entries))
    if claimed is None:
        ensure_chain_head(session)
        claimed = _claim_sequence(session, len(entries))
        assert claimed is not None
    last_seq, prev_hash, algorithm = claimed
    digest = hash_function(algorithm)
    for offset, entry in enumerate(entries):
        entry.seq = last_seq - len(entries) + 1 + offset
        entry.occurred_at = entry.occurred_at or now()
        entry.prev_hash = prev_hash
        entry.entry_hash = prev_hash = entry_digest(digest, prev_hash, _values(entry))
    session.add_all(entries)
    session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(entry_hash=prev_hash)
        .execution_options(synchronize_session=False)
    )


def _claim_sequence(session: Session, count: int) -> tuple[int, str, str] | None:
    row = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(seq=AuditChainHead.seq + count)
        .returning(
            AuditChainHead.seq, AuditChainHead.entry_hash, AuditChainHead.algorithm
        )
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


@event.listens_for(Session, "before_commit")
def _seal_on_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        seal_entries(session, pending)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


# Checkpoints ---------------------------------------------------------------------


def merkle_root(leaves: Iterable[bytes], digest: Callable[[bytes], bytes]) -> bytes:
    """Return the Merkle root of ``leaves``; an odd node is carried up as it is."""
    level = list(leaves)
    if not level:
        return digest(b"")
    while len(level) > 1:
        paired = [
            digest(b"\x01" + level[index] + level[index + 1])
            for index in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def checkpoint_message(checkpoint: AuditCheckpoint) -> bytes:
    """Return the bytes a checkpoint's signature covers."""
    return json.dumps(
        {
            "seq_from": checkpoint.seq_from,
            "seq_to": checkpoint.seq_to,
            "merkle_root": checkpoint.merkle_root,
            "head_hash": checkpoint.head_hash,
            "algorithm": checkpoint.algorithm,
            "signed_at": checkpoint.signed_at.astimezone(dt.UTC).isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def create_checkpoint(session: Session, key: SigningKey) -> AuditCheckpoint | None:
    """Sign the entries committed since the last checkpoint; ``None`` if none.

    Raises:
        InvalidInput: the chain has no head (the database was never upgraded).
    """
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        raise InvalidInput("audit chain: no head; run `waggle db upgrade` first")
    if head.seq <= head.checkpoint_seq:
        return None
    digest = hash_function(head.algorithm)
    seq_from, seq_to = head.checkpoint_seq + 1, head.seq
    leaves = session.scalars(
        select(AuditEntry.entry_hash)
        .where(AuditEntry.seq.between(seq_from, seq_to))
        .order_by(AuditEntry.seq)
    )
    checkpoint = AuditCheckpoint(
        seq_from=seq_from,
        seq_to=seq_to,
        merkle_root=merkle_root((bytes.fromhex(h) for h in leaves), digest).hex(),
        head_hash=head.entry_hash,
        algorithm=head.algorithm,
        signed_at=now(),
    )
    envelope = get_suite(key.suite).sign(key, checkpoint_message(checkpoint))
    checkpoint.key_fingerprint = envelope.key_id
    checkpoint.signature = envelope.to_json()
    head.checkpoint_seq = seq_to
    session.add(checkpoint)
    session.flush()
    logger.info(
        "audit checkpoint signed", extra={"seq_from": seq_from, "seq_to": seq_to}
    )
    return checkpoint


# Verification --------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    """The first thing wrong with the chain, and where."""

    kind: str
    seq: int | None
    entry_id: int | None
    message: str


@dataclass
class ChainReport:
    """What :func:`verify_chain` checked and the first problem it met."""

    entries: int = 0
    checkpoints: int = 0
    signatures_checked: int = 0
    last_seq: int = 0
    problem: ChainProblem | None = None
    notes: list[str] = field(default_factory=list)
    workers: int = 1  # processes that walked the entries

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "signatures_checked": self.signatures_checked,
            "last_seq": self.last_seq,
            "workers": self.workers,
            "problem": None if self.problem is None else vars(self.problem),
            "notes": self.notes,
        }


class _Broken(Exception):
    def __init__(self, problem: ChainProblem):
        self.problem = problem


def verify_chain(
    session: Session,
    *,
    keys: Sequence[VerifyingKey] = (),
    workers: int | None = None,
) -> ChainReport:
    """Recompute the whole chain and its checkpoints; report the first fault.

    With ``keys`` every checkpoint's signature must verify under one of them;
    without, signatures are not checked and the report says so. A chain of
    at least :data:`PARALLEL_MIN_ENTRIES` committed entries is walked in
    ``workers`` processes (default: one per CPU), each taking a run of
    checkpoints; their seams are checked link by link afterwards, so the
    result is the same as one walk's.
    """
    report = ChainReport()
    head = session.get(AuditChainHead, HEAD_ID)
    if head is None:
        report.notes.append("the chain has no head yet: nothing was ever audited")
        return report
    checkpoints = [
        _CheckpointView.of(row)
        for row in session.scalars(
            select(AuditCheckpoint).order_by(AuditCheckpoint.seq_to)
        )
    ]
    count = workers or os.cpu_count() or 1
    try:
        if count > 1 and _may_walk_apart(session, head.seq):
            _walk_apart(session, head, checkpoints, report, workers=count)
        else:
            with _entry_rows(session) as rows:
                walk = _walk(rows, head.algorithm, checkpoints, expected_seq=1)
            _take(report, walk, previous=None)
        _check_head(head, report)
        signed = session.scalars(
            select(AuditCheckpoint).order_by(AuditCheckpoint.seq_to)
        ).all()
        _check_signatures(signed, keys, report)
    except _Broken as broken:
        report.problem = broken.problem
    return report


PARALLEL_MIN_ENTRIES = 200_000


@dataclass(frozen=True)
class _CheckpointView:
    """What the walk needs of a checkpoint (plain, to send to a worker)."""

    id: int
    seq_from: int
    seq_to: int
    head_hash: str
    merkle_root: str

    @classmethod
    def of(cls, row: AuditCheckpoint) -> _CheckpointView:
        return cls(row.id, row.seq_from, row.seq_to, row.head_hash, row.merkle_root)


@dataclass
class _Walk:
    """One walk over a run of entries: counts, its two ends, its first fault."""

    entries: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    first_prev: str | None = None
    last_seq: int = 0
    last_hash: str | None = None
    problem: ChainProblem | None = None
    unfinished: ChainProblem | None = None  # a checkpoint whose end never came


def _walk(
    rows: Iterable[Row[Any]],
    algorithm: str,
    checkpoints: Sequence[_CheckpointView],
    *,
    expected_seq: int,
    prev_hash: str | None = GENESIS_HASH,
    is_final: bool = True,
) -> _Walk:
    """Check ``rows`` in order; ``prev_hash`` None takes the first row's as given.

    A run that is not the chain's last reports a checkpoint left open at its
    end as ``unfinished``: the seam with the next run tells what happened.
    """
    walk = _Walk()
    digest = hash_function(algorithm)
    pending = iter(checkpoints)
    checkpoint = next(pending, None)
    leaves: list[bytes] = []
    width = len(ENTRY_FIELDS)
    try:
        for row in rows:
            entry_id, values = row[0], row[1 : 1 + width]
            seq, stored_prev, stored_hash = values[0], row[1 + width], row[2 + width]
            if walk.entries == 0:
                walk.first_seq, walk.first_prev = seq, stored_prev
                prev_hash = stored_prev if prev_hash is None else prev_hash
            _check_position(entry_id, seq, expected_seq)
            _check_link(
                digest, entry_id, values, str(prev_hash), stored_prev, stored_hash
            )
            prev_hash, expected_seq = stored_hash, seq + 1
            walk.entries, walk.last_seq, walk.last_hash = (
                walk.entries + 1,
                seq,
                prev_hash,
            )
            if checkpoint is not None and checkpoint.seq_from <= seq:
                leaves.append(bytes.fromhex(stored_hash))
                if seq == checkpoint.seq_to:
                    _check_checkpoint(checkpoint, leaves, stored_hash, digest)
                    walk.checkpoints += 1
                    leaves, checkpoint = [], next(pending, None)
        if checkpoint is not None:
            problem = ChainProblem(
                "truncated",
                checkpoint.seq_to,
                None,
                f"checkpoint {checkpoint.id} signs entries up to "
                f"{checkpoint.seq_to} but the chain ends at {expected_seq - 1}: "
                "entries were deleted",
            )
            if is_final:
                raise _Broken(problem)
            walk.unfinished = problem
    except _Broken as broken:
        walk.problem = broken.problem
    return walk


def _take(report: ChainReport, walk: _Walk, *, previous: _Walk | None) -> None:
    """Add one walk to the report, checking the seam with the walk before it."""
    seam = previous if walk.first_seq is not None else None
    if seam is not None and walk.first_seq != seam.last_seq + 1:
        raise _Broken(
            ChainProblem(
                "sequence",
                walk.first_seq,
                None,
                f"entries {seam.last_seq + 1} to {(walk.first_seq or 1) - 1} are "
                f"missing before entry {walk.first_seq}: they were deleted",
            )
        )
    if seam is not None and walk.first_prev != seam.last_hash:
        raise _Broken(
            ChainProblem(
                "broken_link",
                walk.first_seq,
                None,
                f"entry {walk.first_seq} does not follow entry "
                f"{seam.last_seq}: an entry before it was changed, inserted "
                "or reordered",
            )
        )
    report.entries += walk.entries
    report.checkpoints += walk.checkpoints
    if walk.entries:
        report.last_seq = walk.last_seq
    if walk.problem is not None:
        raise _Broken(walk.problem)


def _may_walk_apart(session: Session, count: int) -> bool:
    if count < PARALLEL_MIN_ENTRIES:
        return False
    url = session.get_bind().engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return False
    # Entries outside the chain's order must be found by the single walk.
    return session.scalar(select(AuditEntry.id).where(AuditEntry.seq.is_(None))) is None


def _walk_apart(
    session: Session,
    head: AuditChainHead,
    checkpoints: list[_CheckpointView],
    report: ChainReport,
    *,
    workers: int,
) -> None:
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    parts = _segments(head.seq, checkpoints, workers)
    report.workers = len(parts)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(parts), mp_context=context) as pool:
        futures = [
            pool.submit(
                _walk_segment,
                url,
                head.algorithm,
                low,
                high,
                # The last run takes every later checkpoint, also those past
                # the head: entries cut off with the head wound back.
                [
                    c
                    for c in checkpoints
                    if low <= c.seq_from
                    and (c.seq_to <= high or index == len(parts) - 1)
                ],
                first=index == 0,
                last=index == len(parts) - 1,
            )
            for index, (low, high) in enumerate(parts)
        ]
        walks = [future.result() for future in futures]
    previous = None
    for walk in walks:
        if walk.entries == 0 and walk.problem is None:
            continue  # a run deleted whole: the next seam names it
        _take(report, walk, previous=previous)
        previous = walk
    unfinished = next((walk.unfinished for walk in walks if walk.unfinished), None)
    if unfinished is not None:
        raise _Broken(unfinished)


def _segments(
    count: int, checkpoints: Sequence[_CheckpointView], workers: int
) -> list[tuple[int, int]]:
    """Cut 1..count into runs that end on checkpoint boundaries, about equal."""
    ends = [c.seq_to for c in checkpoints if c.seq_to < count]
    cuts: list[int] = []
    for part in range(1, workers):
        target = count * part // workers
        best = min(ends, key=lambda end: abs(end - target), default=target)
        if (not cuts or best > cuts[-1]) and best < count:
            cuts.append(best)
    bounds = [0, *cuts, count]
    return [(bounds[i] + 1, bounds[i + 1]) for i in range(len(bounds) - 1)]


def _walk_segment(
    url: str,
    algorithm: str,
    low: int,
    high: int,
    checkpoints: list[_CheckpointView],
    *,
    first: bool,
    last: bool,
) -> _Walk:
    """Walk entries ``low``..``high`` in a worker process, on its own connection.

    The first run has no lower bound and the last no upper one, so entries
    numbered outside the chain are still met.
    """
    engine = make_engine(url)
    try:
        with (
            Session(engine) as session,
            _entry_rows(
                session,
                low=None if first else low,
                high=None if last else high,
            ) as rows,
        ):
            return _walk(
                rows,
                algorithm,
                checkpoints,
                expected_seq=1 if first else low,
                prev_hash=GENESIS_HASH if first else None,
                is_final=last,
            )
    finally:
        engine.dispose()


@contextmanager
def _entry_rows(
    session: Session, *, low: int | None = None, high: int | None = None
) -> Iterator[Iterator[Row[Any]]]:
    """Stream ``(id, *ENTRY_FIELDS, prev_hash, entry_hash)`` in chain order.

    The result is closed however the walk ends: on PostgreSQL it is a
    server-side cursor.
    """
    columns = [getattr(AuditEntry, name) for name in ENTRY_FIELDS]
    statement = select(
        AuditEntry.id, *columns, AuditEntry.prev_hash, AuditEntry.entry_hash
    ).order_by(AuditEntry.seq)
    if low is not None:
        statement = statement.where(AuditEntry.seq >= low)
    if high is not None:
        statement = statement.where(AuditEntry.seq <= high)
    # Core rows, not ORM ones: the walk needs tuples, and ORM loading would
    # cost a third of the time of a million-entry verification.
    result = session.connection().execute(
        statement, execution_options={"yield_per": _VERIFY_BATCH}
    )
    try:
        yield iter(result)
    finally:
        result.close()


def _check_position(entry_id: int, seq: int | None, expected: int) -> None:
    if seq == expected:
        return
    if seq is None:
        message = f"entry id {entry_id} has no place in the chain: it was inserted"
    elif seq < expected:
        message = f"entry {seq} appears twice: a copy was inserted"
    else:
        message = (
            f"entries {expected} to {seq - 1} are missing before entry {seq}: "
            "they were deleted"
        )
    raise _Broken(ChainProblem("sequence", seq, entry_id, message))


def _check_link(
    digest: Callable[[bytes], bytes],
    entry_id: int,
    values: Sequence[Any],
    prev_hash: str,
    stored_prev: str,
    stored_hash: str,
) -> None:
    seq = values[0]
    if stored_prev != prev_hash:
        raise _Broken(
            ChainProblem(
                "broken_link",
                seq,
                entry_id,
                f"entry {seq} does not follow entry {seq - 1}: an entry before it "
                "was changed, inserted or reordered",
            )
        )
    if entry_digest(digest, prev_hash, values) != stored_hash:
        raise _Broken(
            ChainProblem(
                "changed",
                seq,
                entry_id,
                f"entry {seq} does not match its hash: its content was changed",
            )
        )


def _check_checkpoint(
    checkpoint: _CheckpointView,
    leaves: list[bytes],
    head_hash: str,
    digest: Callable[[bytes], bytes],
) -> None:
    if head_hash != checkpoint.head_hash:
        raise _Broken(
            ChainProblem(
                "checkpoint",
                checkpoint.seq_to,
                None,
                f"entry {checkpoint.seq_to} differs from what checkpoint "
                f"{checkpoint.id} signed: the chain up to it was rewritten",
            )
        )
    if merkle_root(leaves, digest).hex() != checkpoint.merkle_root:
        raise _Broken(
            ChainProblem(
                "checkpoint",
                checkpoint.seq_from,
                None,
                f"entries {checkpoint.seq_from} to {checkpoint.seq_to} do not give "
                f"the Merkle root checkpoint {checkpoint.id} signed",
            )
        )


def _check_head(head: AuditChainHead, report: ChainReport) -> None:
    if head.seq != report.last_seq:
        raise _Broken(
            ChainProblem(
                "truncated",
                report.last_seq,
                None,
                f"the chain head counts {head.seq} entries but {report.last_seq} "
                "are stored: entries at the end were deleted or added",
            )
        )


def _check_signatures(
    checkpoints: Iterable[AuditCheckpoint],
    keys: Sequence[VerifyingKey],
    report: ChainReport,
) -> None:
    if not keys:
        if checkpoints:
            report.notes.append(
                "checkpoint signatures not checked: no public key was given"
            )
        return
    for checkpoint in checkpoints:
        _verify_signature(checkpoint, keys)
        report.signatures_checked += 1


def _verify_signature(
    checkpoint: AuditCheckpoint, keys: Sequence[VerifyingKey]
) -> None:
    message = checkpoint_message(checkpoint)
    for key in keys:
        try:
            envelope = load_signature_envelope(checkpoint.signature)
            get_suite(envelope.suite).verify(key, message, envelope)
        except CryptoError:
            continue
        return
    raise _Broken(
        ChainProblem(
            "signature",
            checkpoint.seq_to,
            None,
            f"checkpoint {checkpoint.id} (entries {checkpoint.seq_from} to "
            f"{checkpoint.seq_to}) has no valid signature by a trusted key",
        )
    )
