"""Importing CRM files: upsert by external id, exact rejects, replay, policy."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import build_org
from waggle.core.actor import Actor, system_actor
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.crm.importing import (
    ImportSummary,
    import_file,
    list_rejects,
    replay_rejects,
    write_rejects,
)
from waggle.crm.mapping import load_mapping
from waggle.crm.models import (
    Account,
    ImportReject,
    ImportRun,
    Opportunity,
    StageChange,
)
from waggle.governance import configure_policy
from waggle.governance.models import AuditEntry
from waggle.identity.models import Employee

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mappings"
ORDER = (
    "regions",
    "departments",
    "employees",
    "products",
    "accounts",
    "contacts",
    "opportunities",
)
OPERATOR = system_actor("test-import")


def run_import(
    sessions: sessionmaker[Session],
    resource: str,
    data: bytes,
    *,
    filename: str = "file.csv",
    actor: Actor = OPERATOR,
    mapping: str | None = None,
) -> ImportSummary:
    """Import ``data`` in a transaction of its own and return the summary."""
    loaded = None
    if mapping is not None:
        loaded = load_mapping((EXAMPLES / mapping).read_bytes(), origin=mapping)
    with transaction(sessions) as session:
        return import_file(
            session, actor, resource, data, filename=filename, mapping=loaded
        )


def load_fixtures(sessions: sessionmaker[Session]) -> dict[str, ImportSummary]:
    """Import every canonical fixture file, parents before children."""
    return {
        resource: run_import(
            sessions,
            resource,
            (FIXTURES / f"{resource}.csv").read_bytes(),
            filename=f"{resource}.csv",
        )
        for resource in ORDER
    }


def counts(summary: ImportSummary) -> tuple[int, int, int, int, int]:
    return (
        summary.rows_read,
        summary.inserted,
        summary.updated,
        summary.unchanged,
        summary.rejected,
    )


def opportunity(session: Session, external_id: str) -> Opportunity:
    session.expire_all()
    found = session.scalar(
        select(Opportunity).where(Opportunity.external_id == external_id)
    )
    assert found is not None
    return found


def test_first_import_inserts_every_row(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """Each canonical file inserts all its rows and the runs reconcile."""
    summaries = load_fixtures(sessions)

    assert {name: counts(s) for name, s in summaries.items()} == {
        "regions": (3, 3, 0, 0, 0),
        "departments": (2, 2, 0, 0, 0),
        "employees": (4, 4, 0, 0, 0),
        "products": (3, 3, 0, 0, 0),
        "accounts": (4, 4, 0, 0, 0),
        "contacts": (3, 3, 0, 0, 0),
        "opportunities": (4, 4, 0, 0, 0),
    }
    manager_of = dict(
        session.execute(
            select(Employee.external_id, Employee.manager_id).order_by(
                Employee.external_id
            )
        ).all()
    )
    ids = dict(session.execute(select(Employee.external_id, Employee.id)).all())
    assert manager_of == {
        "E000": None,
        "E001": ids["E000"],
        "E002": ids["E001"],
        "E003": ids["E000"],
    }


def test_historical_closed_deals_keep_dates_and_outcomes(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """Won and lost deals arrive closed, with their own dates and reasons."""
    load_fixtures(sessions)

    won, lost, open_deal = (
        opportunity(session, key) for key in ("O002", "O003", "O001")
    )

    assert (won.status, won.forecast_category) == ("won", "closed")
    assert won.closed_at == dt.datetime(2025, 12, 20, 6, 0, tzinfo=dt.UTC)
    assert won.created_at == dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    assert (lost.status, lost.forecast_category) == ("lost", "omitted")
    assert lost.loss_reason == "价格过高"
    assert (open_deal.status, open_deal.closed_at) == ("open", None)
    assert open_deal.amount == Decimal("1250000.50")
    assert open_deal.customer_pain_points == "产线效率低，停机频繁"


def test_reimporting_the_same_files_changes_nothing(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """A second import of every file counts all rows unchanged and writes nothing."""
    load_fixtures(sessions)
    before = session.execute(select(Opportunity.id, Opportunity.updated_at)).all()

    again = load_fixtures(sessions)

    assert [counts(s)[1:4] for s in again.values()] == [
        (0, 0, s.rows_read) for s in again.values()
    ]
    session.expire_all()
    assert session.execute(select(Opportunity.id, Opportunity.updated_at)).all() == (
        before
    )
    assert session.scalar(select(func.count()).select_from(StageChange)) == 0


def _broken_rows(data: bytes) -> dict[int, dict[str, str]]:
    text = data.decode("gbk")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    return {
        number: dict(zip(header, cells, strict=False))
        for number, cells in enumerate(reader, start=2)
    }


def test_broken_rows_are_rejected_exactly_and_nothing_is_lost(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """Bad dates, unknown stage, duplicate ids, short rows: exact rejects, no loss."""
    load_fixtures(sessions)
    data = (FIXTURES / "broken_opportunities_gbk.csv").read_bytes()

    summary = run_import(sessions, "opportunities", data, filename="broken.csv")
    rejects = list_rejects(session, OPERATOR, summary.run_id)

    assert counts(summary) == (12, 3, 0, 0, 9)
    assert summary.reconciles
    assert summary.encoding == "gbk"
    assert [(r.row_number, r.field, r.code) for r in rejects] == [
        (3, "expected_close_on", "bad_date"),
        (4, "stage_key", "unknown_stage"),
        (5, "external_id", "duplicate_key"),
        (6, "account_external_id", "required"),
        (9, "loss_reason", "stage_requirements"),
        (10, "closed_at", "required"),
        (11, None, "bad_row_shape"),
        (12, "amount", "bad_number"),
        (13, "owner_external_id", "unknown_reference"),
    ]
    originals = _broken_rows(data)
    assert {r.row_number: r.raw for r in rejects} == {
        number: originals[number] for number in (3, 4, 5, 6, 9, 10, 11, 12, 13)
    }
    stored = dict(
        session.execute(
            select(Opportunity.external_id, Opportunity.name).where(
                Opportunity.external_id.like("B%")
            )
        ).all()
    )
    assert stored == {"B001": "华东渠道拓展", "B005": "历史输单", "B006": "历史赢单"}
    lost = opportunity(session, "B005")
    assert (lost.status, lost.loss_reason) == ("lost", "竞争对手低价")
    assert lost.closed_at == dt.datetime(2025, 7, 1, 12, 0, tzinfo=dt.UTC)
    run = session.get(ImportRun, summary.run_id)
    assert run is not None
    assert (run.rows_read, run.inserted, run.rejected) == (12, 3, 9)


def test_a_file_missing_required_columns_is_refused_whole(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """Without its required columns a file is refused and nothing is written."""
    load_fixtures(sessions)
    data = b"external_id,amount\r\nX1,100\r\nX2,200\r\n"

    with pytest.raises(InvalidInput) as caught:
        run_import(sessions, "opportunities", data, filename="partial.csv")

    assert caught.value.code == "missing_columns"
    assert caught.value.details["missing_columns"] == [
        "name",
        "account_external_id (or account_name)",
        "stage_key",
    ]
    assert "none of its 2 rows was imported" in caught.value.message
    assert session.scalar(select(func.count()).select_from(ImportRun)) == 7
    assert opportunity_keys(session) == ["O001", "O002", "O003", "O004"]


def opportunity_keys(session: Session) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(Opportunity.external_id).order_by(Opportunity.external_id)
        )
    )


def test_changed_stage_updates_and_records_a_stage_change(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """A file that moves a deal to won updates it and leaves a stage change."""
    load_fixtures(sessions)
    data = (
        "external_id,name,account_external_id,stage_key,closed_at,amount\r\n"
        "O001,二期产线改造,A001,won,2026-02-28T10:00:00+00:00,1300000\r\n"
        "O003,网关试点,A003,lost,2025-08-15T00:00:00+00:00,39990.00\r\n"
    ).encode()

    summary = run_import(sessions, "opportunities", data)

    assert counts(summary) == (2, 0, 1, 1, 0)
    moved = opportunity(session, "O001")
    assert (moved.status, moved.amount) == ("won", Decimal("1300000.00"))
    assert moved.closed_at == dt.datetime(2026, 2, 28, 10, 0, tzinfo=dt.UTC)
    change = session.scalars(select(StageChange)).one()
    assert change.opportunity_id == moved.id
    assert change.changed_by == "test-import"
    assert change.seconds_in_previous_stage == 44 * 86400 + 3600


def test_an_empty_cell_clears_and_an_absent_column_keeps(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """Only the file's columns are written: empty cells clear, absent ones keep."""
    load_fixtures(sessions)
    data = ("external_id,name,industry\r\nA001,上海星河机械有限公司,\r\n").encode()

    summary = run_import(sessions, "accounts", data)

    session.expire_all()
    account = session.scalars(
        select(Account).where(Account.external_id == "A001")
    ).one()
    assert counts(summary) == (1, 0, 1, 0, 0)
    assert (account.industry, account.city) == (None, "上海")


def test_chinese_crm_export_loads_with_the_sample_mapping(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """A GBK export with Chinese headers loads unedited through the sample mapping."""
    load_fixtures(sessions)

    accounts = run_import(
        sessions,
        "accounts",
        (FIXTURES / "crm_export_accounts_gbk.csv").read_bytes(),
        mapping="crm_export_accounts.zh-CN.yaml",
    )
    deals = run_import(
        sessions,
        "opportunities",
        (FIXTURES / "crm_export_opportunities_gbk.csv").read_bytes(),
        mapping="crm_export_opportunities.zh-CN.yaml",
    )

    assert counts(accounts) == (2, 2, 0, 0, 0)
    assert counts(deals) == (4, 4, 0, 0, 0)
    won = opportunity(session, "SJ-2002")
    first = opportunity(session, "SJ-2001")
    assert (won.status, won.amount, won.currency) == (
        "won",
        Decimal("260000.00"),
        "CNY",
    )
    assert won.closed_at == dt.datetime(2025, 12, 20, 7, 0, tzinfo=dt.UTC)
    assert (first.stage_id != won.stage_id, first.budget_confirmed) == (True, True)
    owner = session.get(Employee, first.owner_id)
    assert owner is not None and owner.name == "张伟"


def test_replay_retries_stored_rejects_after_a_fix(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """Once the missing employee exists, replaying the run imports its row."""
    load_fixtures(sessions)
    broken = run_import(
        sessions,
        "opportunities",
        (FIXTURES / "broken_opportunities_gbk.csv").read_bytes(),
    )
    run_import(sessions, "employees", "external_id,name\r\nE999,新员工\r\n".encode())

    with transaction(sessions) as work:
        replay = replay_rejects(work, OPERATOR, broken.run_id)

    assert counts(replay) == (7, 1, 0, 0, 6)
    assert (replay.replay_of_id, replay.left_open) == (broken.run_id, 2)
    assert "B011" in opportunity_keys(session)
    still_open = list_rejects(session, OPERATOR, broken.run_id, only_open=True)
    assert [reject.row_number for reject in still_open] == [5, 11]


def test_replay_from_a_corrected_rejects_file(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """The rejects file, corrected, closes the rejects it names by row."""
    load_fixtures(sessions)
    broken = run_import(
        sessions,
        "opportunities",
        (FIXTURES / "broken_opportunities_gbk.csv").read_bytes(),
    )
    buffer = io.BytesIO()
    with transaction(sessions) as work:
        write_rejects(work, OPERATOR, broken.run_id, buffer)
    lines = buffer.getvalue().decode("utf-8-sig").splitlines()
    fixed = [lines[0]] + [
        line.replace("2026-13-45", "2026-12-15").replace(",closing,", ",discovery,")
        for line in lines[1:3]
    ]

    with transaction(sessions) as work:
        replay = replay_rejects(
            work,
            OPERATOR,
            broken.run_id,
            data="\r\n".join(fixed).encode("gbk"),
            filename="fixed.csv",
        )

    assert counts(replay) == (2, 2, 0, 0, 0)
    assert replay.left_open == 7
    assert {"B002", "B003"} <= set(opportunity_keys(session))
    session.expire_all()
    closed = session.scalars(
        select(ImportReject.row_number).where(ImportReject.replayed_at.is_not(None))
    )
    assert sorted(closed) == [3, 4]


def test_reps_may_not_import_and_it_admin_only_the_org_chart(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """The policy lets sales_ops import business data and it_admin the org chart."""
    org = build_org(sessions)
    employees = (FIXTURES / "employees.csv").read_bytes()
    regions = (FIXTURES / "regions.csv").read_bytes()

    run_import(sessions, "regions", regions, actor=org.actors["admin"])
    summary = run_import(sessions, "employees", employees, actor=org.actors["admin"])
    with pytest.raises(PolicyDenied):
        run_import(
            sessions, "products", b"sku,name\r\nX,Y\r\n", actor=org.actors["admin"]
        )
    with pytest.raises(PolicyDenied):
        run_import(sessions, "employees", employees, actor=org.actors["rep_a1"])

    assert summary.rejected == 1  # E003's department "presales" is not imported


def test_import_leaves_audit_rows_listing_the_records(
    sessions: sessionmaker[Session], session: Session, fixed_clock: object
) -> None:
    """Every import writes audit rows naming the records it inserted or changed."""
    load_fixtures(sessions)

    entries = list(
        session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "import", AuditEntry.resource == "opportunities"
            )
        )
    )
    ids = session.scalars(select(Opportunity.id).order_by(Opportunity.id))

    assert [entry.record_ids for entry in entries] == [[str(i) for i in ids], []]
    assert entries[-1].detail is not None
    assert "read 4 = inserted 4" in entries[-1].detail


def test_a_scoped_importer_cannot_touch_others_records(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """With a team scope, rows owned outside the team are rejected as out of scope."""
    org = build_org(sessions)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "row_scopes: {manager: team}\n"
        "resources:\n  accounts: {owned: true, import: [manager]}\n",
        encoding="utf-8",
    )
    data = (
        "external_id,name,owner_external_id\r\n"
        "T1,团队客户,E-rep_a1\r\nT2,别队客户,E-rep_w1\r\n"
    ).encode()

    configure_policy(policy)
    try:
        summary = run_import(sessions, "accounts", data, actor=org.actors["manager_a"])
    finally:
        configure_policy(None)

    with transaction(sessions) as work:
        rejects = list_rejects(work, OPERATOR, summary.run_id)
    assert counts(summary) == (2, 1, 0, 0, 1)
    assert [(r.row_number, r.code) for r in rejects] == [(3, "out_of_scope")]


def test_duplicate_company_names_are_refused(
    sessions: sessionmaker[Session], fixed_clock: object
) -> None:
    """A new account that normalises to an existing company's name is a 撞单 reject."""
    load_fixtures(sessions)
    data = "external_id,name\r\nA900,上海星河机械（中国）有限公司\r\n".encode()

    summary = run_import(sessions, "accounts", data)

    with transaction(sessions) as work:
        rejects = list_rejects(work, OPERATOR, summary.run_id)
    assert [(r.field, r.code) for r in rejects] == [("name", "duplicate_value")]
    assert "A001" in rejects[0].reason
