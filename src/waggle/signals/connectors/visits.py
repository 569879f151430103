"""Field visits: GPS fixes and check-ins turned into visits at customer sites.

A visit is a stretch of one employee's fixes inside one site's geofence
(haversine distance to the site's centre within its radius, on WGS-84), so it
can only be seen in a sequence of fixes, while ``parse`` sees one record.
:func:`read_records` therefore does the grouping: it reads the fixes (CSV or
XLSX with a header, or JSON lines), groups them per employee, sorts them by
time and cuts each track into segments, one raw record each:

- ``visit``: consecutive fixes at one site spanning at least
  ``min_dwell_minutes``, with the fix before and the fix after it (for the
  speed check at arrival and departure);
- ``unplaced``: the fixes between two visits (travel, and stops too short to
  count or at no known site); ``parse`` rejects these with
  :class:`OutsideGeofence` (``outside_geofence``) or, when some of the fixes
  were inside a site but not for long enough, :class:`VisitTooShort`
  (``visit_too_short``), so the pipeline quarantines them;
- ``invalid_fix``: a row that is not a readable fix, kept as it was.

``parse`` never trusts the reader's verdict: it runs the geofence check again
on the record's fixes with the *current* sites, radius and dwell settings. A
quarantined ``unplaced`` record replayed after its customer's site was added
(or the dwell threshold lowered) becomes a visit. A track is also cut where
two fixes are more than ``max_gap_minutes`` apart, at a 签退 (check-out) and
before a 签到 (check-in).

Coordinates from Chinese map SDKs (AMap/高德, Tencent/腾讯) are GCJ-02, not
WGS-84, and sit a few hundred metres off: set ``coordinate_system: gcj02``
(and ``sites_coordinate_system`` when the sites were picked on such a map)
so both are converted to WGS-84 before any distance is measured.

Config::

    sites: [{account_ref: "account:C1001", lat: 31.2304, lon: 121.4737,
             radius_m: 150, name: 上海总部}]
    radius_m: 200            # default geofence radius
    min_dwell_minutes: 5
    max_speed_kmh: 200       # faster jumps between fixes are flagged
    max_gap_minutes: 60
    coordinate_system: wgs84 # or gcj02
    timezone: Asia/Shanghai  # of timestamps written without an offset
    mapping: {columns: {工号: employee, 定位时间: timestamp}}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from waggle.core.errors import InvalidInput
from waggle.crm.columns import CellError, Column, Kind, parse_cell
from waggle.crm.mapping import ColumnMapping, parse_mapping, plan_columns
from waggle.crm.tabular import Cell, guess_format, read_table
from waggle.signals.connectors.calls import normalize_phone
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import (
    Channel,
    EventDraft,
    EventType,
    RawRecord,
    check_reference,
    millis_to_datetime,
)
from waggle.signals.geo import gcj02_to_wgs84, haversine_m

logger = logging.getLogger(__name__)

FIX_FIELDS = ("employee", "timestamp", "lat", "lon", "accuracy_m", "kind")
FIX_KINDS = ("check_in", "check_out", "track")
_KIND_WORDS = {
    "签到": "check_in",
    "上班打卡": "check_in",
    "签退": "check_out",
    "下班打卡": "check_out",
    "轨迹": "track",
    "定位": "track",
    "checkin": "check_in",
    "checkout": "check_out",
}
_COLUMN_ALIASES = {
    "工号": "employee",
    "员工工号": "employee",
    "employee_id": "employee",
    "employee_ref": "employee",
    "时间": "timestamp",
    "定位时间": "timestamp",
    "打卡时间": "timestamp",
    "time": "timestamp",
    "at": "timestamp",
    "纬度": "lat",
    "latitude": "lat",
    "经度": "lon",
    "longitude": "lon",
    "lng": "lon",
    "精度": "accuracy_m",
    "accuracy": "accuracy_m",
    "类型": "kind",
    "打卡类型": "kind",
}
_FIX_COLUMNS = {
    "employee": Column("employee", max_length=64),
    "lat": Column("lat", Kind.FLOAT, minimum=-90, maximum=90),
    "lon": Column("lon", Kind.FLOAT, minimum=-180, maximum=180),
    "accuracy_m": Column("accuracy_m", Kind.FLOAT, minimum=0, maximum=1e6),
    "kind": Column("kind", Kind.CHOICE, choices=FIX_KINDS),
}
_MOBILE = re.compile(r"1[3-9]\d{9}")
_EPOCH = re.compile(r"\d{9,13}(\.\d+)?")


class OutsideGeofence(InvalidInput):
    """The fixes lie inside no configured site; replay once the site is added."""

    code = "outside_geofence"


class VisitTooShort(InvalidInput):
    """The fixes were inside a site, but for less than ``min_dwell_minutes``."""

    code = "visit_too_short"


CoordinateSystem = Literal["wgs84", "gcj02"]


class SiteConfig(BaseModel):
    """One customer location: the account it belongs to and its geofence."""

    model_config = ConfigDict(extra="forbid")

    account_ref: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float | None = Field(default=None, gt=0)
    name: str | None = None

    @field_validator("account_ref")
    @classmethod
    def _account(cls, value: str) -> str:
        if not value.startswith("account:"):
            raise ValueError("must be account:<external id>")
        check_reference(value)
        return value


class VisitConfig(BaseModel):
    """Options of the GPS visit connector (see the module notes)."""

    model_config = ConfigDict(extra="forbid")

    sites: list[SiteConfig] = Field(default_factory=list)
    radius_m: float = Field(default=200, gt=0)
    min_dwell_minutes: float = Field(default=5, ge=0)
    max_speed_kmh: float = Field(default=200, gt=0)
    max_gap_minutes: float = Field(default=60, gt=0)
    coordinate_system: CoordinateSystem = "wgs84"
    sites_coordinate_system: CoordinateSystem | None = None
    timezone: str = "Asia/Shanghai"
    mapping: dict[str, Any] | None = None


@dataclass(frozen=True)
class Site:
    """A geofence in WGS-84."""

    account_ref: str
    lat: float
    lon: float
    radius_m: float
    name: str | None


@dataclass(frozen=True)
class Fix:
    """One position report, coordinates as the source gave them."""

    at: dt.datetime
    lat: float
    lon: float
    accuracy_m: float | None = None
    kind: str = "track"

    def as_json(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "lat": self.lat,
            "lon": self.lon,
            "accuracy_m": self.accuracy_m,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class Run:
    """Consecutive fixes (``start``..``end`` inclusive) at one site or at none."""

    site: Site | None
    start: int
    end: int


class _Settings:
    def __init__(self, config: Mapping[str, Any]) -> None:
        try:
            self.config = VisitConfig.model_validate(dict(config))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "config"
            raise InvalidInput(
                f"connector gps: config {where}: {first['msg']}", connector="gps"
            ) from exc
        document = dict(self.config.mapping or {})
        document["columns"] = {**_COLUMN_ALIASES, **dict(document.get("columns") or {})}
        values = dict(document.get("values") or {})
        values["kind"] = {**_KIND_WORDS, **dict(values.get("kind") or {})}
        document["values"] = values
        document.setdefault("timezone", self.config.timezone)
        self.mapping: ColumnMapping = parse_mapping(document, origin="gps mapping")
        self.sites = tuple(self._site(site) for site in self.config.sites)
        self.fixes_gcj02 = self.config.coordinate_system == "gcj02"

    def _site(self, site: SiteConfig) -> Site:
        system = self.config.sites_coordinate_system or self.config.coordinate_system
        lat, lon = (
            gcj02_to_wgs84(site.lat, site.lon)
            if system == "gcj02"
            else (site.lat, site.lon)
        )
        radius = site.radius_m or self.config.radius_m
        return Site(site.account_ref, lat, lon, radius, site.name)

    def wgs84(self, fix: Fix) -> tuple[float, float]:
        return (
            gcj02_to_wgs84(fix.lat, fix.lon) if self.fixes_gcj02 else (fix.lat, fix.lon)
        )

    def site_of(self, fix: Fix) -> Site | None:
        """Return the site whose geofence holds the fix (the nearest if several)."""
        lat, lon = self.wgs84(fix)
        best: tuple[float, Site] | None = None
        for site in self.sites:
            distance = haversine_m(lat, lon, site.lat, site.lon)
            if distance <= site.radius_m and (best is None or distance < best[0]):
                best = (distance, site)
        return None if best is None else best[1]

    def distance_m(self, fix: Fix, site: Site) -> float:
        return haversine_m(*self.wgs84(fix), site.lat, site.lon)

    def is_gap(self, before: Fix, after: Fix) -> bool:
        return after.at - before.at > dt.timedelta(minutes=self.config.max_gap_minutes)

    def is_long_enough(self, fixes: Sequence[Fix]) -> bool:
        dwell = fixes[-1].at - fixes[0].at
        return dwell >= dt.timedelta(minutes=self.config.min_dwell_minutes)


def find_runs(fixes: Sequence[Fix], settings: _Settings) -> list[Run]:
    """Cut time-sorted fixes into runs at one site (or none) each.

    A run ends where the site changes, at a gap longer than max_gap_minutes,
    after a check-out and before a check-in.
    """
    runs: list[Run] = []
    current: Site | None = None
    for index, fix in enumerate(fixes):
        site = settings.site_of(fix)
        if index > 0 and not _continues(fixes[index - 1], fix, site, current, settings):
            runs.append(Run(current, runs[-1].end + 1 if runs else 0, index - 1))
        current = site
    if fixes:
        runs.append(Run(current, runs[-1].end + 1 if runs else 0, len(fixes) - 1))
    return runs


def _continues(
    before: Fix, fix: Fix, site: Site | None, current: Site | None, settings: _Settings
) -> bool:
    return (
        site == current
        and not settings.is_gap(before, fix)
        and before.kind != "check_out"
        and fix.kind != "check_in"
    )


def _is_visit(run: Run, fixes: Sequence[Fix], settings: _Settings) -> bool:
    return run.site is not None and settings.is_long_enough(
        fixes[run.start : run.end + 1]
    )


def speed_flags(sequence: Sequence[Fix], settings: _Settings) -> list[dict[str, Any]]:
    """List the jumps between consecutive fixes faster than max_speed_kmh.

    The fixes' accuracy radii are subtracted from the distance first, so GPS
    noise between two close, imprecise fixes is not taken for a jump.
    """
    flags: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(sequence):
        distance = haversine_m(*settings.wgs84(before), *settings.wgs84(after))
        slack = (before.accuracy_m or 0) + (after.accuracy_m or 0)
        seconds = max((after.at - before.at).total_seconds(), 1.0)
        if (distance - slack) / seconds * 3.6 > settings.config.max_speed_kmh:
            flags.append(
                {
                    "from_at": _iso(before.at),
                    "to_at": _iso(after.at),
                    "distance_m": round(distance, 1),
                    "speed_kmh": round(distance / seconds * 3.6, 1),
                }
            )
    return flags


class VisitConnector:
    """Turn a visit or unplaced segment of a track into FIELD_VISIT drafts.

    Raises:
        InvalidInput: (from the constructor) the configuration is unusable.
    """

    name = "gps"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.settings = _Settings(config or {})

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return one draft per visit the record's fixes make with the current sites.

        Raises:
            OutsideGeofence: no fix lies inside any configured site.
            VisitTooShort: fixes lie inside a site, but not for long enough.
            MalformedPayload: not a segment written by :func:`read_records`,
                or a fix that is not a valid position and time.
        """
        segment = _json_object(record.payload)
        kind = segment.get("kind")
        if kind == "invalid_fix":
            employee, fix = _row_fix(segment.get("row"), self.settings)
            fixes, before, after = [fix], None, None
        elif kind in ("visit", "unplaced"):
            employee = _employee(segment.get("employee"))
            fixes = _fix_list(segment.get("fixes"))
            before = _optional_fix(segment.get("before"), "before")
            after = _optional_fix(segment.get("after"), "after")
        else:
            raise MalformedPayload(
                f"gps record: kind {kind!r} is not visit, unplaced or invalid_fix"
            )
        fixes.sort(key=lambda item: item.at)
        runs = find_runs(fixes, self.settings)
        visits = [
            (run, run.site)
            for run in runs
            if run.site is not None and _is_visit(run, fixes, self.settings)
        ]
        if not visits:
            raise self._rejection(employee, fixes, runs)
        return [
            self._draft(employee, run, site, fixes, before=before, after=after)
            for run, site in visits
        ]

    def _rejection(
        self, employee: str, fixes: Sequence[Fix], runs: Sequence[Run]
    ) -> InvalidInput:
        span = f"{employee} {_iso(fixes[0].at)}..{_iso(fixes[-1].at)}"
        sites = sorted({run.site.account_ref for run in runs if run.site is not None})
        if sites:
            return VisitTooShort(
                f"gps fixes of {span}: inside {', '.join(sites)} for less than "
                f"{self.settings.config.min_dwell_minutes:g} minutes",
                employee=employee,
            )
        return OutsideGeofence(
            f"gps fixes of {span}: {len(fixes)} fixes lie inside no configured site; "
            "add the customer's location to the sites and replay",
            employee=employee,
        )

    def _draft(
        self,
        employee: str,
        run: Run,
        site: Site,
        fixes: Sequence[Fix],
        *,
        before: Fix | None,
        after: Fix | None,
    ) -> EventDraft:
        inside = list(fixes[run.start : run.end + 1])
        previous = fixes[run.start - 1] if run.start > 0 else before
        following = fixes[run.end + 1] if run.end + 1 < len(fixes) else after
        sequence = [fix for fix in (previous, *inside, following) if fix is not None]
        flags = speed_flags(sequence, self.settings)

        arrived_at, left_at = inside[0].at, inside[-1].at
        key = f"{employee}|{site.account_ref}|{_iso(arrived_at)}"
        closest = min(self.settings.distance_m(fix, site) for fix in inside)
        attributes = {
            "arrived_at": _iso(arrived_at),
            "left_at": _iso(left_at),
            "duration_minutes": round((left_at - arrived_at).total_seconds() / 60, 1),
            "distance_m": round(closest, 1),
            "fix_count": len(inside),
            "site_name": site.name,
            "radius_m": site.radius_m,
            "has_check_in": any(fix.kind == "check_in" for fix in inside),
            "has_check_out": any(fix.kind == "check_out" for fix in inside),
            "speed_flags": flags,
            "is_suspicious": bool(flags),
        }
        return EventDraft(
            source="gps",
            source_id="visit-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32],
            event_type=EventType.FIELD_VISIT,
            occurred_at=arrived_at,
            channel=Channel.VISIT,
            sender=employee,
            account_ref=site.account_ref,
            attributes=attributes,
        )


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedPayload(
            f"gps record: payload is not UTF-8 JSON ({exc})"
        ) from exc
    if not isinstance(value, dict):
        raise MalformedPayload("gps record: payload must be a JSON object")
    return value


def _employee(value: Any) -> str:
    if not isinstance(value, str) or value.partition(":")[0] not in (
        "employee",
        "phone",
    ):
        raise MalformedPayload(
            f"gps record: employee {value!r} must be employee:<id> or phone:<digits>"
        )
    return check_reference(value)


def employee_reference(text: str) -> str:
    """Return the reference of an employee cell: an external id or a mobile number.

    Raises:
        MalformedPayload: the cell is empty or a malformed reference.
    """
    value = text.strip()
    if value.partition(":")[0] in ("employee", "phone"):
        return check_reference(value)
    number = normalize_phone(value)
    if number and _MOBILE.fullmatch(number) and re.fullmatch(r"[\d+\-\s()]+", value):
        return f"phone:{number}"
    if not value:
        raise MalformedPayload("gps fix: employee is empty")
    return f"employee:{value}"


def _fix_list(value: Any) -> list[Fix]:
    if not isinstance(value, list) or not value:
        raise MalformedPayload("gps record: fixes must be a non-empty list")
    return [_stored_fix(item, f"fixes[{index}]") for index, item in enumerate(value)]


def _optional_fix(value: Any, where: str) -> Fix | None:
    return None if value is None else _stored_fix(value, where)


def _stored_fix(value: Any, where: str) -> Fix:
    if not isinstance(value, dict):
        raise MalformedPayload(f"gps record: {where} must be a JSON object")
    at = value.get("at")
    try:
        parsed = dt.datetime.fromisoformat(at) if isinstance(at, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise MalformedPayload(
            f"gps record: {where}.at {at!r} is not an ISO time with zone"
        )
    kind = value.get("kind", "track")
    if kind not in FIX_KINDS:
        raise MalformedPayload(
            f"gps record: {where}.kind {kind!r} is not one of {FIX_KINDS}"
        )
    return Fix(
        at=parsed.astimezone(dt.UTC),
        lat=_number(value.get("lat"), f"{where}.lat", limit=90),
        lon=_number(value.get("lon"), f"{where}.lon", limit=180),
        accuracy_m=_accuracy(value.get("accuracy_m"), where),
        kind=kind,
    )


def _number(value: Any, where: str, *, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedPayload(f"gps record: {where} {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > limit:
        raise MalformedPayload(f"gps record: {where} {value!r} is outside ±{limit:g}")
    return number


def _accuracy(value: Any, where: str) -> float | None:
    if value is None:
        return None
    number = _number(value, f"{where}.accuracy_m", limit=1e6)
    if number < 0:
        raise MalformedPayload(f"gps record: {where}.accuracy_m must not be negative")
    return number


def _row_fix(row: Any, settings: _Settings) -> tuple[str, Fix]:
    """Read one input row (column name to cell) as an employee and a fix.

    Raises:
        MalformedPayload: a required cell is missing or does not fit its field.
    """
    if isinstance(row, str):
        try:
            row = json.loads(row)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise MalformedPayload(f"gps fix: line is not JSON ({exc})") from exc
    if not isinstance(row, dict) or not all(
        cell is None or isinstance(cell, str | int | float | bool)
        for cell in row.values()
    ):
        raise MalformedPayload("gps fix: expected an object of column names to cells")
    plan = plan_columns(
        [str(name) for name in row],
        settings.mapping,
        fields=FIX_FIELDS,
        origin="gps fix",
    )
    cells: list[Cell] = list(row.values())
    values: dict[str, Any] = {}
    for name, column in _FIX_COLUMNS.items():
        index = plan.fields.get(name)
        values[name] = _cell(
            column, cells[index] if index is not None else None, settings
        )
    for name in ("employee", "lat", "lon"):
        if values[name] is None:
            raise MalformedPayload(f"gps fix: {name} is missing")
    index = plan.fields.get("timestamp")
    at = _timestamp(cells[index] if index is not None else None, settings)
    fix = Fix(
        at=at,
        lat=values["lat"],
        lon=values["lon"],
        accuracy_m=values["accuracy_m"],
        kind=values["kind"] or "track",
    )
    return employee_reference(values["employee"]), fix


def _cell(column: Column, cell: Cell, settings: _Settings) -> Any:
    try:
        value = parse_cell(column, cell, settings.mapping)
    except CellError as exc:
        raise MalformedPayload(f"gps fix: {column.name}: {exc.message}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise MalformedPayload(
            f"gps fix: {column.name} {cell!r} is not a finite number"
        )
    return value


def _timestamp(cell: Cell, settings: _Settings) -> dt.datetime:
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return millis_to_datetime(cell, field_name="timestamp", record="gps fix")
    if isinstance(cell, str) and _EPOCH.fullmatch(cell.strip()):
        return millis_to_datetime(
            cell.strip(), field_name="timestamp", record="gps fix"
        )
    value = _cell(Column("timestamp", Kind.DATETIME), cell, settings)
    if not isinstance(value, dt.datetime):
        raise MalformedPayload("gps fix: timestamp is missing")
    return value


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Read fixes, group them per employee and yield one record per segment.

    Raises:
        InvalidInput: the configuration or the file is unusable.
    """
    settings = _Settings(config)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc})") from exc
    tracks: dict[str, list[Fix]] = {}
    invalid: list[RawRecord] = []
    for locator, row in _rows(data, name=path.name):
        try:
            employee, fix = _row_fix(row, settings)
        except InvalidInput as exc:
            logger.warning(
                "gps row unreadable",
                extra={"locator": locator, "reason": exc.code},
            )
            payload = {"kind": "invalid_fix", "row": row}
            invalid.append(RawRecord(_dump(payload), locator=locator))
            continue
        tracks.setdefault(employee, []).append(fix)
    for employee in sorted(tracks):
        yield from _segments(employee, tracks[employee], settings, name=path.name)
    yield from invalid


def _rows(data: bytes, *, name: str) -> Iterator[tuple[str, Any]]:
    if name.lower().endswith((".jsonl", ".ndjson", ".json")):
        for number, line in enumerate(data.decode("utf-8-sig").splitlines(), start=1):
            if line.strip():
                yield f"{name} line {number}", _json_row(line)
        return
    table = read_table(data, filename=name, file_format=guess_format(name, data))
    header = table.header
    for number, cells in table.rows:
        row = {
            column: _jsonable(cell) for column, cell in zip(header, cells, strict=False)
        }
        yield f"{name} row {number}", row


def _json_row(line: str) -> Any:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return line


def _jsonable(cell: Cell) -> Any:
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    if cell is None or isinstance(cell, str | int | float | bool):
        return cell
    return str(cell)


def _segments(
    employee: str, fixes: list[Fix], settings: _Settings, *, name: str
) -> Iterator[RawRecord]:
    """Yield the visits of one track and the unplaced stretches between them."""
    fixes.sort(key=lambda item: item.at)
    pending: list[Run] = []
    for run in find_runs(fixes, settings):
        if _is_visit(run, fixes, settings):
            yield from _unplaced(employee, pending, fixes, name=name)
            pending = []
            yield _segment_record("visit", employee, run, fixes, name=name)
        elif pending and settings.is_gap(fixes[pending[-1].end], fixes[run.start]):
            yield from _unplaced(employee, pending, fixes, name=name)
            pending = [run]
        else:
            pending.append(run)
    yield from _unplaced(employee, pending, fixes, name=name)


def _unplaced(
    employee: str, runs: list[Run], fixes: list[Fix], *, name: str
) -> Iterator[RawRecord]:
    if runs:
        merged = Run(None, runs[0].start, runs[-1].end)
        yield _segment_record("unplaced", employee, merged, fixes, name=name)


def _segment_record(
    kind: str, employee: str, run: Run, fixes: list[Fix], *, name: str
) -> RawRecord:
    inside = fixes[run.start : run.end + 1]
    payload: dict[str, Any] = {
        "kind": kind,
        "employee": employee,
        "account_ref": run.site.account_ref if run.site is not None else None,
        "arrived_at": _iso(inside[0].at),
        "left_at": _iso(inside[-1].at),
        "fixes": [fix.as_json() for fix in inside],
        "before": fixes[run.start - 1].as_json() if run.start > 0 else None,
        "after": fixes[run.end + 1].as_json() if run.end + 1 < len(fixes) else None,
    }
    locator = f"{name} {employee} {kind} {payload['arrived_at']}..{payload['left_at']}"
    return RawRecord(_dump(payload), locator=locator)


def _dump(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


__all__ = [
    "FIX_KINDS",
    "Fix",
    "OutsideGeofence",
    "SiteConfig",
    "VisitConfig",
    "VisitConnector",
    "VisitTooShort",
    "employee_reference",
    "find_runs",
    "read_records",
    "speed_flags",
]
