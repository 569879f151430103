"""The `waggle pool ...` and `waggle accounts ...` commands against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, build_org
from waggle.cli import main
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.crm.models import Account, MergeRecord
from waggle.crm.service import create_account


@pytest.fixture
def org(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    sessions: sessionmaker[Session],
) -> Org:
    """An org on the database the CLI is pointed at through the environment."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WAGGLE_PUBLIC_POOL_FILE", raising=False)
    monkeypatch.delenv("WAGGLE_PUBLIC_POOL_CLAIM_CAP", raising=False)
    return build_org(sessions)


def _account(sessions: sessionmaker[Session], org: Org, owner: str, name: str) -> int:
    with transaction(sessions) as session:
        return add_account(session, org.actors[owner], name)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[list[str]]:
    """Run one command; return its output lines split into words."""
    capsys.readouterr()
    main(list(argv))
    return [line.split() for line in capsys.readouterr().out.splitlines()]


_TAIL = " name_without_region"


def _words(text: str) -> list[str]:
    return text.split()


def _owner(sessions: sessionmaker[Session], account_id: int) -> tuple[int | None, bool]:
    with sessions() as session:
        account = session.get_one(Account, account_id)
        return account.owner_id, account.is_in_public_pool


def test_release_list_and_claim_round_trip(
    org: Org,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
    fixed_clock: FixedClock,
) -> None:
    """rep_a1 releases with a reason, rep_a2 lists the pool and claims the account."""
    account = _account(sessions, org, "rep_a1", "星河机械有限公司")

    released = _run(
        capsys,
        "pool",
        "release",
        str(account),
        "--reason",
        "预算冻结",
        "--as",
        "rep_a1",
    )
    listed = _run(capsys, "pool", "list", "--as", "rep_a2")
    claimed = _run(capsys, "pool", "claim", str(account), "--as", "rep_a2")
    empty = _run(capsys, "pool", "list", "--as", "rep_a2")

    rep_a2 = org.employees["rep_a2"]
    assert released == [
        f"account {account} (星河机械有限公司) is back in the public pool".split()
    ]
    assert listed == [
        [
            str(account),
            "星河机械有限公司",
            "-",
            "-",
            "2026-03-02",
            "released:",
            "预算冻结",
        ]
    ]
    assert claimed == [
        f"account {account} (星河机械有限公司) now owned by {rep_a2}".split()
    ]
    assert empty == [["the", "public", "pool", "is", "empty"]]
    assert _owner(sessions, account) == (org.employees["rep_a2"], False)


def test_claim_by_external_id_and_assignment_to_a_team_member(
    org: Org, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    """manager_a assigns a pool account, named by external id, to rep_a1 (分配)."""
    with transaction(sessions) as session:
        account = add_account(
            session, org.actors["rep_a2"], "云帆科技有限公司", external_id="ACC-YF"
        )
    _run(capsys, "pool", "release", "ACC-YF", "--reason", "离职交接", "--as", "rep_a2")

    _run(capsys, "pool", "claim", "ACC-YF", "--owner", "E-rep_a1", "--as", "manager_a")

    assert _owner(sessions, account) == (org.employees["rep_a1"], False)


def test_a_refused_claim_exits_with_the_conflict_code(
    org: Org,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With WAGGLE_PUBLIC_POOL_CLAIM_CAP=0 a claim exits 4 naming claim_cap_reached."""
    account = _account(sessions, org, "rep_a2", "星河机械有限公司")
    _run(
        capsys, "pool", "release", str(account), "--reason", "无需求", "--as", "rep_a2"
    )
    monkeypatch.setenv("WAGGLE_PUBLIC_POOL_CLAIM_CAP", "0")

    with pytest.raises(SystemExit) as exit_info:
        main(["pool", "claim", str(account), "--as", "rep_a1"])

    err = capsys.readouterr().err
    assert exit_info.value.code == 4
    assert err.strip() == (
        f"error (claim_cap_reached): employee {org.employees['rep_a1']} has reached "
        "the cap of 0 accounts held from the pool; release an account or wait"
    )
    assert _owner(sessions, account) == (None, True)


def test_sweep_prints_what_it_returned(
    org: Org,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
    fixed_clock: FixedClock,
) -> None:
    """`waggle pool sweep` after 30 quiet days returns the account and says so."""
    account = _account(sessions, org, "rep_a1", "星河机械有限公司")
    fixed_clock.advance(days=30)

    lines = _run(capsys, "pool", "sweep")

    assert lines == [
        _words(
            "swept at 2026-04-01T09:00:00+00:00: 1 returned, 0 protected, 1 checked"
        ),
        ["returned:", str(account)],
    ]
    assert _owner(sessions, account) == (None, True)


def test_rules_prints_the_file_in_force(
    org: Org,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`waggle pool rules` shows the values of WAGGLE_PUBLIC_POOL_FILE."""
    path = tmp_path / "pool.yaml"
    path.write_text(
        "days_without_follow_up: 45\nclaim_cap: 10\n"
        "overrides:\n  - {industry: 制造业, days_without_follow_up: 60}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("WAGGLE_PUBLIC_POOL_FILE", str(path))

    capsys.readouterr()
    main(["pool", "rules"])

    assert capsys.readouterr().out.splitlines() == [
        "days_without_follow_up: 45",
        "claim_cap: 10",
        "daily_claim_cap: null",
        "weekly_claim_cap: null",
        "cooling_off_days: 7",
        "protected_stage_probability: 60",
        "opportunity_updates_count: true",
        "overrides:",
        "- industry: 制造业",
        "  region: null",
        "  days_without_follow_up: 60",
    ]


def test_duplicates_merge_and_history_commands(
    org: Org, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    """`accounts duplicates` finds twins, `merge` folds one, `merge-history` lists."""
    survivor = _account(sessions, org, "rep_a1", "上海星河机械有限公司")
    with transaction(sessions) as session:
        merged = create_account(
            session,
            org.actors["ops"],
            {"name": "星河机械（上海）有限公司", "owner_id": org.employees["rep_a2"]},
            allow_duplicate=True,
        ).id

    found = _run(capsys, "accounts", "duplicates", "星河机械", "--as", "rep_a1")
    merged_out = _run(
        capsys, "accounts", "merge", str(survivor), str(merged), "--as", "manager_a"
    )
    history = _run(capsys, "accounts", "merge-history", str(merged), "--as", "rep_a2")

    assert found == [
        _words(f"{survivor} 上海星河机械有限公司 owner: rep_a1 matched on" + _TAIL),
        _words(f"{merged} 星河机械（上海）有限公司 owner: rep_a2 matched on" + _TAIL),
    ]
    with sessions() as session:
        record_id = session.scalars(select(MergeRecord.id)).one()
    assert merged_out == [
        (
            f"account {merged} merged into {survivor} (record {record_id}): moved "
            "0 contacts, 0 opportunities, 0 activities, 0 pool_events, "
            "0 merged_accounts"
        ).split()
    ]
    assert [line[1:] for line in history] == [
        f"{merged} (星河机械（上海）有限公司) into {survivor} by manager_a".split()
    ]
