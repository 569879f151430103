"""Call records: Asterisk ``cdr-csv`` files and generic call-record exports.

Two connectors live here because they share the number rules and the
direction rule:

- :class:`AsteriskCdrConnector` (``asterisk_cdr``) reads ``Master.csv`` as the
  ``cdr_csv`` backend writes it: no header, the columns accountcode, src, dst,
  dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end,
  duration, billsec, disposition, amaflags, then uniqueid and userfield when
  ``loguniqueid`` / ``loguserfield`` are on (and peeraccount, linkedid,
  sequence with ``newcdrcolumns``). Times are local unless ``usegmtime`` is
  set; configure ``timezone: UTC`` for such files.
- :class:`CallCsvConnector` (``calls_csv``) reads a CSV (UTF-8 or GBK) or XLSX
  export with a header, mapped onto call fields by a column mapping in the
  CRM import's format (``examples/mappings/calls_generic.yaml``).

Each raw record is one row as a JSON object of named cells, so a quarantined
row can be parsed again on its own. The module's :func:`read_records` serves
both connectors (the registry looks it up by module): it follows the config's
``format`` when given, else ``mapping`` means a generic export, else the first
row decides (a header, or a CDR row with a start time in column 10).

Numbers become ``phone:`` references with digits only: a +86 / 0086 / 86
country prefix is dropped, a long-distance 0 before a mobile number too,
landline area codes (``021...``) and short extensions (``8001``) stay.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from waggle.core.errors import InvalidInput
from waggle.crm.columns import CellError, Column, Kind, parse_cell
from waggle.crm.mapping import (
    ColumnMapping,
    check_mapping,
    load_mapping,
    parse_mapping,
    plan_columns,
)
from waggle.crm.tabular import Cell, detect_encoding, guess_format, read_table
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

logger = logging.getLogger(__name__)

CDR_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
)
CDR_REQUIRED = 16  # up to amaflags; the rest depends on cdr.conf
DISPOSITIONS = frozenset({"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"})
DIRECTIONS = ("inbound", "outbound", "internal")
CALL_FIELDS = (
    "call_id",
    "caller",
    "callee",
    "started_at",
    "ended_at",
    "duration_seconds",
    "answered",
    "direction",
    "employee",
)
_CDR_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_CALL_COLUMNS = {
    "call_id": Column("call_id", max_length=200),
    "caller": Column("caller", max_length=64),
    "callee": Column("callee", max_length=64),
    "started_at": Column("started_at", Kind.DATETIME, required=True),
    "ended_at": Column("ended_at", Kind.DATETIME),
    "duration_seconds": Column("duration_seconds", max_length=32),
    "answered": Column("answered", Kind.BOOLEAN),
    "direction": Column("direction", Kind.CHOICE, choices=DIRECTIONS),
    "employee": Column("employee", max_length=64),
}
_BUILT_IN_DIRECTIONS = {
    "呼出": "outbound",
    "外呼": "outbound",
    "去电": "outbound",
    "呼入": "inbound",
    "来电": "inbound",
    "内部": "internal",
    "out": "outbound",
    "in": "inbound",
}
_DURATION_CLOCK = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})")
_DURATION_WORDS = re.compile(
    r"(?:(\d+)\s*(?:小时|时|h))?\s*(?:(\d+)\s*(?:分钟|分|m))?\s*(?:(\d+)\s*(?:秒|s))?"
)


class CallConfig(BaseModel):
    """Options shared by both call connectors."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    internal_numbers: list[str] = Field(default_factory=list)
    extension_pattern: str = r"\d{2,6}"
    mapping: str | dict[str, Any] | None = None
    format: Literal["asterisk_cdr", "calls_csv"] | None = None
    columns: list[str] | None = None  # Master.csv column order, when customised


class _Settings:
    """A validated configuration, with the zone, mapping and rules compiled."""

    def __init__(self, config: Mapping[str, Any], *, connector: str) -> None:
        try:
            parsed = CallConfig.model_validate(dict(config))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "config"
            raise InvalidInput(
                f"connector {connector}: config {where}: {first['msg']}",
                connector=connector,
            ) from exc
        self.config = parsed
        self.zone = _zone(parsed.timezone, connector=connector)
        try:
            self.extension = re.compile(parsed.extension_pattern)
        except re.error as exc:
            raise InvalidInput(
                f"connector {connector}: config extension_pattern is not a regular "
                f"expression ({exc})",
                connector=connector,
            ) from exc
        self.internal = frozenset(
            number
            for raw in parsed.internal_numbers
            if (number := normalize_phone(raw))
        )
        self.columns = tuple(parsed.columns or CDR_COLUMNS)

    def is_internal(self, number: str | None) -> bool:
        return number is not None and (
            number in self.internal or self.extension.fullmatch(number) is not None
        )

    def direction(self, caller: str | None, callee: str | None) -> str:
        if self.is_internal(caller):
            return "internal" if self.is_internal(callee) else "outbound"
        return "inbound"


def _zone(name: str, *, connector: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"connector {connector}: config timezone {name!r} is not an IANA zone "
            "such as Asia/Shanghai",
            connector=connector,
        ) from exc


def normalize_phone(raw: str) -> str | None:
    """Return the digits a ``phone:`` reference carries, or ``None`` for no number.

    Drops punctuation and the Chinese country prefix (+86, 0086, 86 before a
    mobile number) and a long-distance 0 before a mobile number; keeps
    landline area codes (restoring the 0 of ``+86 21 ...``) and short
    extensions; keeps other countries' codes.
    """
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if not digits:
        return None
    if text.startswith("+"):
        return (
            _domestic(digits[2:])
            if digits.startswith("86") and len(digits) > 2
            else digits
        )
    if digits.startswith("0086") and len(digits) > 4:
        return _domestic(digits[4:])
    if re.fullmatch(r"861[3-9]\d{9}", digits) or re.fullmatch(r"01[3-9]\d{9}", digits):
        return digits[-11:]
    return digits


def _domestic(national: str) -> str:
    """Give back the trunk 0 an international landline number drops (+86 21 -> 021)."""
    if national.startswith(("0", "1", "400", "800")):
        return national
    return "0" + national


def _phone_reference(raw: Any) -> tuple[str | None, str | None]:
    number = normalize_phone(str(raw)) if raw not in (None, "") else None
    return number, (f"phone:{number}" if number else None)


class AsteriskCdrConnector:
    """Turn one Asterisk ``Master.csv`` row (as a JSON object) into a CALL event.

    Config: ``timezone`` of the start times (default Asia/Shanghai),
    ``internal_numbers`` (the company's own numbers and DIDs) and
    ``extension_pattern`` (default two to six digits): a call whose caller is
    internal is outbound, internal when the callee is internal too, else
    inbound. ``columns`` overrides the column order for a customised file.

    Raises:
        InvalidInput: (from the constructor) the configuration is unusable.
    """

    name = "asterisk_cdr"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.settings = _Settings(config or {}, connector=self.name)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the one CALL draft of a CDR row.

        Raises:
            MalformedPayload: not a JSON object of text cells, a missing or
                unreadable start, duration or billsec, or an unknown disposition.
        """
        row = _json_object(record.payload, what="CDR row")
        cells = {key: _cell_text(value) for key, value in row.items()}
        started_at = _cdr_time(cells, "start", zone=self.settings.zone)
        if started_at is None:
            raise MalformedPayload("CDR row: start is empty, expected a time")
        disposition = cells.get("disposition", "").strip().upper()
        if disposition not in DISPOSITIONS:
            raise MalformedPayload(
                f"CDR row: disposition {disposition!r} is not one of "
                f"{', '.join(sorted(DISPOSITIONS))}"
            )

        caller, sender = _phone_reference(cells.get("src"))
        callee, recipient = _phone_reference(cells.get("dst"))
        answered_at = _cdr_time(cells, "answer", zone=self.settings.zone)
        ended_at = _cdr_time(cells, "end", zone=self.settings.zone)
        attributes = {
            "duration_seconds": _cdr_seconds(cells, "duration"),
            "billsec": _cdr_seconds(cells, "billsec"),
            "disposition": disposition,
            "direction": self.settings.direction(caller, callee),
            "answered": disposition == "ANSWERED",
            "answered_at": _iso(answered_at),
            "ended_at": _iso(ended_at),
            "context": cells.get("dcontext") or None,
        }
        source_id = cells.get("uniqueid", "").strip() or _row_hash(row)
        return [
            EventDraft(
                source=self.name,
                source_id=source_id,
                event_type=EventType.CALL,
                occurred_at=started_at,
                channel=Channel.PHONE,
                sender=sender,
                recipients=(recipient,) if recipient else (),
                attributes=attributes,
            )
        ]


class CallCsvConnector:
    """Turn one row of a generic call-record export into a CALL event.

    Config: ``mapping`` (a YAML file path or the mapping as a dict) maps the
    export's columns onto call_id, caller, callee, started_at, ended_at,
    duration_seconds (seconds, ``0:02:05`` or ``2分5秒``), answered, direction
    (inbound/outbound/internal; 呼入/呼出 understood) and employee (an
    employee external id, which then becomes the sender or recipient on the
    company's side). ``timezone`` overrides the mapping's zone. Without
    ``answered`` a call counts as answered when it lasted; without
    ``direction`` the internal-number rule of the CDR connector applies.

    Raises:
        InvalidInput: (from the constructor) the configuration or mapping is
            unusable.
    """

    name = "calls_csv"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.settings = _Settings(config or {}, connector=self.name)
        self.mapping = _call_mapping(self.settings)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the one CALL draft of an export row.

        Raises:
            MalformedPayload: not a JSON object, no start time, or a cell that
                does not fit its field (the message names the column).
        """
        row = _json_object(record.payload, what="call row")
        values = self._values(row)
        started_at = values.get("started_at")
        if not isinstance(started_at, dt.datetime):
            raise MalformedPayload("call row: no start time (started_at) in the row")

        caller, caller_ref = _phone_reference(values.get("caller"))
        callee, callee_ref = _phone_reference(values.get("callee"))
        direction = values.get("direction") or self.settings.direction(caller, callee)
        sender, recipient = _with_employee(
            caller_ref, callee_ref, employee=values.get("employee"), direction=direction
        )
        duration = _call_duration(values, started_at)
        answered = values.get("answered")
        attributes = {
            "duration_seconds": duration,
            "billsec": duration,
            "direction": direction,
            "answered": bool(duration) if answered is None else answered,
            "ended_at": _iso(values.get("ended_at")),
        }
        source_id = values.get("call_id") or _fields_hash(
            caller, callee, started_at, duration
        )
        return [
            EventDraft(
                source=self.name,
                source_id=str(source_id),
                event_type=EventType.CALL,
                occurred_at=started_at,
                channel=Channel.PHONE,
                sender=sender,
                recipients=(recipient,) if recipient else (),
                attributes=attributes,
            )
        ]

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        plan = plan_columns(
            list(row), self.mapping, fields=CALL_FIELDS, origin="call row"
        )
        cells = list(row.values())
        values: dict[str, Any] = {}
        for name, column in _CALL_COLUMNS.items():
            index = plan.fields.get(name)
            cell = _as_cell(cells[index]) if index is not None else None
            try:
                values[name] = parse_cell(column, cell, self.mapping)
            except CellError as exc:
                header = plan.header[index] if index is not None else name
                raise MalformedPayload(
                    f"call row: column {header!r} ({name}): {exc.message}"
                ) from exc
        return values


def _call_mapping(settings: _Settings) -> ColumnMapping:
    source = settings.config.mapping
    if isinstance(source, str):
        path = Path(source)
        loaded = load_mapping(_read_file(path), origin=str(path))
        document = loaded.document.model_dump(exclude_unset=True)
        origin = str(path)
    else:
        document, origin = dict(source or {}), "config mapping"
    # Exports write local times without a zone: the connector's zone applies
    # unless the mapping names one and the config does not.
    if "timezone" in settings.config.model_fields_set or "timezone" not in document:
        document["timezone"] = settings.config.timezone
    mapping = parse_mapping(_with_direction_words(document), origin=origin)
    check_mapping(mapping, resource="calls", fields=CALL_FIELDS, origin=origin)
    return mapping


def _with_direction_words(document: Mapping[str, Any]) -> dict[str, Any]:
    """Add the built-in 呼入/呼出 words under the mapping's own translations."""
    merged = dict(document)
    values = dict(merged.get("values") or {})
    values["direction"] = {
        **_BUILT_IN_DIRECTIONS,
        **dict(values.get("direction") or {}),
    }
    merged["values"] = values
    return merged


def _with_employee(
    caller: str | None, callee: str | None, *, employee: Any, direction: str
) -> tuple[str | None, str | None]:
    """Put the employee on the company's side of the call when the export names one."""
    if not employee:
        return caller, callee
    reference = f"employee:{str(employee).strip()}"
    if direction == "inbound":
        return caller, reference
    return reference, callee


def _call_duration(values: Mapping[str, Any], started_at: dt.datetime) -> int:
    raw = values.get("duration_seconds")
    if raw not in (None, ""):
        return parse_duration(str(raw))
    ended_at = values.get("ended_at")
    if isinstance(ended_at, dt.datetime):
        return max(0, int((ended_at - started_at).total_seconds()))
    return 0


def parse_duration(text: str) -> int:
    """Return whole seconds from ``125``, ``125.0``, ``0:02:05`` or ``2分5秒``.

    Raises:
        MalformedPayload: none of these forms, or a negative number.
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None and seconds >= 0 and seconds == seconds and seconds < 1e9:
        return round(seconds)
    clock = _DURATION_CLOCK.fullmatch(value)
    if clock:
        hours, minutes, secs = (int(part or 0) for part in clock.groups())
        return hours * 3600 + minutes * 60 + secs
    words = _DURATION_WORDS.fullmatch(value)
    if value and words and any(words.groups()):
        hours, minutes, secs = (int(part or 0) for part in words.groups())
        return hours * 3600 + minutes * 60 + secs
    raise MalformedPayload(
        f"call row: duration {text!r} is not seconds, H:MM:SS or 1分30秒"
    )


def call_heat_map(
    instants: Iterable[dt.datetime], *, timezone: str = "Asia/Shanghai"
) -> list[list[int]]:
    """Count calls per weekday and local hour: 7 rows (Monday first) of 24 counts.

    Raises:
        InvalidInput: an instant without a time zone, or an unknown zone name.
    """
    zone = _zone(timezone, connector="call_heat_map")
    counts = [[0] * 24 for _ in range(7)]
    for instant in instants:
        if instant.tzinfo is None:
            raise InvalidInput(
                f"call heat map: instant {instant.isoformat()} has no time zone"
            )
        local = instant.astimezone(zone)
        counts[local.weekday()][local.hour] += 1
    return counts


def _json_object(payload: bytes, *, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"{what}: payload is not UTF-8 JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what}: payload must be a JSON object of cells")
    return value


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise MalformedPayload(f"CDR row: cell {value!r} is not text")


def _as_cell(value: Any) -> Cell:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise MalformedPayload(f"call row: cell {value!r} is not text or a number")


def _cdr_time(
    cells: Mapping[str, str], column: str, *, zone: ZoneInfo
) -> dt.datetime | None:
    text = cells.get(column, "").strip()
    if not text:
        return None
    if not _CDR_TIME.fullmatch(text):
        raise MalformedPayload(
            f"CDR row: {column}={text!r} is not a time like 2024-06-03 09:15:00"
        )
    try:
        local = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise MalformedPayload(f"CDR row: {column}={text!r} is not a date") from exc
    return local.replace(tzinfo=zone).astimezone(dt.UTC)


def _cdr_seconds(cells: Mapping[str, str], column: str) -> int:
    text = cells.get(column, "").strip()
    if not text.isdigit() or not text.isascii():
        raise MalformedPayload(
            f"CDR row: {column}={text!r} is not a whole number of seconds"
        )
    return int(text)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def _row_hash(row: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        row, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return "cdr-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _fields_hash(
    caller: str | None, callee: str | None, started_at: dt.datetime, duration: int
) -> str:
    key = f"{caller or ''}|{callee or ''}|{started_at.isoformat()}|{duration}"
    return "call-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _payload(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Split a call file into one raw record per row (see the module notes).

    Raises:
        InvalidInput: the file cannot be read, decoded or (for a generic
            export) has no start-time column.
    """
    data = _read_file(path)
    chosen = config.get("format") or ("calls_csv" if config.get("mapping") else None)
    if chosen is None:
        chosen = "asterisk_cdr" if _looks_like_cdr(data, path.name) else "calls_csv"
    if chosen == "asterisk_cdr":
        settings = _Settings(config, connector="asterisk_cdr")
        return read_cdr_records(data, name=path.name, columns=settings.columns)
    return read_call_table_records(data, name=path.name, config=config)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc})") from exc


def _looks_like_cdr(data: bytes, name: str) -> bool:
    if guess_format(name, data) == "xlsx":
        return False
    text = data.decode(detect_encoding(data))
    first = next(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")), [])
    return len(first) >= CDR_REQUIRED and _CDR_TIME.fullmatch(first[9]) is not None


def read_cdr_records(
    data: bytes, *, name: str = "Master.csv", columns: tuple[str, ...] = CDR_COLUMNS
) -> Iterator[RawRecord]:
    """Yield one record per ``Master.csv`` row, its cells named by ``columns``.

    Raises:
        InvalidInput: undecodable text or damaged CSV quoting.
    """
    text = data.decode(detect_encoding(data)).lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                row = {
                    columns[index]
                    if index < len(columns)
                    else f"column_{index + 1}": cell
                    for index, cell in enumerate(cells)
                }
                yield RawRecord(_payload(row), locator=f"{name} line {line}")
            line = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInput(f"{name}: CSV is damaged near line {line} ({exc})") from exc


def read_call_table_records(
    data: bytes, *, name: str, config: Mapping[str, Any]
) -> Iterator[RawRecord]:
    """Yield one record per data row of a call export, cells named by its header.

    Raises:
        InvalidInput: unreadable file, or no column gives started_at.
    """
    connector = CallCsvConnector(config)
    table = read_table(data, filename=name)
    plan = plan_columns(
        table.header, connector.mapping, fields=CALL_FIELDS, origin=name
    )
    if not plan.has("started_at"):
        raise InvalidInput(
            f"{name}: no column gives started_at; name the start-time column in "
            "the mapping (columns: {开始时间: started_at})"
        )
    if plan.unknown:
        logger.warning(
            "call export columns ignored",
            extra={"file": name, "columns": plan.unknown, "reason": "unmapped_column"},
        )
    return _table_rows(table.rows, header=plan.header, name=name)


def _table_rows(
    rows: Iterator[tuple[int, list[Cell]]], *, header: list[str], name: str
) -> Iterator[RawRecord]:
    for number, cells in rows:
        row = {
            column: _jsonable(cell) for column, cell in zip(header, cells, strict=False)
        }
        yield RawRecord(_payload(row), locator=f"{name} row {number}")


def _jsonable(cell: Cell) -> Any:
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    if cell is None or isinstance(cell, str | int | float | bool):
        return cell
    return str(cell)


__all__ = [
    "CDR_COLUMNS",
    "AsteriskCdrConnector",
    "CallConfig",
    "CallCsvConnector",
    "call_heat_map",
    "normalize_phone",
    "parse_duration",
    "read_call_table_records",
    "read_cdr_records",
    "read_records",
]
