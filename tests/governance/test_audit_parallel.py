"""A long audit chain is verified in worker processes with the same verdicts.

The walk is cut into runs of whole checkpoints, one per worker, and the
seams are checked afterwards; every tampering must be found at the same
entry as by a single walk. The threshold is lowered so that a chain of a
few hundred entries takes the parallel path.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, delete, text, update
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.governance import chain, record_audit
from waggle.governance.chain import GENESIS_HASH, create_checkpoint, verify_chain
from waggle.governance.crypto import get_suite
from waggle.governance.models import AuditChainHead, AuditEntry

ENTRIES, PER_CHECKPOINT = 600, 100
ACTOR = system_actor("parallel-test")


@pytest.fixture
def long_chain(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
):
    """Six hundred entries under six signed checkpoints; the parallel path on."""
    with engine.begin() as connection:
        connection.execute(delete(AuditEntry))
        connection.execute(
            update(AuditChainHead).values(
                seq=0, entry_hash=GENESIS_HASH, checkpoint_seq=0
            )
        )
    key = get_suite("gm").generate_signing_key()
    for start in range(0, ENTRIES, PER_CHECKPOINT):
        with transaction(sessions) as session:
            for index in range(start, start + PER_CHECKPOINT):
                record_audit(
                    session,
                    ACTOR,
                    action="read",
                    resource="accounts",
                    record_ids=[index],
                    detail=f"条目 {index}",
                )
        with transaction(sessions) as session:
            create_checkpoint(session, key)
    monkeypatch.setattr(chain, "PARALLEL_MIN_ENTRIES", 10)
    return key


def _verdict(sessions: sessionmaker[Session], key, *, workers: int):
    with sessions() as session:
        report = verify_chain(session, keys=[key.public_key()], workers=workers)
    problem = (
        None if report.problem is None else (report.problem.kind, report.problem.seq)
    )
    # Which walk ran: without this a silent fall-back to one walk would pass.
    assert report.workers == workers
    return report.entries, report.checkpoints, report.signatures_checked, problem


def test_an_intact_chain_verifies_the_same_in_two_workers(
    sessions: sessionmaker[Session], long_chain
) -> None:
    """Both walks count every entry and checkpoint and find nothing."""
    single = _verdict(sessions, long_chain, workers=1)
    parallel = _verdict(sessions, long_chain, workers=2)

    assert single == parallel == (ENTRIES, 6, 6, None)


def test_a_tail_cut_with_the_head_wound_back_is_found_by_both_walks(
    sessions: sessionmaker[Session], engine: Engine, long_chain
) -> None:
    """Entries past 550 deleted and the head set to 550: checkpoint 600 catches it."""
    with engine.begin() as connection:
        last = connection.execute(
            text("SELECT entry_hash FROM audit_entries WHERE seq = 550")
        ).scalar_one()
        connection.execute(text("DELETE FROM audit_entries WHERE seq > 550"))
        connection.execute(update(AuditChainHead).values(seq=550, entry_hash=last))

    single = _verdict(sessions, long_chain, workers=1)[3]
    parallel = _verdict(sessions, long_chain, workers=2)[3]

    assert single == parallel == ("truncated", 600)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_entries SET detail = '改过' WHERE seq = 350", ("changed", 350)),
        ("DELETE FROM audit_entries WHERE seq = 301", ("sequence", 302)),
        ("DELETE FROM audit_entries WHERE seq = 300", ("sequence", 301)),
        ("DELETE FROM audit_entries WHERE seq BETWEEN 301 AND 600", ("truncated", 400)),
        (
            "UPDATE audit_entries SET prev_hash = entry_hash WHERE seq = 301",
            ("broken_link", 301),
        ),
        ("DELETE FROM audit_entries WHERE seq > 550", ("truncated", 600)),
    ],
)
def test_tampering_is_found_at_the_same_entry_by_both_walks(
    sessions: sessionmaker[Session],
    engine: Engine,
    long_chain,
    tamper: str,
    expected: tuple[str, int],
) -> None:
    """Edits, deletions at and beside the seam, and a cut tail: same verdict."""
    with engine.begin() as connection:
        connection.execute(text(tamper))

    single = _verdict(sessions, long_chain, workers=1)[3]
    parallel = _verdict(sessions, long_chain, workers=2)[3]

    assert single == parallel == expected
