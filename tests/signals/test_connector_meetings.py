"""Meeting connectors: iCalendar events one by one, and minutes in text or docx."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import docx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.signals.connectors import build_connector
from waggle.signals.connectors.meetings import (
    CalendarConnector,
    MinutesConnector,
    read_calendar_records,
    read_records,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "meetings"
UTC = dt.UTC
REVIEW_UID = "040000008200E00074C5B7101A82E008-review"


def _calendar_records() -> list[RawRecord]:
    return list(read_records(FIXTURES / "calendar.ics", {}))


def _parse_event(index: int, config: dict[str, str] | None = None) -> list:
    return CalendarConnector(config).parse(_calendar_records()[index])


def test_reader_cuts_one_standalone_calendar_per_vevent():
    """Each VEVENT becomes a calendar of its own with only the time zones it names."""
    records = _calendar_records()

    texts = [record.payload.decode() for record in records]

    assert [record.locator for record in records] == [
        f"calendar.ics VEVENT {number}" for number in range(1, 6)
    ]
    assert texts[0].startswith("BEGIN:VCALENDAR\r\nPRODID:-//Microsoft")
    assert texts[0].endswith("END:VEVENT\r\nEND:VCALENDAR\r\n")
    assert "TZID:China Standard Time" in texts[0]
    assert "Unused Zone" not in texts[0]
    assert "BEGIN:VTIMEZONE" not in texts[1]
    assert texts[3].count("BEGIN:VEVENT") == 1
    assert "BEGIN:VALARM" in texts[3]


def test_event_with_tzid_becomes_a_meeting_held_draft():
    """An Outlook-zone start, organizer, attendees and Tencent link are read."""
    [draft] = _parse_event(0)

    assert draft.source == "ics"
    assert draft.source_id == REVIEW_UID
    assert draft.event_type is EventType.MEETING_HELD
    assert draft.channel is Channel.MEETING
    assert draft.occurred_at == dt.datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
    assert draft.sender == "email:zhangsan@waggle-demo.cn"
    assert draft.recipients == (
        "email:li.gong@ecgrid.com.cn",
        "email:wang@ecgrid.com.cn",
    )
    assert draft.thread_ref == f"meeting:{REVIEW_UID}"
    assert draft.text == (
        "华东电网 方案评审\n\n议程：报价与交付周期。预算已获批，下周进入招标流程，"
        "请准备技术标书。"
    )
    assert dict(draft.attributes) == {
        "uid": REVIEW_UID,
        "summary": "华东电网 方案评审",
        "location": "腾讯会议：https://meeting.tencent.com/dm/AbC123xYz",
        "duration_minutes": 90,
        "is_all_day": False,
        "attendee_count": 3,
        "declined_count": 1,
        "status": "confirmed",
        "online_meeting_url": "https://meeting.tencent.com/dm/AbC123xYz",
        "online_meeting_provider": "tencent_meeting",
        "is_recurring": False,
        "rrule": None,
    }


def test_all_day_event_starts_at_local_midnight():
    """An all-day date starts at midnight in the configured zone and lasts a day."""
    [shanghai] = _parse_event(1)
    [utc] = _parse_event(1, {"timezone": "UTC"})

    assert shanghai.occurred_at == dt.datetime(2024, 6, 9, 16, 0, tzinfo=UTC)
    assert utc.occurred_at == dt.datetime(2024, 6, 10, 0, 0, tzinfo=UTC)
    assert shanghai.attributes["is_all_day"] is True
    assert shanghai.attributes["duration_minutes"] == 1440
    assert shanghai.recipients == ()


def test_cancelled_event_gives_no_draft():
    """A CANCELLED meeting was not held, so it yields no draft at all."""
    assert _parse_event(2) == []


def test_cancel_method_drops_every_event():
    """A calendar sent with METHOD:CANCEL withdraws its events."""
    text = _calendar_records()[0].payload.replace(b"METHOD:PUBLISH", b"METHOD:CANCEL")

    assert CalendarConnector().parse(RawRecord(text)) == []


def test_recurring_event_is_one_draft_with_its_rule():
    """A recurring series gives one draft at its first start, carrying the RRULE."""
    [draft] = _parse_event(3)

    assert draft.source_id == "weekly-sync@waggle-demo.cn"
    assert draft.occurred_at == dt.datetime(2024, 6, 4, 1, 30, tzinfo=UTC)
    assert draft.attributes["is_recurring"] is True
    assert draft.attributes["rrule"] == "FREQ=WEEKLY;COUNT=8;BYDAY=TU"
    assert draft.attributes["duration_minutes"] == 30
    assert draft.attributes["online_meeting_provider"] == "feishu"
    assert draft.attributes["online_meeting_url"] == "https://vc.feishu.cn/j/123456789"


def test_moved_occurrence_gets_its_own_source_id():
    """An occurrence with RECURRENCE-ID is its own draft, keyed by UID and instant."""
    [draft] = _parse_event(4)

    assert draft.source_id == "weekly-sync@waggle-demo.cn#20240611T013000Z"
    assert draft.occurred_at == dt.datetime(2024, 6, 11, 6, 0, tzinfo=UTC)
    assert draft.attributes["duration_minutes"] == 45
    assert draft.attributes["is_recurring"] is True


def test_floating_time_uses_the_calendar_zone_name():
    """A time without TZID is read in X-WR-TIMEZONE when the calendar names one."""
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-TIMEZONE:Asia/Tokyo\r\n"
        "BEGIN:VEVENT\r\nUID:f1\r\nDTSTART:20240603T090000\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )

    [draft] = CalendarConnector().parse(RawRecord(text.encode()))

    assert draft.occurred_at == dt.datetime(2024, 6, 3, 0, 0, tzinfo=UTC)
    assert draft.attributes["duration_minutes"] == 0


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("DTSTART:20240603T090000Z", "UID is missing"),
        ("UID:x", "DTSTART is missing"),
        ("UID:x\r\nDTSTART:20240603T090000Z\r\nDTEND:20240603T080000Z", "ends before"),
    ],
)
def test_events_without_uid_or_start_are_malformed(event, message):
    """An event without UID or DTSTART, or ending before it starts, is refused."""
    text = (
        f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{event}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )

    with pytest.raises(MalformedPayload) as caught:
        CalendarConnector().parse(RawRecord(text.encode()))

    assert message in caught.value.message


def test_reader_refuses_a_file_that_is_no_calendar():
    """A file without any calendar component is refused when it is read."""
    with pytest.raises(InvalidInput):
        list(read_calendar_records(b"hello\r\nworld\r\n", name="notes.ics"))


def test_gbk_minutes_link_to_their_meeting():
    """GBK minutes with Chinese headers link to the meeting and its people."""
    [record] = read_records(FIXTURES / "minutes_gbk.txt", {})

    [draft] = build_connector("minutes").parse(record)

    assert draft.source == "minutes"
    assert draft.event_type is EventType.MEETING_MINUTES
    assert draft.occurred_at == dt.datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
    assert draft.sender == "email:zhangsan@waggle-demo.cn"
    assert draft.recipients == (
        "email:li.gong@ecgrid.com.cn",
        "email:wang@ecgrid.com.cn",
    )
    assert draft.thread_ref == f"meeting:{REVIEW_UID}"
    assert draft.attributes["meeting_uid"] == REVIEW_UID
    assert draft.attributes["format"] == "text"
    assert draft.text is not None
    assert draft.text.endswith("竞品报价比我们低 8%，需要准备价格说明。")
    assert "\r" not in draft.text
    assert draft.is_automatic is False


def test_utf8_markdown_minutes_read_bold_english_headers():
    """Markdown list headers in bold (Meeting-UID, Date, Author) are understood."""
    [record] = read_records(FIXTURES / "minutes_utf8.md", {})

    [draft] = MinutesConnector().parse(record)

    assert draft.attributes["meeting_uid"] == "weekly-sync@waggle-demo.cn"
    assert draft.occurred_at == dt.datetime(2024, 6, 4, 1, 30, tzinfo=UTC)
    assert draft.sender == "email:lisi@waggle-demo.cn"
    assert draft.attributes["author"] == "Li Si <lisi@waggle-demo.cn>"


def _write_docx(path: Path, *, author: str, lines: list[str]) -> None:
    document = docx.Document()
    for line in lines:
        document.add_paragraph(line)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "待办"
    table.rows[0].cells[1].text = "提交试用申请"
    document.core_properties.author = author
    document.save(str(path))


def test_docx_minutes_take_the_uid_from_the_file_name(tmp_path):
    """A docx named <uid>.docx links by name; its author gives the sender."""
    path = tmp_path / "weekly-sync@waggle-demo.cn.docx"
    _write_docx(
        path,
        author="lisi@waggle-demo.cn",
        lines=["日期：2024年6月4日 10:00", "客户要求试用两周。"],
    )

    [record] = read_records(tmp_path, {})
    [draft] = MinutesConnector().parse(record)

    assert record.locator == "weekly-sync@waggle-demo.cn.docx"
    assert record.payload == path.read_bytes()
    assert draft.attributes["meeting_uid"] == "weekly-sync@waggle-demo.cn"
    assert draft.attributes["format"] == "docx"
    assert draft.occurred_at == dt.datetime(2024, 6, 4, 2, 0, tzinfo=UTC)
    assert draft.sender == "email:lisi@waggle-demo.cn"
    assert (
        draft.text == "日期：2024年6月4日 10:00\n客户要求试用两周。\n待办\t提交试用申请"
    )


def test_minutes_directory_is_read_in_name_order(tmp_path):
    """A folder gives one record per minutes file, sorted, skipping Word lock files."""
    shutil.copy(FIXTURES / "minutes_utf8.md", tmp_path / "b.md")
    shutil.copy(FIXTURES / "minutes_gbk.txt", tmp_path / "a.txt")
    (tmp_path / "~$a.docx").write_bytes(b"lock")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")

    records = list(read_records(tmp_path, {}))

    assert [record.locator for record in records] == ["a.txt", "b.md"]


def test_minutes_without_any_date_fall_back_to_config():
    """Minutes with no date are refused, unless the config names one."""
    record = RawRecord("会议纪要\n客户关心交付时间。".encode(), locator="纪要.txt")

    with pytest.raises(MalformedPayload):
        MinutesConnector().parse(record)
    [draft] = MinutesConnector({"occurred_at": "2024-06-03T10:00:00"}).parse(record)

    assert draft.occurred_at == dt.datetime(2024, 6, 3, 2, 0, tzinfo=UTC)
    assert draft.attributes["meeting_uid"] is None
    assert draft.thread_ref is None


def test_titles_in_file_names_are_not_taken_for_uids():
    """A file name with Chinese characters or spaces is a title, not a meeting UID."""
    record = RawRecord(
        "日期: 2024-06-03\n纪要".encode(), locator="6月3日 客户会议纪要.txt"
    )

    [draft] = MinutesConnector().parse(record)

    assert draft.attributes["meeting_uid"] is None


@settings(max_examples=120, deadline=None)
@given(payload=st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_invalid_input(payload):
    """Any bytes either parse or raise an InvalidInput kind, for both connectors."""
    for connector in (CalendarConnector(), MinutesConnector()):
        try:
            drafts = connector.parse(RawRecord(payload, locator="x.txt"))
        except InvalidInput:
            continue
        assert all(draft.source == connector.name for draft in drafts)


@settings(max_examples=120, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(
            [
                "UID:u1",
                "DTSTART:20240603T090000Z",
                "DTSTART;VALUE=DATE:20240603",
                "DTSTART;TZID=Nowhere/Zone:20240603T090000",
                "DTEND:20240603T100000",
                "DURATION:PT1H",
                "DURATION:bogus",
                "RRULE:FREQ=DAILY",
                "RECURRENCE-ID:20240603T090000Z",
                "ATTENDEE:mailto:a@b.cn",
                "ORGANIZER:not-an-address",
                "STATUS:CANCELLED",
                "BEGIN:VALARM",
                "END:VALARM",
            ]
        ),
        max_size=8,
    )
)
def test_arbitrary_events_parse_or_raise_invalid_input(lines):
    """Any mix of event properties either parses or raises an InvalidInput kind."""
    body = "\r\n".join(lines)
    text = (
        f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{body}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )

    try:
        drafts = CalendarConnector().parse(RawRecord(text.encode()))
    except InvalidInput:
        return

    assert len(drafts) <= 1
