"""Governance costs: the audit row on a write, policy-filtered lists, verifying.

Three figures, each on a fresh SQLite database (and a throw-away PostgreSQL
one when the server is up, for the first two):

1. Audit overhead on a write: the same governed ``create_record`` of an
   account, one transaction each, with its audit row and with
   ``record_audit`` replaced by a no-op; the ratio of the two.
2. A policy-filtered list against the unfiltered one: a rep's own-scope page
   of accounts (``owner_id IN (...)`` plus masking) against sales ops'
   all-scope page, both returning exactly PAGE rows out of ACCOUNTS.
3. Verifying WAGGLE_BENCH_GOVERNANCE_ROWS audit entries (default 1,000,000)
   with each suite, gm (SM3 chain, SM2 checkpoints) and intl (SHA-256,
   Ed25519), on SQLite; ``bench_audit`` has the PostgreSQL figure.

Settings (environment):
    WAGGLE_BENCH_GOVERNANCE_WRITES   creates timed per mode, default 500
    WAGGLE_BENCH_GOVERNANCE_LISTS    list calls timed per actor, default 200
    WAGGLE_BENCH_GOVERNANCE_ROWS     audit entries to verify, default 1000000
                                     (0 skips the verification)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from bench.bench_audit import _postgres_database, verify_figure
from waggle.core.actor import Actor, system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.crm.models import Account
from waggle.crm.service import ACCOUNTS
from waggle.governance import records
from waggle.governance.chain import ensure_chain_head
from waggle.identity.models import Department, Employee, Region

WRITES = int(os.environ.get("WAGGLE_BENCH_GOVERNANCE_WRITES", "500"))
LISTS = int(os.environ.get("WAGGLE_BENCH_GOVERNANCE_LISTS", "200"))
ROWS = int(os.environ.get("WAGGLE_BENCH_GOVERNANCE_ROWS", "1000000"))
ACCOUNTS_TOTAL = 20_000
OWNERS = 50
PAGE = 100
ROUNDS = 3
_AUDIT_HOOK = "record_audit"


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        _costs("sqlite", f"sqlite:///{Path(directory) / 'governance.db'}")
    with _postgres_database() as url:
        if url is not None:
            _costs("postgresql", url)
    if ROWS:
        for suite in ("gm", "intl"):
            with tempfile.TemporaryDirectory() as directory:
                _verification(f"sqlite:///{Path(directory) / 'audit.db'}", suite)


def _costs(label: str, url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        ensure_chain_head(session, suite="gm")
    print(f"{label}:")
    _audit_overhead(sessions)
    _filtered_list(sessions)
    engine.dispose()


# --- 1. the audit row on a write ----------------------------------------------


def _audit_overhead(sessions: sessionmaker[Session]) -> None:
    actor = system_actor("bench")
    counter = iter(range(10**9))
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(ROUNDS):
        for mode in ("without", "with"):
            with _audit(enabled=mode == "with"):
                timings[mode].append(_time_creates(sessions, actor, counter))
    with_audit = statistics.median(timings["with"]) / WRITES * 1000
    without = statistics.median(timings["without"]) / WRITES * 1000
    print(
        f"  create account + commit: {with_audit:.3f} ms with the audit row,"
        f" {without:.3f} ms without; ratio {with_audit / without:.2f}"
        f" (median of {ROUNDS} rounds of {WRITES})"
    )


@contextmanager
def _audit(*, enabled: bool) -> Iterator[None]:
    # The governed create looks record_audit up in its own module each call.
    original: Callable[..., Any] = getattr(records, _AUDIT_HOOK)
    if not enabled:
        setattr(records, _AUDIT_HOOK, _no_audit)
    try:
        yield
    finally:
        setattr(records, _AUDIT_HOOK, original)


def _no_audit(*_args: object, **_kwargs: object) -> None:
    return None


def _time_creates(
    sessions: sessionmaker[Session], actor: Actor, counter: Iterator[int]
) -> float:
    started = time.perf_counter()
    for _ in range(WRITES):
        number = next(counter)
        with transaction(sessions) as session:
            records.create_record(
                session,
                actor,
                ACCOUNTS,
                {
                    "external_id": f"bench-write-{number}",
                    "name": f"基准客户 {number}",
                    "normalized_name": f"基准客户{number}",
                },
            )
    return time.perf_counter() - started


# --- 2. a policy-filtered list ------------------------------------------------


def _filtered_list(sessions: sessionmaker[Session]) -> None:
    owners = _seed_accounts(sessions)
    rep = Actor(
        user_id=1, username="rep", roles=frozenset({"rep"}), employee_id=owners[0]
    )
    ops = Actor(user_id=2, username="ops", roles=frozenset({"sales_ops"}))
    timings = {"rep": [], "ops": []}  # type: dict[str, list[float]]
    counts = {}
    for _ in range(ROUNDS):
        for name, actor in (("ops", ops), ("rep", rep)):
            seconds, counts[name] = _time_lists(sessions, actor)
            timings[name].append(seconds)
    rep_ms = statistics.median(timings["rep"]) / LISTS * 1000
    ops_ms = statistics.median(timings["ops"]) / LISTS * 1000
    print(
        f"  list one page of accounts ({ACCOUNTS_TOTAL:,} rows, {OWNERS} owners):"
        f" rep own scope {rep_ms:.3f} ms ({counts['rep']} rows),"
        f" sales_ops all scope {ops_ms:.3f} ms ({counts['ops']} rows);"
        f" ratio {rep_ms / ops_ms:.2f}"
    )


def _seed_accounts(sessions: sessionmaker[Session]) -> list[int]:
    with transaction(sessions) as session:
        region = Region(code="bench", name="基准大区")
        department = Department(code="bench", name="基准部")
        session.add_all([region, department])
        session.flush()
        employees = [
            Employee(
                external_id=f"bench-e{index}",
                name=f"员工{index}",
                region_id=region.id,
                department_id=department.id,
            )
            for index in range(OWNERS)
        ]
        session.add_all(employees)
        session.flush()
        owners = [employee.id for employee in employees]
        rows = [
            {
                "external_id": f"bench-list-{index}",
                "name": f"列表客户 {index}",
                "normalized_name": f"列表客户{index}",
                "owner_id": owners[index % OWNERS],
                "phone": f"1380000{index:04d}",
            }
            for index in range(ACCOUNTS_TOTAL)
        ]
        session.execute(insert(Account), rows)
    return owners


def _time_lists(sessions: sessionmaker[Session], actor: Actor) -> tuple[float, int]:
    started = time.perf_counter()
    found = 0
    for _ in range(LISTS):
        with transaction(sessions) as session:
            page = records.list_records(session, actor, ACCOUNTS, limit=PAGE)
            found = len(page.items)
    return time.perf_counter() - started, found


# --- 3. verifying a million entries -------------------------------------------


def _verification(url: str, suite: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        ensure_chain_head(session, suite=suite)
    print(f"sqlite, suite {suite}:")
    print(verify_figure(sessions, rows=ROWS, suite=suite))
    engine.dispose()
