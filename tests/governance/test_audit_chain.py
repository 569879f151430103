"""The audit chain: sealed at commit, and every kind of tampering is found."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from waggle.cli import main
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.core.settings import Settings
from waggle.governance import record_audit
from waggle.governance.audit import audit_signing_key, instance_verifying_keys
from waggle.governance.chain import (
    GENESIS_HASH,
    create_checkpoint,
    entry_digest,
    hash_function,
    merkle_root,
    verify_chain,
)
from waggle.governance.crypto import get_suite
from waggle.governance.models import AuditChainHead, AuditCheckpoint, AuditEntry

ACTOR = system_actor("chain-test")


@pytest.fixture(autouse=True)
def empty_log(engine: Engine) -> None:
    """Start from a fresh chain: the seed's own entries are removed first."""
    with engine.begin() as connection:
        connection.execute(AuditEntry.__table__.delete())
        connection.execute(
            update(AuditChainHead).values(
                seq=0, entry_hash=GENESIS_HASH, checkpoint_seq=0
            )
        )


def audit(sessions: sessionmaker[Session], count: int, *, label: str = "n") -> None:
    """Commit ``count`` audit entries, three to a transaction."""
    for start in range(0, count, 3):
        with transaction(sessions) as session:
            for index in range(start, min(start + 3, count)):
                record_audit(
                    session,
                    ACTOR,
                    action="read",
                    resource="accounts",
                    record_ids=[index],
                    detail=f"{label}{index} 客户",
                )


def stored(session: Session) -> list[AuditEntry]:
    session.expire_all()
    return list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def problem_of(session: Session, **kwargs: object) -> tuple[str, int | None] | None:
    session.expire_all()
    report = verify_chain(session, **kwargs)  # type: ignore[arg-type]
    return None if report.problem is None else (report.problem.kind, report.problem.seq)


def test_committed_entries_are_numbered_and_linked(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """Entries get seq 1..n, each prev_hash the hash of the one before."""
    audit(sessions, 7)

    entries = stored(session)

    assert [entry.seq for entry in entries] == list(range(1, 8))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    head = session.get(AuditChainHead, 1)
    assert head is not None
    assert (head.seq, head.entry_hash) == (7, entries[-1].entry_hash)
    assert problem_of(session) is None


def test_an_entry_hash_is_the_algorithm_over_prev_and_fields(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """The stored hash is reproducible from the row's own fields by hand."""
    audit(sessions, 1)
    entry = stored(session)[0]

    expected = hashlib.sha256(
        entry.prev_hash.encode() + b"\n" + _canonical_by_hand(entry)
    ).hexdigest()

    assert entry_digest(hash_function("sha256"), entry.prev_hash, _fields(entry)) == (
        expected
    )
    assert entry.entry_hash == entry_digest(
        hash_function("sm3"), entry.prev_hash, _fields(entry)
    )


def test_a_rolled_back_transaction_leaves_no_entry_and_no_gap(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """Work that rolls back takes its audit rows with it; numbering goes on."""
    audit(sessions, 2)
    with pytest.raises(RuntimeError), transaction(sessions) as work:
        record_audit(work, ACTOR, action="read", resource="accounts")
        raise RuntimeError("the business work failed")
    audit(sessions, 1)

    assert [entry.seq for entry in stored(session)] == [1, 2, 3]
    assert problem_of(session) is None


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_entries SET detail = 'nothing' WHERE seq = 4", ("changed", 4)),
        ("UPDATE audit_entries SET username = 'x' WHERE seq = 1", ("changed", 1)),
        ("DELETE FROM audit_entries WHERE seq = 5", ("sequence", 6)),
        ("DELETE FROM audit_entries WHERE seq >= 8", ("truncated", 7)),
        ("UPDATE audit_entries SET seq = seq + 100 WHERE seq = 3", ("sequence", 4)),
    ],
)
def test_verify_names_the_first_bad_entry(
    sessions: sessionmaker[Session],
    session: Session,
    engine: Engine,
    tamper: str,
    expected: tuple[str, int],
) -> None:
    """Changed, deleted and renumbered rows are each caught at the right entry."""
    audit(sessions, 9)
    with engine.begin() as connection:
        connection.execute(text(tamper))

    assert problem_of(session) == expected


def test_reordered_entries_are_caught_at_the_first_swapped_one(
    sessions: sessionmaker[Session], session: Session, engine: Engine
) -> None:
    """Swapping two rows' places breaks the chain at the earlier place."""
    audit(sessions, 6)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_entries SET seq = -1 WHERE seq = 2"))
        connection.execute(text("UPDATE audit_entries SET seq = 2 WHERE seq = 5"))
        connection.execute(text("UPDATE audit_entries SET seq = 5 WHERE seq = -1"))

    assert problem_of(session) == ("broken_link", 2)


def test_an_inserted_row_is_caught(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """A row slipped in after entry 2, the rest renumbered, is found at once."""
    audit(sessions, 4)
    forged = stored(session)[1]
    with transaction(sessions) as work:
        for step in (-(AuditEntry.seq + 1), -AuditEntry.seq):  # unique seq holds
            work.execute(
                update(AuditEntry).where(AuditEntry.seq.not_in([1, 2])).values(seq=step)
            )
        work.add(
            AuditEntry(
                seq=3,
                prev_hash=forged.entry_hash,
                entry_hash=forged.entry_hash,
                occurred_at=forged.occurred_at,
                username="mallory",
                roles="",
                action="read",
                resource="accounts",
                record_ids=[],
                result="ok",
            )
        )

    assert problem_of(session) == ("changed", 3)


def test_a_rewritten_chain_fails_its_signed_checkpoint(
    sessions: sessionmaker[Session], session: Session, settings: Settings
) -> None:
    """Rehashing every entry after an edit still contradicts the signed root."""
    audit(sessions, 5)
    with transaction(sessions) as work:
        create_checkpoint(work, audit_signing_key(settings))
    with transaction(sessions) as work:
        _rewrite_from(work, seq=2, detail="forged")

    assert problem_of(session) == ("checkpoint", 5)


def test_checkpoints_verify_with_the_instance_key_and_fail_with_another(
    sessions: sessionmaker[Session], session: Session, settings: Settings
) -> None:
    """A checkpoint's signature holds under its key and fails under a stranger's."""
    audit(sessions, 4)
    with transaction(sessions) as work:
        first = create_checkpoint(work, audit_signing_key(settings))
    audit(sessions, 2, label="m")
    with transaction(sessions) as work:
        second = create_checkpoint(work, audit_signing_key(settings))
        nothing_new = create_checkpoint(work, audit_signing_key(settings))
    stranger = get_suite("gm").generate_signing_key().public_key()

    session.expire_all()
    good = verify_chain(session, keys=instance_verifying_keys(settings))
    bad = verify_chain(session, keys=[stranger])

    assert first is not None and second is not None and nothing_new is None
    assert (first.seq_from, first.seq_to, second.seq_from, second.seq_to) == (
        1,
        4,
        5,
        6,
    )
    assert (good.ok, good.checkpoints, good.signatures_checked) == (True, 2, 2)
    assert bad.problem is not None
    assert (bad.problem.kind, bad.problem.seq) == ("signature", 4)


def test_deleting_signed_entries_at_the_end_is_caught(
    sessions: sessionmaker[Session], session: Session, settings: Settings
) -> None:
    """Deleting the tail and fixing the head still leaves a checkpoint unmatched."""
    audit(sessions, 6)
    with transaction(sessions) as work:
        create_checkpoint(work, audit_signing_key(settings))
    with transaction(sessions) as work:
        work.execute(AuditEntry.__table__.delete().where(AuditEntry.seq > 4))
        fourth = work.scalars(select(AuditEntry).where(AuditEntry.seq == 4)).one()
        work.execute(update(AuditChainHead).values(seq=4, entry_hash=fourth.entry_hash))

    assert problem_of(session) == ("truncated", 6)


def test_merkle_root_of_three_leaves_pairs_then_carries_the_odd_one() -> None:
    """Root of (a, b, c) is H(01 || H(01 || a || b) || c)."""
    a, b, c = (hashlib.sha256(bytes([n])).digest() for n in range(3))

    def digest(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    left = digest(b"\x01" + a + b)

    assert merkle_root([a, b, c], digest) == digest(b"\x01" + left + c)
    assert merkle_root([a], digest) == a


def test_concurrent_commits_never_share_a_place(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """Six threads committing at once still give one gapless, valid chain."""
    errors: list[BaseException] = []

    def work(label: str) -> None:
        try:
            audit(sessions, 12, label=label)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"t{n}-",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [entry.seq for entry in stored(session)] == list(range(1, 73))
    assert problem_of(session) is None


def test_api_verify_is_for_auditors_and_reports_tampering(
    client: TestClient, org: Org, engine: Engine
) -> None:
    """An auditor sees the report; a rep is refused; tampering shows up."""
    client.get("/api/v1/accounts", headers=org.headers("ops"))
    intact = client.get("/api/v1/audit/verify", headers=org.headers("auditor"))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_entries SET result = 'ok2' WHERE seq = 1")
        )

    broken = client.get("/api/v1/audit/verify", headers=org.headers("auditor"))
    refused = client.get("/api/v1/audit/verify", headers=org.headers("rep_a1"))

    assert intact.status_code == 200 and intact.json()["ok"] is True
    assert broken.json()["problem"]["kind"] == "changed"
    assert broken.json()["problem"]["seq"] == 1
    assert refused.status_code == 403


def test_api_lists_entries_newest_first_for_compliance(
    client: TestClient, org: Org
) -> None:
    """Compliance pages through the log; each review is itself audited."""
    client.get("/api/v1/accounts", headers=org.headers("ops"))

    page = client.get(
        "/api/v1/audit/entries?username=ops&limit=5",
        headers=org.headers("compliance"),
    ).json()
    refused = client.get("/api/v1/audit/entries", headers=org.headers("admin"))

    seqs = [item["seq"] for item in page["items"]]
    assert seqs == sorted(seqs, reverse=True)
    assert {item["username"] for item in page["items"]} == {"ops"}
    assert refused.status_code == 403


def test_cli_checkpoint_then_verify(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    org: Org,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`waggle audit checkpoint` signs; `waggle audit verify` exits 0, then 5."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))

    main(["audit", "checkpoint", "--as", "admin"])
    main(["audit", "verify", "--as", "auditor"])
    printed = capsys.readouterr().out
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entries WHERE seq = 2"))
    exit_code = main(["audit", "verify", "--as", "auditor"])

    assert printed.splitlines()[0].startswith("signed entries 1 to ")
    assert "intact:" in printed and "1 checkpoints, 1 signatures checked" in printed
    assert exit_code == 5
    assert "entry 3: entries 2 to 2 are missing" in capsys.readouterr().err


def _fields(entry: AuditEntry) -> list[object]:
    return [
        entry.seq,
        entry.occurred_at,
        entry.user_id,
        entry.username,
        entry.roles,
        entry.action,
        entry.resource,
        entry.record_ids,
        entry.result,
        entry.source_ip,
        entry.request_id,
        entry.detail,
    ]


def _canonical_by_hand(entry: AuditEntry) -> bytes:
    values = _fields(entry)
    values[1] = entry.occurred_at.astimezone(dt.UTC).isoformat()
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()


def _rewrite_from(session: Session, *, seq: int, detail: str) -> None:
    """Forge the chain as an insider would: edit, then rehash everything after."""
    head = session.get(AuditChainHead, 1)
    assert head is not None
    digest = hash_function(head.algorithm)
    entries = list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.seq >= seq - 1).order_by(AuditEntry.seq)
        )
    )
    entries[1].detail = detail
    prev = entries[0].entry_hash
    for entry in entries[1:]:
        entry.prev_hash = prev
        entry.entry_hash = prev = entry_digest(digest, prev, _fields(entry))
    head.entry_hash = prev
    assert session.scalar(select(AuditCheckpoint.seq_to)) is not None
