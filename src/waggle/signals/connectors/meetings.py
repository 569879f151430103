"""Meetings: calendar files (iCalendar, RFC 5545) and meeting minutes.

:class:`CalendarConnector` (``ics``) reads one VEVENT per raw record. The
reader cuts an ``.ics`` file into standalone calendars, each holding the
file's calendar-level properties, the VTIMEZONE blocks the event's TZIDs name
and the event itself, so a quarantined event parses again on its own.

Decisions, so that rules and scores count meetings the same way everywhere:

- A CANCELLED event (``STATUS:CANCELLED``, or a calendar sent with
  ``METHOD:CANCEL``) gives no draft: MEETING_HELD must mean a meeting that was
  planned to happen. The pipeline stores one event per source id, so an
  event stored before its cancellation arrived is not withdrawn here.
- A recurring event gives one draft per VEVENT, at its DTSTART, with
  ``is_recurring`` and the ``rrule`` text in the attributes; occurrences are
  not expanded. Expanding needs a window ending "now", which would make
  ``parse`` depend on the clock, and an expanded series would claim meetings
  nobody confirmed were held. A moved or edited occurrence arrives as its own
  VEVENT with RECURRENCE-ID and gets its own draft (source id ``UID#instant``).
- Floating times and all-day dates are read in ``X-WR-TIMEZONE`` when the
  calendar names one, else in the configured ``timezone`` (default
  Asia/Shanghai); an all-day event starts at local midnight. A TZID that is
  neither an IANA name, a Windows name (``China Standard Time``) nor defined
  by a VTIMEZONE in the file is read like a floating time.

:class:`MinutesConnector` (``minutes``) reads minutes as ``.txt``/``.md``
(UTF-8 or GBK) or ``.docx`` files, one file per raw record with the file's
bytes as payload. The minutes link to their meeting through a header in the
first lines (``会议UID: ...`` / ``Meeting-UID: ...``), the document's core
``identifier`` property, or the file name ``<uid>.docx`` (read from the
record's locator, which the reader sets to the file name; a name containing
spaces or Chinese characters is taken for a title, not a UID).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import docx
import icalendar
from icalendar.cal import Component
from pydantic import BaseModel, ConfigDict, ValidationError

from waggle.core.errors import InvalidInput
from waggle.crm.columns import DATE_FORMATS, DATETIME_FORMATS
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

logger = logging.getLogger(__name__)

CALENDAR_SUFFIXES = frozenset({".ics", ".ical", ".ifb"})
MINUTES_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".docx"})
_DOCX_MAGIC = b"PK\x03\x04"
_HEADER_LINES = 15
_TZID_PARAMETER = re.compile(r";TZID=(\"[^\"]*\"|[^;:]*)", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s<>\"'，。；）)\]]+", re.IGNORECASE)
# Host fragments of the online-meeting services people in China use.
_MEETING_HOSTS = (
    ("meeting.tencent.com", "tencent_meeting"),
    ("voovmeeting.com", "tencent_meeting"),
    ("vc.feishu.cn", "feishu"),
    ("feishu.cn/video", "feishu"),
    ("vc.larksuite.com", "feishu"),
    ("meeting.dingtalk.com", "dingtalk"),
    ("dingtalk.com", "dingtalk"),
    ("zoom.us", "zoom"),
    ("zoom.com.cn", "zoom"),
    ("teams.microsoft.com", "teams"),
    ("webex.com", "webex"),
)
_URL_PROPERTIES = (
    "LOCATION",
    "DESCRIPTION",
    "URL",
    "CONFERENCE",
    "X-GOOGLE-CONFERENCE",
    "X-MICROSOFT-SKYPETEAMSMEETINGURL",
)
_HEADER_KEYS = {
    "meeting_uid": ("会议uid", "会议id", "meetinguid", "meetingid", "uid"),
    "date": ("日期", "会议日期", "会议时间", "时间", "date", "meetingdate"),
    "author": ("记录人", "纪要人", "记录", "作者", "author", "recorder"),
    "title": ("主题", "会议主题", "会议名称", "标题", "title", "subject"),
    "attendees": ("参会人", "参会人员", "与会人员", "出席人员", "attendees"),
}
_HEADER_LINE = re.compile(r"^(?P<key>[^:：]{1,20}?)\s*[:：]\s*(?P<value>.*)$")
_CJK_OR_SPACE = re.compile(r"[\s\u3000-\u9fff\uff00-\uffef]")
# icalendar raises assorted built-in errors on malformed input; these are
# the ones seen, all of them meaning "not a calendar we can read".
_ICAL_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


class MeetingConfig(BaseModel):
    """Options of both meeting connectors."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    occurred_at: dt.datetime | None = None  # minutes without any date
    format: Literal["ics", "minutes"] | None = None


def _settings(config: Mapping[str, Any] | None, *, connector: str) -> MeetingConfig:
    try:
        parsed = MeetingConfig.model_validate(dict(config or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise InvalidInput(
            f"connector {connector}: config {where}: {first['msg']}",
            connector=connector,
        ) from exc
    _zone(parsed.timezone, connector=connector)
    return parsed


def _zone(name: str, *, connector: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"connector {connector}: timezone {name!r} is not an IANA zone such as "
            "Asia/Shanghai",
            connector=connector,
        ) from exc


class CalendarConnector:
    """Turn one VEVENT (with its time zones) into a MEETING_HELD draft.

    Raises:
        InvalidInput: (from the constructor) the configuration is unusable.
    """

    name = "ics"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = _settings(config, connector=self.name)
        self.zone = ZoneInfo(self.config.timezone)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return one draft per VEVENT that is not cancelled (see the module notes).

        Raises:
            MalformedPayload: not an iCalendar text, no VEVENT, or an event
                without UID or a readable DTSTART.
        """
        try:
            calendar = icalendar.Calendar.from_ical(record.payload)
            events = list(calendar.walk("VEVENT"))
            zone = _calendar_zone(calendar, fallback=self.zone)
            is_cancel = str(calendar.get("METHOD", "")).strip().upper() == "CANCEL"
            drafts = [
                self._draft(event, zone=zone, is_cancel=is_cancel) for event in events
            ]
        except _ICAL_ERRORS as exc:
            raise MalformedPayload(
                f"calendar event: not readable iCalendar ({exc})"
            ) from exc
        if not events:
            raise MalformedPayload("calendar event: the payload holds no VEVENT")
        return [draft for draft in drafts if draft is not None]

    def _draft(
        self, event: Component, *, zone: ZoneInfo, is_cancel: bool
    ) -> EventDraft | None:
        uid = _text(event.get("UID"))
        if not uid:
            raise MalformedPayload("calendar event: UID is missing")
        status = _text(event.get("STATUS")).upper()
        if is_cancel or status == "CANCELLED":
            logger.debug("cancelled meeting skipped", extra={"uid": uid})
            return None

        started_at, is_all_day = _instant(event, "DTSTART", zone=zone, uid=uid)
        duration = _duration_minutes(
            event, started_at, is_all_day=is_all_day, zone=zone
        )
        organizer = _email_reference(event.get("ORGANIZER"))
        attendees = _attendees(event)
        recipients = tuple(
            dict.fromkeys(ref for ref, _ in attendees if ref != organizer)
        )
        source_id = uid
        if "RECURRENCE-ID" in event:
            recurrence, _ = _instant(event, "RECURRENCE-ID", zone=zone, uid=uid)
            source_id = f"{uid}#{recurrence:%Y%m%dT%H%M%SZ}"

        summary = _text(event.get("SUMMARY"))
        description = _text(event.get("DESCRIPTION"))
        url, provider = _online_meeting(event)
        attributes = {
            "uid": uid,
            "summary": summary or None,
            "location": _text(event.get("LOCATION")) or None,
            "duration_minutes": duration,
            "is_all_day": is_all_day,
            "attendee_count": len({ref for ref, _ in attendees}),
            "declined_count": sum(1 for _, status in attendees if status == "DECLINED"),
            "status": status.lower() or None,
            "online_meeting_url": url,
            "online_meeting_provider": provider,
            "is_recurring": any(
                key in event for key in ("RRULE", "RDATE", "RECURRENCE-ID")
            ),
            "rrule": _rrule(event),
        }
        text = "\n\n".join(part for part in (summary, description) if part)
        return EventDraft(
            source=self.name,
            source_id=source_id,
            event_type=EventType.MEETING_HELD,
            occurred_at=started_at,
            channel=Channel.MEETING,
            sender=organizer,
            recipients=recipients,
            thread_ref=f"meeting:{uid}",
            text=text or None,
            attributes=attributes,
        )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        raise MalformedPayload("calendar event: a single-valued property is repeated")
    return str(value).strip()


def _calendar_zone(calendar: icalendar.Calendar, *, fallback: ZoneInfo) -> ZoneInfo:
    name = _text(calendar.get("X-WR-TIMEZONE"))
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _instant(
    event: Component, name: str, *, zone: ZoneInfo, uid: str
) -> tuple[dt.datetime, bool]:
    """Return the UTC instant of a date-time property and whether it was a date."""
    prop = event.get(name)
    if prop is None or isinstance(prop, list) or not hasattr(prop, "dt"):
        raise MalformedPayload(f"calendar event {uid}: {name} is missing or repeated")
    return _to_utc(prop.dt, zone=zone, what=f"calendar event {uid}: {name}")


def _to_utc(value: Any, *, zone: ZoneInfo, what: str) -> tuple[dt.datetime, bool]:
    if isinstance(value, dt.datetime):
        local = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return local.astimezone(dt.UTC), False
    if isinstance(value, dt.date):
        midnight = dt.datetime.combine(value, dt.time(), tzinfo=zone)
        return midnight.astimezone(dt.UTC), True
    raise MalformedPayload(f"{what}: expected a date or date-time")


def _duration_minutes(
    event: Component, started_at: dt.datetime, *, is_all_day: bool, zone: ZoneInfo
) -> int:
    uid = _text(event.get("UID"))
    length: Any
    if "DTEND" in event:
        ended_at, _ = _instant(event, "DTEND", zone=zone, uid=uid)
        length = ended_at - started_at
    elif "DURATION" in event:
        length = getattr(event.get("DURATION"), "dt", None)
        if not isinstance(length, dt.timedelta):
            raise MalformedPayload(f"calendar event {uid}: DURATION is not a duration")
    else:
        # RFC 5545: without an end, a date lasts one day and a date-time no time.
        length = dt.timedelta(days=1) if is_all_day else dt.timedelta()
    if length < dt.timedelta():
        raise MalformedPayload(f"calendar event {uid}: it ends before it starts")
    return int(length.total_seconds() // 60)


def _email_reference(value: Any) -> str | None:
    if value is None or isinstance(value, list):
        return None
    address = re.sub(r"^mailto:", "", str(value).strip(), flags=re.IGNORECASE)
    if not _EMAIL.fullmatch(address):
        return None
    return f"email:{address.lower()}"


def _attendees(event: Component) -> list[tuple[str, str]]:
    raw = event.get("ATTENDEE")
    values = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    found: list[tuple[str, str]] = []
    for value in values:
        reference = _email_reference(value)
        if reference is not None:
            params = getattr(value, "params", {})
            found.append((reference, str(params.get("PARTSTAT", "")).upper()))
    return found


def _online_meeting(event: Component) -> tuple[str | None, str | None]:
    for name in _URL_PROPERTIES:
        raw = event.get(name)
        for value in raw if isinstance(raw, list) else [raw]:
            for url in _URL.findall("" if value is None else str(value)):
                provider = _provider(url)
                if provider is not None:
                    return url, provider
    return None, None


def _provider(url: str) -> str | None:
    host_and_path = url.split("://", 1)[-1].lower()
    for fragment, provider in _MEETING_HOSTS:
        if fragment in host_and_path.split("?", 1)[0]:
            return provider
    return None


def _rrule(event: Component) -> str | None:
    raw = event.get("RRULE")
    if raw is None:
        return None
    rules = raw if isinstance(raw, list) else [raw]
    return "\n".join(rule.to_ical().decode("utf-8") for rule in rules)


class MinutesConnector:
    """Turn one minutes file (text or docx bytes) into a MEETING_MINUTES draft.

    ``text`` is the whole minutes text (trackers read it). The header lines
    give ``会议UID``, ``日期``, ``记录人``, ``主题`` and ``参会人`` (or Meeting-UID,
    Date, Author, Title, Attendees); the date falls back to the docx
    ``created`` property, then to config ``occurred_at``. The sender is the
    author's e-mail when the header or the docx author gives one.

    Raises:
        InvalidInput: (from the constructor) the configuration is unusable.
    """

    name = "minutes"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = _settings(config, connector=self.name)
        self.zone = ZoneInfo(self.config.timezone)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the one minutes draft of a file.

        Raises:
            MalformedPayload: not UTF-8/GBK text nor a readable docx, no text,
                or no date anywhere (header, docx, config).
        """
        document = _minutes_document(record.payload)
        text = document.text
        if not text:
            raise MalformedPayload("minutes: the file holds no text")
        headers = _headers(text)

        meeting_uid = (
            headers.get("meeting_uid") or document.identifier or _uid_from_name(record)
        )
        occurred_at = self._occurred_at(headers.get("date"), document)
        author = headers.get("author") or document.author
        sender = _first_email(author)
        recipients = tuple(
            dict.fromkeys(
                f"email:{address.lower()}"
                for address in _EMAIL.findall(headers.get("attendees", ""))
                if f"email:{address.lower()}" != sender
            )
        )
        digest = hashlib.sha256(f"{meeting_uid or ''}\n{text}".encode()).hexdigest()
        attributes = {
            "meeting_uid": meeting_uid,
            "title": headers.get("title") or document.title or None,
            "author": author or None,
            "format": document.file_format,
            "char_count": len(text),
        }
        return [
            EventDraft(
                source=self.name,
                source_id=f"minutes-{digest[:32]}",
                event_type=EventType.MEETING_MINUTES,
                occurred_at=occurred_at,
                channel=Channel.MEETING,
                sender=sender,
                recipients=recipients,
                thread_ref=f"meeting:{meeting_uid}" if meeting_uid else None,
                text=text,
                attributes=attributes,
                is_automatic=False,
            )
        ]

    def _occurred_at(
        self, header: str | None, document: _MinutesDocument
    ) -> dt.datetime:
        if header:
            parsed = _header_datetime(header, zone=self.zone)
            if parsed is None:
                raise MalformedPayload(
                    f"minutes: date {header!r} is not a date like 2024-06-03 14:30"
                )
            return parsed
        if document.created_at is not None:
            return document.created_at
        if self.config.occurred_at is not None:
            return _to_utc(self.config.occurred_at, zone=self.zone, what="config")[0]
        raise MalformedPayload(
            "minutes: no date; add a 日期: header or set occurred_at in the config"
        )


class _MinutesDocument:
    """The text and document properties of one minutes file."""

    def __init__(
        self,
        text: str,
        *,
        file_format: str,
        author: str = "",
        title: str = "",
        identifier: str = "",
        created_at: dt.datetime | None = None,
    ) -> None:
        self.text = text
        self.file_format = file_format
        self.author = author
        self.title = title
        self.identifier = identifier
        self.created_at = created_at


def _minutes_document(payload: bytes) -> _MinutesDocument:
    if payload.startswith(_DOCX_MAGIC):
        return _docx_document(payload)
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = payload.decode(encoding)
        except UnicodeDecodeError:
            continue
        return _MinutesDocument(_clean(text), file_format="text")
    raise MalformedPayload("minutes: the text is neither UTF-8 nor GBK/GB18030")


def _docx_document(payload: bytes) -> _MinutesDocument:
    try:
        document = docx.Document(io.BytesIO(payload))
        lines = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                lines.append("\t".join(cell.text for cell in row.cells))
        core = document.core_properties
        created = core.created
    except Exception as exc:
        # A docx is a zip of XML parts; python-docx lets zipfile, lxml and its
        # own errors through, so every failure here means "not a docx we read".
        raise MalformedPayload(f"minutes: not a readable .docx file ({exc})") from exc
    created_at = None
    if isinstance(created, dt.datetime):
        # Word stores W3CDTF times in UTC; python-docx returns them naive.
        created_at = (
            created.replace(tzinfo=dt.UTC) if created.tzinfo is None else created
        )
        created_at = created_at.astimezone(dt.UTC)
    return _MinutesDocument(
        _clean("\n".join(lines)),
        file_format="docx",
        author=(core.author or "").strip(),
        title=(core.title or "").strip(),
        identifier=(core.identifier or "").strip(),
        created_at=created_at,
    )


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()


def _headers(text: str) -> dict[str, str]:
    """Read ``key: value`` lines among the first lines (markdown marks ignored)."""
    found: dict[str, str] = {}
    lines = [line for line in text.split("\n") if line.strip()][:_HEADER_LINES]
    for line in lines:
        plain = line.strip().lstrip("#>-*+ ").replace("**", "").replace("__", "")
        match = _HEADER_LINE.match(plain)
        if match is None:
            continue
        key = re.sub(r"[\s_\-]", "", match["key"]).lower()
        for name, words in _HEADER_KEYS.items():
            if key in words and name not in found and match["value"].strip():
                found[name] = match["value"].strip()
    return found


def _header_datetime(text: str, *, zone: ZoneInfo) -> dt.datetime | None:
    value = text.strip()
    parsed: dt.datetime | None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        parsed = _strptime(value, DATETIME_FORMATS) or _strptime(value, DATE_FORMATS)
    if parsed is None:
        return None
    return _to_utc(parsed, zone=zone, what="minutes date")[0]


def _strptime(text: str, formats: tuple[str, ...]) -> dt.datetime | None:
    for pattern in formats:
        try:
            return dt.datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def _first_email(text: str | None) -> str | None:
    match = _EMAIL.search(text or "")
    return f"email:{match.group(0).lower()}" if match else None


def _uid_from_name(record: RawRecord) -> str | None:
    stem = PurePosixPath(record.locator.replace("\\", "/")).stem
    if len(stem) < 8 or _CJK_OR_SPACE.search(stem):
        return None
    return stem


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Split an ``.ics`` file into VEVENT records, or read minutes file(s).

    An ``.ics`` file (or config ``format: ics``) gives calendar records; any
    other file, or a directory (searched recursively), gives minutes records.

    Raises:
        InvalidInput: the path cannot be read or is not a calendar file.
    """
    chosen = config.get("format")
    if chosen == "ics" or (
        chosen is None and path.is_file() and path.suffix.lower() in CALENDAR_SUFFIXES
    ):
        return read_calendar_records(_read(path), name=path.name)
    return read_minutes_records(path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc})") from exc


def read_minutes_records(path: Path) -> Iterator[RawRecord]:
    """Yield one record per minutes file: ``path`` itself or those under it.

    Raises:
        InvalidInput: the path does not exist or a file cannot be read.
    """
    if path.is_dir():
        files = sorted(
            item
            for item in path.rglob("*")
            if item.is_file()
            and item.suffix.lower() in MINUTES_SUFFIXES
            and not item.name.startswith(("~$", "."))
        )
        for item in files:
            yield RawRecord(_read(item), locator=item.relative_to(path).as_posix())
    else:
        yield RawRecord(_read(path), locator=path.name)


def read_calendar_records(data: bytes, *, name: str) -> Iterator[RawRecord]:
    """Yield one standalone calendar per VEVENT of an iCalendar file.

    Raises:
        InvalidInput: the text is not UTF-8/GBK or holds no VCALENDAR.
    """
    text = _calendar_text(data, name=name)
    header, zones, events = _split_calendar(text.splitlines())
    if not header and not events and not zones:
        raise InvalidInput(f"{name}: no BEGIN:VCALENDAR; expected an iCalendar file")
    for number, event in enumerate(events, start=1):
        needed = _referenced_zones(event)
        blocks = [line for tzid in needed if tzid in zones for line in zones[tzid]]
        lines = ["BEGIN:VCALENDAR", *header, *blocks, *event, "END:VCALENDAR"]
        payload = ("\r\n".join(lines) + "\r\n").encode("utf-8")
        yield RawRecord(payload, locator=f"{name} VEVENT {number}")


def _calendar_text(data: bytes, *, name: str) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(f"{name}: the calendar is neither UTF-8 nor GBK text")


def _split_calendar(
    lines: list[str],
) -> tuple[list[str], dict[str, list[str]], list[list[str]]]:
    """Sort the physical lines into calendar properties, time zones and events."""
    header: list[str] = []
    zones: dict[str, list[str]] = {}
    events: list[list[str]] = []
    block: list[str] | None = None
    depth = 0
    in_calendar = False
    for line in lines:
        tag = line.strip().upper()
        if tag == "BEGIN:VCALENDAR" and block is None:
            in_calendar = True
            continue
        if tag == "END:VCALENDAR" and block is None:
            in_calendar = False
            continue
        if block is not None:
            block.append(line)
            depth += tag.startswith("BEGIN:") - tag.startswith("END:")
            if depth == 0:
                _file_block(block, zones=zones, events=events)
                block = None
        elif tag.startswith("BEGIN:"):
            block, depth = [line], 1
        elif in_calendar and line.strip():
            header.append(line)
    return header, zones, events


def _file_block(
    block: list[str], *, zones: dict[str, list[str]], events: list[list[str]]
) -> None:
    kind = block[0].strip().upper()
    if kind == "BEGIN:VEVENT":
        events.append(block)
    elif kind == "BEGIN:VTIMEZONE":
        for line in _unfold(block):
            if line.upper().startswith("TZID:"):
                zones[line[5:].strip()] = block
                break


def _unfold(lines: list[str]) -> list[str]:
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += line[1:]
        else:
            unfolded.append(line)
    return unfolded


def _referenced_zones(event: list[str]) -> list[str]:
    names: list[str] = []
    for line in _unfold(event):
        for match in _TZID_PARAMETER.finditer(line.split(":", 1)[0] + ":"):
            name = match.group(1).strip('"').strip()
            if name and name not in names:
                names.append(name)
    return names


__all__ = [
    "CalendarConnector",
    "MeetingConfig",
    "MinutesConnector",
    "read_calendar_records",
    "read_minutes_records",
    "read_records",
]
