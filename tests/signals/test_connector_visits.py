"""GPS visits: geofences, dwell, speeds, GCJ-02 and replay of unplaced fixes."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.signals.connectors import build_connector
from waggle.signals.connectors.visits import (
    OutsideGeofence,
    VisitConnector,
    VisitTooShort,
    employee_reference,
    read_records,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord
from waggle.signals.geo import (
    EARTH_RADIUS_M,
    gcj02_to_wgs84,
    haversine_m,
    wgs84_to_gcj02,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "visits"
UTC = dt.UTC
SITE_LAT, SITE_LON = 31.2304, 121.4737
METERS_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
SITE = {
    "account_ref": "account:C1001",
    "lat": SITE_LAT,
    "lon": SITE_LON,
    "name": "总部",
}


def _north(meters: float) -> float:
    """Return the latitude ``meters`` due north of the site (exact under haversine)."""
    return SITE_LAT + meters / METERS_PER_DEGREE


def _fix(clock: str, meters: float, **extra: Any) -> dict[str, Any]:
    return {
        "employee": "E0001",
        "timestamp": f"2024-06-03T{clock}:00+08:00",
        "lat": _north(meters),
        "lon": SITE_LON,
        "accuracy_m": 10,
    } | extra


TRACK = [
    _fix("09:00", 5000),
    _fix("09:20", 1000),
    _fix("09:30", 50, kind="签到"),
    _fix("09:40", 20),
    _fix("10:10", 30, kind="签退"),
    _fix("10:20", 2000),
]


def _records(tmp_path: Path, rows: list[dict[str, Any]], config: dict[str, Any]):
    path = tmp_path / "fixes.jsonl"
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    return list(read_records(path, config))


def _kinds(records: list[RawRecord]) -> list[str]:
    return [json.loads(record.payload)["kind"] for record in records]


def test_track_is_cut_into_travel_visit_travel(tmp_path):
    """A track through one site gives a stretch, a visit and another stretch."""
    records = _records(tmp_path, TRACK, {"sites": [SITE]})

    visit = json.loads(records[1].payload)

    assert _kinds(records) == ["unplaced", "visit", "unplaced"]
    assert visit["employee"] == "employee:E0001"
    assert visit["account_ref"] == "account:C1001"
    assert (visit["arrived_at"], visit["left_at"]) == (
        "2024-06-03T01:30:00Z",
        "2024-06-03T02:10:00Z",
    )
    assert len(visit["fixes"]) == 3
    assert visit["before"]["at"] == "2024-06-03T01:20:00Z"
    assert visit["after"]["at"] == "2024-06-03T02:20:00Z"
    assert records[1].locator == (
        "fixes.jsonl employee:E0001 visit 2024-06-03T01:30:00Z..2024-06-03T02:10:00Z"
    )


def test_visit_draft_has_exact_arrival_departure_and_duration(tmp_path):
    """The visit draft carries arrival, departure, dwell, closest distance and fixes."""
    config = {"sites": [SITE]}
    record = _records(tmp_path, TRACK, config)[1]

    [draft] = build_connector("gps", config).parse(record)

    assert draft.source == "gps"
    assert draft.event_type is EventType.FIELD_VISIT
    assert draft.channel is Channel.VISIT
    assert draft.sender == "employee:E0001"
    assert draft.account_ref == "account:C1001"
    assert draft.occurred_at == dt.datetime(2024, 6, 3, 1, 30, tzinfo=UTC)
    assert draft.source_id.startswith("visit-")
    assert dict(draft.attributes) == {
        "arrived_at": "2024-06-03T01:30:00Z",
        "left_at": "2024-06-03T02:10:00Z",
        "duration_minutes": 40.0,
        "distance_m": 20.0,
        "fix_count": 3,
        "site_name": "总部",
        "radius_m": 200,
        "has_check_in": True,
        "has_check_out": True,
        "speed_flags": [],
        "is_suspicious": False,
    }


def test_visit_source_id_is_stable_across_reads(tmp_path):
    """Reading and parsing the same track twice gives the same source id."""
    config = {"sites": [SITE]}
    connector = VisitConnector(config)

    first = connector.parse(_records(tmp_path, TRACK, config)[1])[0].source_id
    again = connector.parse(_records(tmp_path, TRACK, config)[1])[0].source_id

    assert first == again


def test_site_radius_moves_the_arrival(tmp_path):
    """With a 40 m radius the fix 50 m out is outside: arrival is 10 min later."""
    config = {"sites": [SITE | {"radius_m": 40}]}
    record = _records(tmp_path, TRACK, config)[1]

    [draft] = VisitConnector(config).parse(record)

    assert draft.attributes["arrived_at"] == "2024-06-03T01:40:00Z"
    assert draft.attributes["duration_minutes"] == 30.0
    assert draft.attributes["radius_m"] == 40
    assert draft.attributes["has_check_in"] is False


def test_default_radius_applies_to_sites_without_one(tmp_path):
    """The top-level radius_m is used by sites that set none."""
    config = {"sites": [SITE], "radius_m": 35}
    record = _records(tmp_path, TRACK, config)[1]

    [draft] = VisitConnector(config).parse(record)

    assert draft.attributes["fix_count"] == 2
    assert draft.attributes["duration_minutes"] == 30.0
    assert draft.attributes["radius_m"] == 35


def test_dwell_below_threshold_is_not_a_visit(tmp_path):
    """A 40-minute stay with min_dwell 45 is no visit; the stretch is too short."""
    config = {"sites": [SITE], "min_dwell_minutes": 45}
    records = _records(tmp_path, TRACK, config)

    with pytest.raises(VisitTooShort) as caught:
        VisitConnector(config).parse(records[0])

    assert _kinds(records) == ["unplaced"]
    assert len(json.loads(records[0].payload)["fixes"]) == 6
    assert caught.value.code == "visit_too_short"
    assert "account:C1001 for less than 45 minutes" in caught.value.message


def test_impossible_jump_into_the_site_is_flagged(tmp_path):
    """A fix 100 km away one minute before arrival implies 6000 km/h and is flagged."""
    track = [_fix("09:29", 100_000, accuracy_m=None), *TRACK[2:5]]
    config = {"sites": [SITE]}
    record = _records(tmp_path, track, config)[1]

    [draft] = VisitConnector(config).parse(record)

    assert draft.attributes["is_suspicious"] is True
    assert draft.attributes["speed_flags"] == [
        {
            "from_at": "2024-06-03T01:29:00Z",
            "to_at": "2024-06-03T01:30:00Z",
            "distance_m": 99950.0,
            "speed_kmh": 5997.0,
        }
    ]


def test_close_noisy_fixes_are_not_taken_for_jumps(tmp_path):
    """Two fixes 30 m and one second apart with 20 m accuracy each are not a jump."""
    track = [
        _fix("09:30", 0, accuracy_m=20),
        {**_fix("09:30", 30, accuracy_m=20), "timestamp": "2024-06-03T09:30:01+08:00"},
        _fix("09:45", 10),
    ]
    config = {"sites": [SITE]}

    [draft] = VisitConnector(config).parse(_records(tmp_path, track, config)[0])

    assert draft.attributes["speed_flags"] == []


def test_long_gap_splits_a_stay_into_two_visits(tmp_path):
    """Fixes at one site more than max_gap_minutes apart make two visits."""
    track = [_fix("09:00", 0), _fix("09:10", 0), _fix("11:00", 0), _fix("11:10", 0)]
    config = {"sites": [SITE], "max_gap_minutes": 60}

    records = _records(tmp_path, track, config)

    assert _kinds(records) == ["visit", "visit"]


def test_gcj02_matches_the_published_reference_point():
    """WGS-84 (39.915, 116.404) is GCJ-02 (39.91640428150164, 116.41024449916938)."""
    lat, lon = wgs84_to_gcj02(39.915, 116.404)

    back_lat, back_lon = gcj02_to_wgs84(lat, lon)

    assert lat == pytest.approx(39.91640428150164, abs=1e-12)
    assert lon == pytest.approx(116.41024449916938, abs=1e-12)
    assert haversine_m(back_lat, back_lon, 39.915, 116.404) < 0.001
    assert gcj02_to_wgs84(48.8566, 2.3522) == (48.8566, 2.3522)


def test_gcj02_fixes_are_converted_before_the_geofence(tmp_path):
    """Fixes from a Chinese map SDK hit the site only when declared as gcj02."""
    shown_lat, shown_lon = wgs84_to_gcj02(SITE_LAT, SITE_LON)
    track = [
        _fix("09:00", 0) | {"lat": shown_lat, "lon": shown_lon},
        _fix("09:20", 0) | {"lat": shown_lat, "lon": shown_lon},
    ]
    as_wgs = {"sites": [SITE]}
    as_gcj = {
        "sites": [SITE],
        "coordinate_system": "gcj02",
        "sites_coordinate_system": "wgs84",
    }

    wgs_kinds = _kinds(_records(tmp_path, track, as_wgs))
    [draft] = VisitConnector(as_gcj).parse(_records(tmp_path, track, as_gcj)[0])

    assert haversine_m(shown_lat, shown_lon, SITE_LAT, SITE_LON) > 400
    assert wgs_kinds == ["unplaced"]
    assert draft.attributes["distance_m"] == 0.0


def test_unplaced_fixes_are_rejected_then_accepted_once_the_site_exists(tmp_path):
    """Fixes at no known site are quarantined; the same record replays into a visit."""
    [record] = _records(tmp_path, TRACK, {"sites": []})

    with pytest.raises(OutsideGeofence) as caught:
        VisitConnector({"sites": []}).parse(record)
    [draft] = VisitConnector({"sites": [SITE]}).parse(record)

    assert caught.value.code == "outside_geofence"
    assert "6 fixes lie inside no configured site" in caught.value.message
    assert draft.account_ref == "account:C1001"
    assert draft.attributes["arrived_at"] == "2024-06-03T01:30:00Z"
    assert draft.attributes["duration_minutes"] == 40.0


def test_checkin_csv_with_chinese_columns_and_phone_employee():
    """A check-in export with Chinese columns and a phone gives the visit."""
    config = {"sites": [SITE], "mapping": {"columns": {"手机号": "employee"}}}

    records = list(read_records(FIXTURES / "checkins.csv", config))
    [draft] = VisitConnector(config).parse(records[1])

    assert _kinds(records) == ["unplaced", "visit", "unplaced", "invalid_fix"]
    assert records[3].locator == "checkins.csv row 7"
    assert draft.sender == "phone:13812345678"
    assert draft.occurred_at == dt.datetime(2024, 6, 3, 6, 5, tzinfo=UTC)
    assert draft.attributes["left_at"] == "2024-06-03T07:20:00Z"
    assert draft.attributes["duration_minutes"] == 75.0
    assert draft.attributes["distance_m"] == 25.0


def test_unreadable_row_is_kept_and_rejected_with_the_field():
    """A row with an unreadable time is kept verbatim and rejected by field."""
    config = {"sites": [SITE], "mapping": {"columns": {"手机号": "employee"}}}
    record = list(read_records(FIXTURES / "checkins.csv", config))[3]

    with pytest.raises(MalformedPayload) as caught:
        VisitConnector(config).parse(record)

    assert json.loads(record.payload)["row"]["定位时间"] == "不是时间"
    assert "timestamp" in caught.value.message


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("E0001", "employee:E0001"),
        ("+86 138 1234 5678", "phone:13812345678"),
        ("phone:13900001111", "phone:13900001111"),
        ("employee:E7", "employee:E7"),
    ],
)
def test_employee_cells_become_references(cell, expected):
    """Employee cells are external ids unless they are mobile numbers or references."""
    assert employee_reference(cell) == expected


def test_site_without_account_reference_is_refused():
    """A site must name its account as account:<external id>."""
    with pytest.raises(InvalidInput) as caught:
        VisitConnector({"sites": [SITE | {"account_ref": "C1001"}]})

    assert "sites.0.account_ref" in caught.value.message


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_invalid_input(payload):
    """Any bytes either parse or raise an InvalidInput kind."""
    try:
        drafts = VisitConnector({"sites": [SITE]}).parse(RawRecord(payload))
    except InvalidInput:
        return

    assert all(draft.event_type is EventType.FIELD_VISIT for draft in drafts)


FUZZED = VisitConnector({"sites": [SITE], "min_dwell_minutes": 0})
_stored_fix = st.fixed_dictionaries(
    {
        "at": st.datetimes(
            min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2024, 1, 2)
        ).map(lambda value: value.replace(tzinfo=UTC).isoformat()),
        "lat": st.one_of(st.floats(), st.floats(31.229, 31.232)),
        "lon": st.one_of(st.floats(), st.floats(121.472, 121.475)),
        "accuracy_m": st.one_of(st.none(), st.floats(min_value=-5, max_value=50)),
        "kind": st.sampled_from(["track", "check_in", "check_out", "walk"]),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["visit", "unplaced", "invalid_fix", "other"]),
    fixes=st.lists(_stored_fix, max_size=6),
    row=st.dictionaries(
        st.sampled_from(["employee", "timestamp", "lat", "lon", "kind", "纬度"]),
        st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.none()),
    ),
)
def test_arbitrary_segments_parse_or_raise_invalid_input(kind, fixes, row):
    """Any segment shape either parses into visits or raises an InvalidInput kind."""
    payload = {"kind": kind, "employee": "employee:E1", "fixes": fixes, "row": row}
    record = RawRecord(json.dumps(payload).encode())

    try:
        drafts = FUZZED.parse(record)
    except InvalidInput:
        return

    assert all(draft.account_ref == "account:C1001" for draft in drafts)
