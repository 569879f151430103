"""Call connectors: Asterisk Master.csv rows, generic call exports, the heat map."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.signals.connectors import build_connector
from waggle.signals.connectors.calls import (
    CDR_COLUMNS,
    AsteriskCdrConnector,
    CallCsvConnector,
    call_heat_map,
    normalize_phone,
    parse_duration,
    read_cdr_records,
    read_records,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "calls"
MAPPING = Path(__file__).resolve().parents[2] / "examples/mappings/calls_generic.yaml"
UTC = dt.UTC
CONFIG = {"internal_numbers": ["021-6123 4567"]}


def _cdr_records() -> list[RawRecord]:
    return list(read_records(FIXTURES / "Master.csv", CONFIG))


def _cdr_line(**cells: str) -> bytes:
    """Return one Master.csv line without uniqueid, from documented defaults."""
    row = {
        "accountcode": "",
        "src": "13812345678",
        "dst": "8001",
        "dcontext": "from-trunk",
        "clid": '"" <13812345678>',
        "channel": "SIP/trunk-01",
        "dstchannel": "SIP/8001-02",
        "lastapp": "Dial",
        "lastdata": "SIP/8001,30",
        "start": "2024-06-05 08:00:00",
        "answer": "2024-06-05 08:00:05",
        "end": "2024-06-05 08:01:05",
        "duration": "65",
        "billsec": "60",
        "disposition": "ANSWERED",
        "amaflags": "DOCUMENTATION",
    } | cells
    return (",".join(f'"{row[name]}"' for name in CDR_COLUMNS[:16]) + "\n").encode()


def test_cdr_reader_names_the_documented_columns():
    """Each Master.csv line becomes a JSON object keyed by the cdr_csv column names."""
    records = _cdr_records()

    first = json.loads(records[0].payload)

    assert [record.locator for record in records] == [
        "Master.csv line 1",
        "Master.csv line 2",
        "Master.csv line 3",
    ]
    assert list(first) == list(CDR_COLUMNS[:18])
    assert first["clid"] == '"张三" <8001>'
    assert first["start"] == "2024-06-03 09:15:00"
    assert first["uniqueid"] == "1717377300.1"


def test_cdr_outbound_answered_call_becomes_one_call_draft():
    """An answered call from an extension is an outbound CALL starting in UTC."""
    connector = AsteriskCdrConnector(CONFIG)

    [draft] = connector.parse(_cdr_records()[0])

    assert draft.source == "asterisk_cdr"
    assert draft.source_id == "1717377300.1"
    assert draft.event_type is EventType.CALL
    assert draft.channel is Channel.PHONE
    assert draft.occurred_at == dt.datetime(2024, 6, 3, 1, 15, tzinfo=UTC)
    assert draft.sender == "phone:8001"
    assert draft.recipients == ("phone:13812345678",)
    assert dict(draft.attributes) == {
        "duration_seconds": 308,
        "billsec": 300,
        "disposition": "ANSWERED",
        "direction": "outbound",
        "answered": True,
        "answered_at": "2024-06-03T01:15:08+00:00",
        "ended_at": "2024-06-03T01:20:08+00:00",
        "context": "from-internal",
    }


def test_cdr_inbound_missed_call_normalises_the_caller_number():
    """A +86 caller to the company's DID is inbound, unanswered, with digits only."""
    connector = AsteriskCdrConnector(CONFIG)

    [draft] = connector.parse(_cdr_records()[1])

    assert draft.sender == "phone:13900001111"
    assert draft.recipients == ("phone:02161234567",)
    assert draft.occurred_at == dt.datetime(2024, 6, 3, 15, 40, tzinfo=UTC)
    assert draft.attributes["direction"] == "inbound"
    assert draft.attributes["answered"] is False
    assert draft.attributes["disposition"] == "NO ANSWER"
    assert draft.attributes["billsec"] == 0
    assert draft.attributes["answered_at"] is None


def test_cdr_call_between_extensions_is_internal():
    """A call from one extension to another is marked internal, not outbound."""
    connector = AsteriskCdrConnector(CONFIG)

    [draft] = connector.parse(_cdr_records()[2])

    assert draft.attributes["direction"] == "internal"
    assert draft.attributes["disposition"] == "BUSY"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138 1234 5678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("013812345678", "13812345678"),
        ("(021) 6123-4567", "02161234567"),
        ("+86 21 6123 4567", "02161234567"),
        ("0086 400 800 1234", "4008001234"),
        ("8001", "8001"),
        ("+1 415 555 0100", "14155550100"),
        ("anonymous", None),
        ("", None),
    ],
)
def test_phone_numbers_normalise_to_digits(raw, expected):
    """Numbers lose punctuation and the Chinese country prefix; extensions stay."""
    assert normalize_phone(raw) == expected


def test_cdr_start_is_read_in_the_configured_timezone():
    """The same local start is 8 hours earlier in Shanghai time than in UTC."""
    record = RawRecord(read_cdr_payload(_cdr_line()))

    shanghai = AsteriskCdrConnector({}).parse(record)[0].occurred_at
    utc = AsteriskCdrConnector({"timezone": "UTC"}).parse(record)[0].occurred_at

    assert shanghai == dt.datetime(2024, 6, 5, 0, 0, tzinfo=UTC)
    assert utc == dt.datetime(2024, 6, 5, 8, 0, tzinfo=UTC)


def read_cdr_payload(line: bytes) -> bytes:
    [record] = read_cdr_records(line)
    return record.payload


def test_cdr_without_uniqueid_gets_a_stable_hash_id():
    """Without loguniqueid the source id is a hash of the row: equal rows, equal ids."""
    connector = AsteriskCdrConnector({})
    first = RawRecord(read_cdr_payload(_cdr_line()))
    again = RawRecord(read_cdr_payload(_cdr_line()))
    other = RawRecord(read_cdr_payload(_cdr_line(billsec="61")))

    ids = [connector.parse(record)[0].source_id for record in (first, again, other)]

    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    assert ids[0].startswith("cdr-")
    assert len(ids[0]) == 36


def test_cdr_inbound_by_extension_pattern():
    """A mobile caller dialling extension 8001 is inbound under the default pattern."""
    [draft] = AsteriskCdrConnector({}).parse(RawRecord(read_cdr_payload(_cdr_line())))

    assert draft.attributes["direction"] == "inbound"
    assert draft.sender == "phone:13812345678"
    assert draft.recipients == ("phone:8001",)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"disposition": "HUNG UP"}, "disposition 'HUNG UP'"),
        ({"start": ""}, "start is empty"),
        ({"start": "03/06/2024 09:00"}, "is not a time like"),
        ({"billsec": "-3"}, "billsec='-3'"),
    ],
)
def test_cdr_bad_cells_are_rejected_naming_the_field(cells, message):
    """An unknown disposition, a missing or odd start or a bad number is malformed."""
    record = RawRecord(read_cdr_payload(_cdr_line(**cells)))

    with pytest.raises(MalformedPayload) as caught:
        AsteriskCdrConnector({}).parse(record)

    assert message in caught.value.message


def test_reader_tells_cdr_files_from_exports():
    """Without a format, a headerless CDR file and a GBK export are both recognised."""
    cdr = read_records(FIXTURES / "Master.csv", {})
    export = read_records(FIXTURES / "calls_gbk.csv", {"mapping": str(MAPPING)})

    assert json.loads(next(iter(cdr)).payload)["src"] == "8001"
    assert "主叫号码" in json.loads(next(iter(export)).payload)


def test_gbk_export_with_the_generic_mapping_parses_every_row():
    """The zh-CN mapping reads a GBK export: numbers, times, durations, directions."""
    config = {"mapping": str(MAPPING), "internal_numbers": ["02161234567"]}
    connector = build_connector("calls_csv", config)

    records = list(read_records(FIXTURES / "calls_gbk.csv", config))
    drafts = [draft for record in records for draft in connector.parse(record)]

    assert [record.locator for record in records] == [
        "calls_gbk.csv row 2",
        "calls_gbk.csv row 3",
        "calls_gbk.csv row 4",
    ]
    first, second, third = drafts
    assert (first.source, first.source_id) == ("calls_csv", "C20240603001")
    assert first.occurred_at == dt.datetime(2024, 6, 3, 1, 15, tzinfo=UTC)
    assert (first.sender, first.recipients) == (
        "phone:13812345678",
        ("employee:E0001",),
    )
    assert first.attributes["duration_seconds"] == 125
    assert first.attributes["direction"] == "inbound"
    assert first.attributes["answered"] is True
    assert first.attributes["ended_at"] == "2024-06-03T01:17:00+00:00"
    assert (second.sender, second.recipients) == (
        "employee:E0002",
        ("phone:13900001111",),
    )
    assert second.attributes["answered"] is False
    assert second.attributes["direction"] == "outbound"
    assert third.source_id.startswith("call-")
    assert third.sender == "phone:02161234567"
    assert third.attributes["duration_seconds"] == 200
    assert third.attributes["direction"] == "outbound"


def test_export_without_start_column_is_refused_at_read_time():
    """A file whose mapping gives no started_at column is refused before any row."""
    path = FIXTURES / "calls_gbk.csv"

    with pytest.raises(InvalidInput) as caught:
        list(read_records(path, {"mapping": {"columns": {"主叫号码": "caller"}}}))

    assert "no column gives started_at" in caught.value.message


def test_mapping_naming_unknown_fields_is_refused():
    """A mapping that targets a field calls do not have fails in the constructor."""
    with pytest.raises(InvalidInput) as caught:
        CallCsvConnector({"mapping": {"columns": {"坐席": "agent"}}})

    assert "agent are not calls fields" in caught.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("125", 125),
        ("125.4", 125),
        ("0:02:05", 125),
        ("02:05", 125),
        ("2分5秒", 125),
        ("1小时2分3秒", 3723),
        ("45秒", 45),
        ("3m", 180),
    ],
)
def test_durations_read_in_common_forms(text, seconds):
    """Durations come as seconds, clock times or Chinese units."""
    assert parse_duration(text) == seconds


def test_heat_map_counts_calls_per_local_weekday_and_hour():
    """Calls count in the Shanghai weekday and hour, Monday first, exact per cell."""
    instants = [
        dt.datetime(2024, 6, 3, 1, 15, tzinfo=UTC),  # Mon 09:15 local
        dt.datetime(2024, 6, 3, 1, 59, tzinfo=UTC),  # Mon 09:59 local
        dt.datetime(2024, 6, 2, 16, 30, tzinfo=UTC),  # Mon 00:30 local (Sun in UTC)
        dt.datetime(2024, 6, 9, 15, 0, tzinfo=UTC),  # Sun 23:00 local
    ]

    grid = call_heat_map(instants)

    assert len(grid) == 7
    assert all(len(row) == 24 for row in grid)
    assert grid[0][9] == 2
    assert grid[0][0] == 1
    assert grid[6][23] == 1
    assert sum(map(sum, grid)) == 4


def test_heat_map_refuses_naive_instants():
    """An instant without a zone cannot be placed in a local hour and is refused."""
    with pytest.raises(InvalidInput):
        call_heat_map([dt.datetime(2024, 6, 3, 9, 0)])


FUZZED = (AsteriskCdrConnector({}), CallCsvConnector({"mapping": str(MAPPING)}))


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_invalid_input(payload):
    """Any bytes either parse or raise an InvalidInput kind, for both connectors."""
    for connector in FUZZED:
        try:
            drafts = connector.parse(RawRecord(payload))
        except InvalidInput:
            continue
        assert all(draft.event_type is EventType.CALL for draft in drafts)


@settings(max_examples=150, deadline=None)
@given(
    row=st.dictionaries(
        st.sampled_from([*CDR_COLUMNS, "主叫号码", "开始时间", "通话时长", "是否接通"]),
        st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none()),
    )
)
def test_arbitrary_rows_parse_or_raise_invalid_input(row):
    """Any JSON row of cells either parses or raises an InvalidInput kind."""
    payload = json.dumps(row).encode()
    for connector in FUZZED:
        try:
            drafts = connector.parse(RawRecord(payload))
        except InvalidInput:
            continue
        assert all(draft.event_type is EventType.CALL for draft in drafts)
