"""Exporting CRM files: round trips, formula neutralisation, scope and audit."""

from __future__ import annotations

import io

from openpyxl import load_workbook
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.crm.test_import import OPERATOR, ORDER, counts, load_fixtures, run_import
from tests.factories import add_account, add_opportunity, build_org
from waggle.core.actor import Actor, system_actor
from waggle.core.db import Base, transaction
from waggle.crm.exporting import export_records
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.governance.models import AuditEntry


def export_all(
    sessions: sessionmaker[Session], file_format: str, actor: Actor = OPERATOR
) -> dict[str, bytes]:
    files = {}
    for resource in ORDER:
        buffer = io.BytesIO()
        with transaction(sessions) as session:
            export_records(session, actor, resource, buffer, file_format=file_format)
        files[resource] = buffer.getvalue()
    return files


def empty_database(engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Remove every row, then install the default pipeline as a new instance has."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    with transaction(sessions) as session:
        ensure_default_pipeline(session, system_actor("test"))


def import_all(sessions: sessionmaker[Session], files: dict[str, bytes], suffix: str):
    return {
        resource: run_import(sessions, resource, data, filename=f"{resource}.{suffix}")
        for resource, data in files.items()
    }


def add_records_by_hand(sessions: sessionmaker[Session]) -> None:
    """Records created through the services, not imported (no external ids given)."""
    with transaction(sessions) as session:
        account_id = add_account(session, OPERATOR, "@北京手工录入科技有限公司")
        add_opportunity(session, OPERATOR, account_id, "+手工商机")


def test_csv_round_trip_into_an_empty_database_is_byte_identical(
    sessions: sessionmaker[Session], engine: Engine, fixed_clock: object
) -> None:
    """Export, import into an empty database, export again: the same bytes."""
    load_fixtures(sessions)
    add_records_by_hand(sessions)
    first = export_all(sessions, "csv")

    empty_database(engine, sessions)
    imported = import_all(sessions, first, "csv")
    second = export_all(sessions, "csv")

    assert [counts(s)[4] for s in imported.values()] == [0] * len(ORDER)
    assert second == first
    assert first["opportunities"].count(b"\r\n") == 6


def _cell_values(data: bytes) -> list[tuple[object, ...]]:
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    return list(sheet.iter_rows(values_only=True))


def test_xlsx_round_trip_keeps_every_cell_value(
    sessions: sessionmaker[Session], engine: Engine, fixed_clock: object
) -> None:
    """An XLSX export imported into an empty database exports the same cells."""
    load_fixtures(sessions)
    first = export_all(sessions, "xlsx")

    empty_database(engine, sessions)
    imported = import_all(sessions, first, "xlsx")
    second = export_all(sessions, "xlsx")

    assert [counts(s)[4] for s in imported.values()] == [0] * len(ORDER)
    for resource in ORDER:
        assert _cell_values(second[resource]) == _cell_values(first[resource])
    rows = _cell_values(first["accounts"])
    assert rows[2][1] == '\'=HYPERLINK("http://evil.example","点我")'


def test_export_neutralises_formula_cells_and_keeps_chinese(
    sessions: sessionmaker[Session], fixed_clock: object
) -> None:
    """Cells starting with = + - @ get a leading quote; Chinese text is intact."""
    load_fixtures(sessions)

    files = export_all(sessions, "csv")
    accounts = files["accounts"].decode("utf-8-sig").splitlines()
    contacts = files["contacts"].decode("utf-8-sig").splitlines()

    assert accounts[2].startswith('A002,"\'=HYPERLINK(""http://evil.example""')
    assert "'-33.86" in accounts[4]
    assert ",'+86 总经理,influencer,'+86 138 0000 0003," in contacts[3]
    assert files["regions"].decode("utf-8-sig").splitlines()[1] == "cn,中国区,"


def test_gbk_export_imports_back_unchanged(
    sessions: sessionmaker[Session], fixed_clock: object
) -> None:
    """A GBK export re-imports with every row unchanged."""
    load_fixtures(sessions)
    buffer = io.BytesIO()
    with transaction(sessions) as session:
        export_records(session, OPERATOR, "accounts", buffer, encoding="gbk")

    summary = run_import(sessions, "accounts", buffer.getvalue())

    assert summary.encoding == "gbk"
    assert counts(summary) == (4, 0, 0, 4, 0)


def test_export_respects_row_scope_and_is_audited(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """A manager exports only the team's accounts, and the export is audited."""
    org = build_org(sessions)
    with transaction(sessions) as work:
        team = add_account(work, org.actors["rep_a1"], "华东团队客户有限公司")
        add_account(work, org.actors["rep_w1"], "西部别队客户有限公司")
    buffer = io.BytesIO()

    with transaction(sessions) as work:
        summary = export_records(work, org.actors["manager_a"], "accounts", buffer)

    lines = buffer.getvalue().decode("utf-8-sig").splitlines()
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "export")
    ).one()
    assert summary.rows == 1
    assert [line.split(",")[1] for line in lines[1:]] == ["华东团队客户有限公司"]
    assert (entry.username, entry.resource, entry.record_ids) == (
        "manager_a",
        "accounts",
        [str(team)],
    )
