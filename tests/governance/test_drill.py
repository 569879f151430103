"""The sovereignty drill: export everything, import it elsewhere, compare."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import add_account, add_opportunity, build_org
from waggle.cli import main
from waggle.core.actor import system_actor
from waggle.core.db import Base, make_engine, make_session_factory, transaction
from waggle.core.errors import InvalidInput
from waggle.core.settings import Settings
from waggle.crm.models import Account, Opportunity
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.governance import active_policy, record_audit
from waggle.governance.audit import audit_signing_key, instance_verifying_keys
from waggle.governance.chain import create_checkpoint, ensure_chain_head
from waggle.governance.drill import (
    Comparison,
    compare_target,
    csv_record,
    export_database,
    import_export,
    read_csv_records,
    run_drill,
)
from waggle.governance.models import AuditEntry
from waggle.governance.packages import verify_package
from waggle.identity.models import Region
from waggle.signals.models import RawRecord

ACTOR = system_actor("drill-test")
PAYLOAD = bytes(range(256)) + "微信聊天记录".encode()
CREATED = dt.datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=dt.UTC)


def populate(sessions: sessionmaker[Session], settings: Settings) -> dict[str, int]:
    """Give the database an org chart, Chinese accounts and deals, raw bytes,
    audit entries and a signed checkpoint; return the ids the tests look at."""
    build_org(sessions)
    with transaction(sessions) as session:
        huawei = add_account(
            session, ACTOR, "华为技术有限公司", industry="", city=None, latitude=22.6531
        )
        add_account(session, ACTOR, "阿里巴巴（中国）有限公司", city="杭州")
        lonely = add_account(session, ACTOR, "腾讯科技（深圳）有限公司", city="深圳")
        deal = add_opportunity(
            session,
            ACTOR,
            huawei,
            "华为云 “二期” 扩容,含\n多行说明",
            amount=Decimal("1234567.89"),
            customer_pain_points="",
        )
        session.add(
            RawRecord(
                connector="wecom", digest="d" * 64, payload=PAYLOAD, received_at=CREATED
            )
        )
        record_audit(
            session, ACTOR, action="read", resource="accounts", record_ids=[huawei]
        )
    with transaction(sessions) as session:
        create_checkpoint(session, audit_signing_key(settings))
    return {"huawei": huawei, "lonely": lonely, "deal": deal}


def table_count() -> int:
    return len(Base.metadata.sorted_tables)


def test_a_drill_of_a_populated_database_matches_every_table_and_the_chain(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Every table matches, the chain verifies and the package is valid."""
    populate(sessions, settings)

    report = run_drill(settings, ACTOR, out=tmp_path / "drill")

    totals, chain = report.totals(), report.comparison.chain
    by_name = {table.name: table for table in report.comparison.tables}
    assert (report.is_ok, report.first_mismatch) == (True, None)
    assert totals["tables_matched"] == totals["tables"] == table_count()
    assert totals["completeness_rows"] == 1.0
    assert (by_name["accounts"].source_rows, by_name["accounts"].target_rows) == (3, 3)
    assert (chain.is_verified, chain.checkpoint_matched) == (True, True)
    assert (chain.checkpoints, chain.signatures_checked) == (1, 1)
    assert set(report.phases) == {"export", "import", "compare", "package"}
    assert verify_package(tmp_path / "drill" / "package").problems == []
    assert (tmp_path / "drill" / "package" / "data" / "drill-report.json").is_file()


def test_values_round_trip_exactly_on_the_target(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Chinese text, NULL vs '', JSON, bytes, decimals and times arrive unchanged."""
    ids = populate(sessions, settings)

    run_drill(settings, ACTOR, out=tmp_path / "drill")

    target = make_engine(f"sqlite:///{tmp_path / 'drill' / 'target.db'}")
    with make_session_factory(target)() as session:
        account = session.get(Account, ids["huawei"])
        deal = session.get(Opportunity, ids["deal"])
        raw = session.scalars(select(RawRecord)).one()
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "read")
        ).one()
    target.dispose()
    assert account is not None and deal is not None
    assert (account.name, account.industry, account.city) == (
        "华为技术有限公司",
        "",
        None,
    )
    assert account.latitude == 22.6531
    assert (deal.name, deal.amount) == (
        "华为云 “二期” 扩容,含\n多行说明",
        Decimal("1234567.89"),
    )
    assert (deal.customer_pain_points, deal.loss_reason) == ("", None)
    assert (raw.payload, raw.received_at) == (PAYLOAD, CREATED)
    assert audited.record_ids == [str(ids["huawei"])]


def test_csv_records_keep_null_empty_quotes_and_line_breaks() -> None:
    """NULL, '', quotes, commas and CR/LF inside values read back as written."""
    cells = [None, "", 'say "你好"', "a,b", "行一\r\n行二\r", None]

    parsed = list(read_csv_records(io.StringIO(csv_record(cells) * 2, newline="")))

    assert parsed == [cells, cells]


def import_and_compare(folder: Path, settings: Settings, tmp_path: Path) -> Comparison:
    """Load an export into a new SQLite file and compare it with the manifest."""
    target = f"sqlite:///{tmp_path / 'target.db'}"
    imported = import_export(folder, target)
    keys = instance_verifying_keys(settings)
    return compare_target(folder, target, actor=ACTOR, keys=keys, imported=imported)


def test_a_changed_cell_fails_the_comparison_naming_the_table(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """A company name edited in accounts.csv shows up as a digest mismatch."""
    populate(sessions, settings)
    folder = tmp_path / "export"
    export_database(settings.database_url, folder, drill_id="drill-test")
    accounts = folder / "tables" / "accounts.csv"
    content = accounts.read_text(encoding="utf-8")
    accounts.write_text(
        content.replace("华为技术有限公司", "华为技术有限公司 "), encoding="utf-8"
    )

    comparison = import_and_compare(folder, settings, tmp_path)

    assert comparison.first_mismatch == (
        "accounts: content digests differ between source and target"
    )
    assert [t.name for t in comparison.tables if not t.is_matched] == ["accounts"]


def test_a_dropped_row_is_detected(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Deleting one account line from the CSV leaves the target a row short."""
    ids = populate(sessions, settings)
    folder = tmp_path / "export"
    export_database(settings.database_url, folder, drill_id="drill-test")
    accounts = folder / "tables" / "accounts.csv"
    lines = accounts.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(f'"{ids["lonely"]}",')]
    accounts.write_text("".join(kept), encoding="utf-8")

    comparison = import_and_compare(folder, settings, tmp_path)

    assert len(lines) - len(kept) == 1
    assert (
        comparison.first_mismatch == "accounts: 2 rows on the target, 3 in the source"
    )


def test_cli_exits_0_on_success_and_1_on_a_mismatch(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    sessions: sessionmaker[Session],
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`waggle drill` exits 0 on a faithful copy, 1 when the chain breaks."""
    populate(sessions, settings)
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))

    success = main(["drill", "--out", str(tmp_path / "good")])
    printed = capsys.readouterr().out
    with engine.begin() as connection:
        connection.execute(
            update(AuditEntry).where(AuditEntry.seq == 1).values(detail="x")
        )
    failure = main(["drill", "--out", str(tmp_path / "bad")])

    assert success == 0
    assert f"tables {table_count()}/{table_count()} matched" in printed
    assert failure == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mismatch: audit chain on the target: entry 1 does not match its hash:"
        " its content was changed"
    )


def test_a_parquet_drill_matches_when_pyarrow_is_installed(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """With pyarrow, the Parquet export round-trips as exactly as the CSV one."""
    pytest.importorskip("pyarrow")
    populate(sessions, settings)

    report = run_drill(settings, ACTOR, out=tmp_path / "drill", file_format="parquet")

    data = tmp_path / "drill" / "package" / "data" / "tables"
    assert (report.is_ok, report.first_mismatch) == (True, None)
    assert (data / "accounts.parquet").is_file()
    assert not (data / "accounts.csv").exists()


def test_parquet_without_pyarrow_is_refused(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> None:
    """Asking for Parquet without pyarrow installed names the missing package."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)

    with pytest.raises(InvalidInput) as refused:
        export_database(
            settings.database_url,
            tmp_path / "export",
            drill_id="d",
            file_format="parquet",
        )

    assert refused.value.message == (
        "drill: format parquet needs pyarrow (pip install pyarrow); use csv"
    )


@pytest.fixture
def sqlite_source(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "source.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        ensure_chain_head(session)
        ensure_default_pipeline(session, ACTOR)
    engine.dispose()
    return url


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    from tests.conftest import POSTGRES_ADMIN_URL

    name = f"waggle_drill_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_drill_from_sqlite_into_a_fresh_postgresql_target_matches(
    sqlite_source: str, empty_postgres: str, tmp_path: Path
) -> None:
    """SQLite data lands in an empty PostgreSQL, matches, and new ids follow on."""
    settings = Settings(database_url=sqlite_source, data_dir=tmp_path, secret_key="s")
    source = make_engine(sqlite_source)
    populate(make_session_factory(source), settings)
    source.dispose()

    report = run_drill(
        settings, ACTOR, out=tmp_path / "drill", target_url=empty_postgres
    )

    target = make_engine(empty_postgres)
    with transaction(make_session_factory(target)) as session:
        highest = session.scalar(select(Region.id).order_by(Region.id.desc()).limit(1))
        region = Region(code="north", name="华北大区")
        session.add(region)
        session.flush()
        new_id = region.id
    target.dispose()
    assert (report.is_ok, report.first_mismatch) == (True, None)
    assert report.comparison.chain.checkpoint_matched is True
    assert report.target.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/")
    assert highest is not None and new_id == highest + 1


def test_the_drill_has_its_own_policy_entry_for_it() -> None:
    """Only IT runs the drill, through sovereignty_drill, not the audit checkpoint."""
    policy = active_policy()

    allowed = policy.roles_allowed("sovereignty_drill", "export")

    assert allowed == frozenset({"it_admin"})
