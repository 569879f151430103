"""Files and cells: encodings, formula neutralisation, parsing and mappings."""

from __future__ import annotations

import codecs
import datetime as dt
import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from waggle.core.errors import InvalidInput
from waggle.crm.columns import CellError, Column, Kind, parse_cell
from waggle.crm.mapping import ColumnMapping, load_mapping, plan_columns
from waggle.crm.tabular import (
    detect_encoding,
    neutralize,
    read_table,
    restore,
    write_table,
)

CHINESE = "上海星河机械有限公司，負責人：张伟"
PLAIN = ColumnMapping()


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (CHINESE.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + CHINESE.encode("utf-8"), "utf-8-sig"),
        ("上海星河机械有限公司，负责人：张伟".encode("gbk"), "gbk"),
        ("𠀀 and 上海".encode("gb18030"), "gb18030"),
        (b"plain ascii", "utf-8"),
    ],
)
def test_detect_encoding_tells_utf8_from_gbk(encoded: bytes, expected: str) -> None:
    """UTF-8 (with or without BOM), GBK and GB18030 are told apart."""
    detected = detect_encoding(encoded)

    assert detected == expected


def test_read_table_decodes_gbk_csv_with_numbered_rows() -> None:
    """A GBK CSV reads as Chinese text; rows are numbered as a spreadsheet shows."""
    data = '编号,名称\r\nA1,星河\r\n\r\nA2,"云帆\r\n二期"\r\nA3,天府\r\n'.encode("gbk")

    table = read_table(data, filename="客户.csv")
    rows = list(table.rows)

    assert table.header == ["编号", "名称"]
    assert table.encoding == "gbk"
    assert rows == [
        (2, ["A1", "星河"]),
        (4, ["A2", "云帆\r\n二期"]),
        (5, ["A3", "天府"]),
    ]


def test_read_table_refuses_an_unknown_format() -> None:
    """Only csv and xlsx are accepted."""
    with pytest.raises(InvalidInput) as caught:
        read_table(b"a,b\n", filename="x.csv", file_format="ods")

    assert "ods" in caught.value.message


@given(st.text())
def test_restore_undoes_neutralize(value: str) -> None:
    """Neutralising then restoring any text gives the text back."""
    assert restore(neutralize(value)) == value


@given(st.text())
def test_neutralized_text_never_starts_a_formula(value: str) -> None:
    """No neutralised cell begins with = + - @ tab or carriage return."""
    assert neutralize(value)[:1] not in set("=+-@\t\r")


def test_neutralize_quotes_only_dangerous_cells() -> None:
    """Formula-like cells gain one quote; ordinary text is left alone."""
    cells = ["=SUM(A1)", "+86 138", "-5", "@cmd", "'=x", "'plain", "张伟", ""]

    neutralised = [neutralize(cell) for cell in cells]

    assert neutralised == [
        "'=SUM(A1)",
        "'+86 138",
        "'-5",
        "'@cmd",
        "''=x",
        "'plain",
        "张伟",
        "",
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_written_and_read_back_keeps_every_value(encoding: str) -> None:
    """A CSV written in any supported encoding reads back to the same text."""
    rows = [["=1+1", "张伟", 'He said "hi"', "a,b"], ["-3.5", "", "line\nbreak", "@"]]
    buffer = io.BytesIO()

    write_table(
        buffer, ["a", "b", "c", "d"], rows, file_format="csv", encoding=encoding
    )
    table = read_table(buffer.getvalue(), filename="x.csv")

    assert [cells for _, cells in table.rows] == rows


def test_xlsx_keeps_types_and_neutralises_text() -> None:
    """XLSX export keeps numbers and dates typed and formulas inert."""
    buffer = io.BytesIO()
    row = [
        "=cmd|' /C calc'!A0",
        Decimal("1250000.50"),
        dt.date(2026, 3, 31),
        True,
        None,
    ]

    write_table(buffer, ["a", "b", "c", "d", "e"], [row], file_format="xlsx")
    sheet = load_workbook(io.BytesIO(buffer.getvalue())).worksheets[0]
    table = read_table(buffer.getvalue(), filename="x.xlsx")

    assert sheet["A2"].value == "'=cmd|' /C calc'!A0"
    assert sheet["A2"].data_type == "s"
    assert [cells for _, cells in table.rows] == [
        ["=cmd|' /C calc'!A0", 1250000.5, dt.datetime(2026, 3, 31), True, None]
    ]


@pytest.mark.parametrize(
    ("kind", "cell", "expected"),
    [
        (Kind.DECIMAL, "1,250,000.50", Decimal("1250000.50")),
        (Kind.DECIMAL, "¥3,999", Decimal("3999.00")),
        (Kind.DECIMAL, "26万", Decimal("260000.00")),
        (Kind.DECIMAL, 1250000.5, Decimal("1250000.50")),
        (Kind.DATE, "2026/3/5", dt.date(2026, 3, 5)),
        (Kind.DATE, "2026年3月5日", dt.date(2026, 3, 5)),
        (Kind.DATE, dt.datetime(2026, 3, 5), dt.date(2026, 3, 5)),
        (
            Kind.DATETIME,
            "2026-03-05T14:30:00+08:00",
            dt.datetime(2026, 3, 5, 6, 30, tzinfo=dt.UTC),
        ),
        (
            Kind.DATETIME,
            "2026/3/5 14:30",
            dt.datetime(2026, 3, 5, 14, 30, tzinfo=dt.UTC),
        ),
        (Kind.BOOLEAN, "是", True),
        (Kind.BOOLEAN, "FALSE", False),
        (Kind.INTEGER, "60%", 60),
        (Kind.TEXT, 13800000001.0, "13800000001"),
    ],
)
def test_parse_cell_reads_common_spellings(
    kind: Kind, cell: object, expected: object
) -> None:
    """Numbers, dates and booleans are read in the spellings exports use."""
    value = parse_cell(Column("field", kind), cell, PLAIN)  # type: ignore[arg-type]

    assert value == expected


@pytest.mark.parametrize(
    ("column", "cell", "code"),
    [
        (Column("amount", Kind.DECIMAL, minimum=0), "-1", "out_of_range"),
        (Column("amount", Kind.DECIMAL), "1.005", "bad_number"),
        (Column("amount", Kind.DECIMAL), "一百万", "bad_number"),
        (Column("day", Kind.DATE), "2026-13-45", "bad_date"),
        (Column("flag", Kind.BOOLEAN), "maybe", "bad_boolean"),
        (Column("role", Kind.CHOICE, choices=("a", "b")), "c", "bad_choice"),
        (Column("code", max_length=3), "ABCD", "too_long"),
    ],
)
def test_parse_cell_refuses_bad_values_with_a_code(
    column: Column, cell: str, code: str
) -> None:
    """A cell that does not fit its column is refused with a stable code."""
    with pytest.raises(CellError) as caught:
        parse_cell(column, cell, PLAIN)

    assert caught.value.code == code


def test_mapping_translates_values_zones_and_defaults() -> None:
    """A mapping renames columns, translates values, fills defaults, sets the zone."""
    mapping = load_mapping(
        "columns: {阶段: stage_key}\n"
        "values: {stage_key: {赢单: won}}\n"
        "defaults: {currency: CNY}\n"
        "timezone: Asia/Shanghai\n".encode("gbk"),
        origin="m.yaml",
    )

    plan = plan_columns(
        ["阶段", "备注", "_row"], mapping, fields=["stage_key", "currency"], origin="f"
    )
    stage = parse_cell(Column("stage_key"), "赢单", mapping)
    currency = parse_cell(Column("currency"), "", mapping)
    closed = parse_cell(Column("closed_at", Kind.DATETIME), "2026/3/5 08:00", mapping)

    assert plan.fields == {"stage_key": 0}
    assert plan.unknown == ["备注"]
    assert (stage, currency) == ("won", "CNY")
    assert closed == dt.datetime(2026, 3, 5, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns: [a, b]", "columns"),
        ("timezone: Mars/Base", "Mars/Base"),
        ("colums: {a: b}", "colums"),
        ("- just\n- a list", "YAML mapping"),
    ],
)
def test_mapping_errors_name_the_bad_entry(text: str, message: str) -> None:
    """A broken mapping file is refused with a message naming what is wrong."""
    with pytest.raises(InvalidInput) as caught:
        load_mapping(text, origin="m.yaml")

    assert message in caught.value.message


def test_two_columns_for_one_field_are_refused() -> None:
    """A file whose columns both feed the same field is refused."""
    mapping = load_mapping("columns: {客户名称: name}", origin="m.yaml")

    with pytest.raises(InvalidInput) as caught:
        plan_columns(["客户名称", "name"], mapping, fields=["name"], origin="f.csv")

    assert "both give name" in caught.value.message
