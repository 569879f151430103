"""Audit chain: commits per second that append entries, and verifying a million.

A fresh SQLite database (and a throw-away PostgreSQL one, when the server is
up) gets WAGGLE_BENCH_AUDIT_ROWS entries (default 1,000,000), chained exactly
as commits chain them but inserted in bulk, plus signed checkpoints every
100,000 entries, once per suite: gm (SM3 chain, SM2 checkpoints) and intl
(SHA-256 chain, Ed25519 checkpoints). The figure that matters is the wall
time of a full ``verify_chain`` with signature checks, which is what
``waggle audit verify`` runs.

Settings (environment):
    WAGGLE_BENCH_AUDIT_ROWS      entries to verify, default 1000000
    WAGGLE_BENCH_AUDIT_COMMITS   audited commits to time, default 2000
    WAGGLE_BENCH_AUDIT_SUITES    suites to verify, default "gm,intl"
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import insert, text, update
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.governance import record_audit
from waggle.governance.chain import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    create_checkpoint,
    ensure_chain_head,
    entry_digest,
    hash_function,
    verify_chain,
)
from waggle.governance.crypto import SigningKey, get_suite
from waggle.governance.models import AuditChainHead, AuditEntry

ROWS = int(os.environ.get("WAGGLE_BENCH_AUDIT_ROWS", "1000000"))
COMMITS = int(os.environ.get("WAGGLE_BENCH_AUDIT_COMMITS", "2000"))
SUITES = tuple(os.environ.get("WAGGLE_BENCH_AUDIT_SUITES", "gm,intl").split(","))
CHECKPOINT_EVERY = 100_000
BATCH = 20_000
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def main() -> None:
    for suite in SUITES:
        with tempfile.TemporaryDirectory() as directory:
            run("sqlite", f"sqlite:///{Path(directory) / 'audit.db'}", suite=suite)
        with _postgres_database() as url:
            if url is not None:
                run("postgresql", url, suite=suite)


def run(label: str, url: str, *, suite: str = "gm") -> None:
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        ensure_chain_head(session, suite=suite)
    print(f"{label}, suite {suite}:")
    _time_commits(sessions)
    print(verify_figure(sessions, rows=ROWS, suite=suite))
    engine.dispose()


def verify_figure(sessions: sessionmaker[Session], *, rows: int, suite: str) -> str:
    """Fill the chain with ``rows`` entries, verify it all; return the figure line.

    The chain's head must already exist with ``suite``'s hash.
    """
    key = get_suite(suite).generate_signing_key()
    _fill(sessions, rows, key)
    started = time.perf_counter()
    with sessions() as session:
        report = verify_chain(session, keys=[key.public_key()])
    elapsed = time.perf_counter() - started
    return (
        f"  verify {report.entries:,} entries ({suite}), {report.signatures_checked} "
        f"signatures: {elapsed:.2f} s ({report.entries / elapsed:,.0f} entries/s)"
        f"  ok={report.ok}"
    )


def _time_commits(sessions: sessionmaker[Session]) -> None:
    actor = system_actor("bench")
    started = time.perf_counter()
    for index in range(COMMITS):
        with transaction(sessions) as session:
            record_audit(
                session, actor, action="read", resource="accounts", record_ids=[index]
            )
    elapsed = time.perf_counter() - started
    print(f"  audited commits        {COMMITS / elapsed:10,.0f} /s")


def _fill(sessions: sessionmaker[Session], rows: int, key: SigningKey) -> None:
    """Append ``rows`` chained entries in bulk, checkpointing as the job would."""
    with transaction(sessions) as session:
        head = session.get(AuditChainHead, 1)
        assert head is not None
        seq, prev = head.seq, head.entry_hash or GENESIS_HASH
        digest = hash_function(head.algorithm)
    started = time.perf_counter()
    done = 0
    while done < rows:
        batch = []
        for _ in range(min(BATCH, rows - done)):
            seq += 1
            values = _entry_values(seq)
            prev_hash, prev = prev, entry_digest(digest, prev, values)
            row = dict(zip(ENTRY_FIELDS, values, strict=True))
            batch.append({**row, "prev_hash": prev_hash, "entry_hash": prev})
        done += len(batch)
        with transaction(sessions) as session:
            session.execute(insert(AuditEntry), batch)
            session.execute(update(AuditChainHead).values(seq=seq, entry_hash=prev))
            if done % CHECKPOINT_EVERY == 0 or done == rows:
                create_checkpoint(session, key)
    print(f"  bulk-chained {rows:,} entries in {time.perf_counter() - started:.1f} s")


def _entry_values(seq: int) -> list[object]:
    return [
        seq,
        START + dt.timedelta(seconds=seq),
        seq % 300,
        f"rep{seq % 300}",
        "rep",
        "read",
        "opportunities",
        [str(seq % 20_000)],
        "ok",
        "10.0.0.1",
        None,
        f"商机 {seq % 20_000} 查看",
    ]


@contextmanager
def _postgres_database() -> Iterator[str | None]:
    admin = make_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"waggle_bench_audit_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        print(f"postgresql: skipped ({error.__class__.__name__})")
        yield None
        return
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
