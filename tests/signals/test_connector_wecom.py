"""WeCom connectors: the 会话内容存档 archive and the decrypted app callback.

Fixtures in ``fixtures/chat`` follow the shapes of WeCom's 获取会话内容 and
接收消息/客户联系 pages (field names and example values from the official
docs; names and texts changed where a sales conversation reads better).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.signals.vectors import VECTORS
from waggle.core.errors import InvalidInput
from waggle.signals.connectors import build_connector, read_records
from waggle.signals.connectors.wecom import (
    WeComArchiveConnector,
    WeComCallbackConnector,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat"


def archive_records() -> dict[str, RawRecord]:
    records = read_records("wecom_archive", FIXTURES / "wecom_archive.jsonl")
    return {record.locator.rsplit(" ", 1)[1]: record for record in records}


def archive_line(number: int) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(archive_records()[str(number)].payload)
    return message


def as_record(message: dict[str, Any]) -> RawRecord:
    return RawRecord(json.dumps(message, ensure_ascii=False).encode("utf-8"), "t")


def parse_one(message: dict[str, Any]) -> Any:
    (draft,) = WeComArchiveConnector({}).parse(as_record(message))
    return draft


# ------------------------------------------------------------------- archive


def test_archive_text_message_becomes_a_chat_message_from_sender_to_recipients():
    """A text message keeps msgid, sender, recipient, time and Chinese text."""
    record = archive_records()["1"]

    (draft,) = build_connector("wecom_archive").parse(record)

    assert draft.source == "wecom_archive"
    assert draft.source_id == "CAQQluDa4QUY0On2rYSAgAMgzPrShAE="
    assert draft.event_type is EventType.CHAT_MESSAGE
    assert draft.channel is Channel.WECOM
    assert draft.occurred_at == dt.datetime(2019, 1, 10, 2, 38, 14, 783000, dt.UTC)
    assert draft.sender == "wecom:XuJinSheng"
    assert draft.recipients == ("wecom:wmErxtDgAA9AW32YyyuYRimKr7D1KWlw",)
    assert draft.thread_ref is None
    assert draft.text == "王总您好，报价单已发您邮箱，请查收。"
    assert draft.attributes == {
        "msgtype": "text",
        "action": "send",
        "sender_kind": "member",
        "is_group": False,
    }


@pytest.mark.parametrize(
    ("line", "text", "details"),
    [
        (
            2,
            None,
            {
                "file_size": 70961,
                "md5sum": "50de8e5ae8ffe4f1df7a93841f71993a",
                "sdkfileid": "CtYBMzA2OTAyMDEwMjA0NjIzMDYwMDIwMTAwMDIwNGZjYTdlMzM",
            },
        ),
        (
            5,
            None,
            {
                "file_size": 6810,
                "play_length_seconds": 10,
                "md5sum": "9db09c7fa627c9e53f17736c786a74d5",
                "sdkfileid": "kcyZjZqOXhETGYxajB2Zkp5Rk8zYzh4RVF3ZzZGdXlX"
                "WFJXNFBOUVRkY0ZR",
            },
        ),
        (
            6,
            None,
            {
                "file_name": "资料.docx",
                "file_ext": "docx",
                "file_size": 18181,
                "md5sum": "18e93fc2ea884df23b3d2d3b8667b9f0",
                "sdkfileid": "E4ODRkZjIzYjNkMmQzYjg2NjdiOWYwMDIwMTA1MDIwMTAwMDQwMA",
            },
        ),
        (
            7,
            "邀请你加入群聊\n技术支持群，进入可查看详情",
            {
                "link_title": "邀请你加入群聊",
                "url": "https://work.weixin.qq.com/wework_admin/external_room/join/exceed?vcode=xxx",
                "image_url": "https://wework.qpic.cn/wwpic/thumb.jpg",
            },
        ),
        (
            10,
            "开始聊天前请仔细阅读服务须知事项\n客户需同意存档聊天记录",
            {
                "weapp_title": "开始聊天前请仔细阅读服务须知事项",
                "weapp_id": "xxx@app",
                "weapp_name": "服务须知",
            },
        ),
        (
            11,
            None,
            {
                "card_corp_name": "微信联系人",
                "card_userid": "wmN6etBgAA0sbJ3invMvRxPQDFoq9uWA",
            },
        ),
        (
            12,
            None,
            {
                "location_title": "xxx管理中心",
                "address": "北京市xxx区xxx路xxx大厦x座",
                "longitude": 116.586285899762,
                "latitude": 39.91190587530654,
                "zoom": 15,
            },
        ),
    ],
    ids=["image", "voice", "file", "link", "weapp", "card", "location"],
)
def test_archive_media_and_card_types_keep_their_documented_details(
    line, text, details
):
    """Each message type's body facts land in attributes under stable names."""
    message = archive_line(line)

    draft = parse_one(message)

    assert draft.text == text
    assert {
        key: value
        for key, value in draft.attributes.items()
        if key not in ("msgtype", "action", "sender_kind", "is_group")
    } == details
    assert draft.attributes["msgtype"] == message["msgtype"]


def test_archive_mixed_message_joins_its_text_parts_and_lists_every_part():
    """A mixed message reads its JSON-string parts: texts joined, images listed."""
    message = archive_line(8)

    draft = parse_one(message)

    assert draft.text == "你好[微笑]\n\n这是我们的新方案"
    assert draft.attributes["parts"] == [
        {"type": "text"},
        {
            "type": "image",
            "file_size": 13177,
            "md5sum": "368b6c18c82e6441bfd89b343e9d2429",
            "sdkfileid": "CtYBMzA2OTAyMDEwMjA0NjIzMDYwMDIwMTAwMDWwNDVmYWY4",
        },
        {"type": "text"},
    ]


def test_archive_group_message_names_the_room_as_thread():
    """A message with a roomid is threaded as wecom_room:<roomid> to every member."""
    message = archive_line(8)

    draft = parse_one(message)

    assert draft.thread_ref == "wecom_room:wr_tZ2BwAAUwHpYMwy9cIWqnlU3Hzqfg"
    assert draft.recipients == ("wecom:HeChangTian", "wecom:LiuZeYu")
    assert draft.attributes["is_group"] is True


def test_archive_external_sender_keeps_the_wecom_kind_and_is_marked_external():
    """An external_userid (wm...) sender is still wecom:<id>, with sender_kind."""
    message = archive_line(2)

    draft = parse_one(message)

    assert draft.sender == "wecom:wmErxtDgAA9AW32YyyuYRimKr7D1KWlw"
    assert draft.attributes["sender_kind"] == "external"


def test_archive_recall_is_a_chat_message_marked_as_recall_of_the_original():
    """action recall keeps its own msgid and names the recalled message."""
    message = archive_line(3)

    draft = parse_one(message)

    assert draft.source_id == "15775510700152506326_1603875615"
    assert draft.text is None
    assert draft.attributes["is_recall"] is True
    assert draft.attributes["recalled_msgid"] == "14822339130656386894_1603875600"


def test_archive_switch_record_is_accepted_with_no_events():
    """The enterprise log-in switch record is no chat: no draft, no error."""
    record = archive_records()["9"]

    drafts = WeComArchiveConnector({}).parse(record)

    assert drafts == []


def test_archive_unknown_msgtype_is_accepted_as_an_unrecognised_message():
    """A msgtype WeCom adds later still records who talked when, body keys kept."""
    message = archive_line(13)

    draft = parse_one(message)

    assert draft.source_id == "9283201834701000001_1603876000"
    assert draft.text is None
    assert draft.attributes["is_recognised"] is False
    assert draft.attributes["body_fields"] == ["some_id", "value"]


def test_archive_reads_msgtime_in_seconds_as_the_same_instant():
    """A seconds timestamp (1700000060) reads as 60 s after the ms one."""
    records = list(read_records("wecom_archive", FIXTURES / "wecom_archive_list.json"))

    first, second = (WeComArchiveConnector({}).parse(r)[0] for r in records)

    assert first.occurred_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert second.occurred_at == dt.datetime(2023, 11, 14, 22, 14, 20, tzinfo=dt.UTC)


def test_archive_reads_msgtime_sent_as_a_digit_string():
    """Exports that quote msgtime ("1691386666454") read like numbers."""
    message = archive_line(1) | {"msgtime": "1691386666454"}

    draft = parse_one(message)

    assert draft.occurred_at == dt.datetime(2023, 8, 7, 5, 37, 46, 454000, dt.UTC)


@pytest.mark.parametrize(
    "field", ["msgid", "action", "from", "tolist", "msgtime", "msgtype", "text"]
)
def test_archive_refuses_a_message_missing_a_required_field(field):
    """Without msgid, action, from, tolist, msgtime, msgtype or body: rejected."""
    message = archive_line(1)
    del message[field]

    with pytest.raises(MalformedPayload) as caught:
        parse_one(message)

    assert f"'{field}' is missing" in caught.value.message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("from", 42, "field 'from' is int 42; expected a non-empty string"),
        ("tolist", "zhangsan", "field 'tolist' is str 'zhangsan'; expected an array"),
        ("tolist", [""], "field 'tolist[0]' is str ''; expected a non-empty string"),
        ("msgtime", True, "field 'msgtime' is bool True; expected an epoch time"),
        ("msgtime", "yesterday", "field 'msgtime' is str 'yesterday'"),
        ("msgtime", 10**400, "lies outside 2000-2100"),
        ("msgtime", 12, "lies outside 2000-2100"),
        ("action", "edit", "field 'action' is 'edit'; expected send, recall or switch"),
        ("text", "hello", "field 'text' is str 'hello'; expected an object"),
    ],
)
def test_archive_refuses_wrongly_typed_fields_naming_the_field(field, value, expected):
    """A wrongly typed field is a MalformedPayload whose message names it."""
    message = archive_line(1) | {field: value}

    with pytest.raises(MalformedPayload) as caught:
        parse_one(message)

    assert expected in caught.value.message


def test_archive_refuses_broken_json_with_its_position():
    """A truncated line is MalformedPayload saying where the JSON broke."""
    record = RawRecord(b'{"msgid": "x", "action": "send"', "chats.jsonl line 7")

    with pytest.raises(MalformedPayload) as caught:
        WeComArchiveConnector({}).parse(record)

    assert caught.value.message.startswith(
        "wecom_archive record chats.jsonl line 7: the record is not valid JSON"
    )


def test_archive_refuses_gbk_bytes_as_not_utf8():
    """GBK-encoded JSON is refused with a reason rather than guessed at."""
    message = archive_line(1)
    gbk = json.dumps(message, ensure_ascii=False).encode("gbk")

    with pytest.raises(MalformedPayload) as caught:
        WeComArchiveConnector({}).parse(RawRecord(gbk, "gbk.jsonl line 1"))

    assert caught.value.details["reason"] == "not_utf8"
    assert "expected UTF-8 JSON" in caught.value.message


def test_archive_refuses_json_that_is_not_an_object():
    """A JSON array line is not a message."""
    with pytest.raises(MalformedPayload) as caught:
        WeComArchiveConnector({}).parse(RawRecord(b"[1, 2]"))

    assert "is JSON list; expected an object" in caught.value.message


def test_archive_mixed_part_with_broken_content_json_is_refused():
    """A mixed part whose content string is not JSON names the part."""
    message = archive_line(8)
    message["mixed"]["item"][0]["content"] = "{not json"

    with pytest.raises(MalformedPayload) as caught:
        parse_one(message)

    assert "mixed item 0: the part content is not valid JSON" in caught.value.message


def test_archive_parsing_the_same_record_twice_gives_equal_drafts():
    """Parsing is deterministic, so a re-run batch is recognised by source ids."""
    record = archive_records()["8"]
    connector = WeComArchiveConnector({})

    first, second = connector.parse(record), connector.parse(record)

    assert first == second


def test_archive_read_records_skips_blank_lines_and_numbers_lines_from_one():
    """A .jsonl export gives one verbatim record per non-blank line."""
    path = FIXTURES / "wecom_archive.jsonl"

    records = list(read_records("wecom_archive", path))

    assert len(records) == 12
    assert records[3].locator == "wecom_archive.jsonl line 5"
    assert records[0].payload == path.read_bytes().splitlines()[0]


def test_archive_read_records_re_serialises_list_elements_keeping_chinese():
    """A .json list gives one compact UTF-8 record per element, text intact."""
    path = FIXTURES / "wecom_archive_list.json"

    records = list(read_records("wecom_archive", path))

    assert [record.locator for record in records] == [
        "wecom_archive_list.json item 1",
        "wecom_archive_list.json item 2",
    ]
    assert "明天下午三点方便通话吗？".encode() in records[0].payload


def test_archive_read_records_refuses_other_file_types(tmp_path):
    """Only .jsonl and .json files are read."""
    path = tmp_path / "chats.csv"
    path.write_text("msgid\n1\n", encoding="utf-8")

    with pytest.raises(InvalidInput) as caught:
        list(read_records("wecom_archive", path))

    assert "unsupported file type '.csv'" in caught.value.message


def test_archive_read_records_refuses_a_json_file_that_is_no_list(tmp_path):
    """A .json file holding one object is not an export."""
    path = tmp_path / "chats.json"
    path.write_text('{"msgid": "1"}', encoding="utf-8")

    with pytest.raises(InvalidInput) as caught:
        list(read_records("wecom_archive", path))

    assert "holds JSON dict; expected a list of records" in caught.value.message


def test_callback_connector_ignores_the_platform_settings_of_its_source():
    """A callback source's crypto settings reach the connector and are ignored."""
    settings = {"token": "t", "encoding_aes_key": "a" * 43, "receive_id": "ww1"}
    record = RawRecord((FIXTURES / "wecom_callback_text.xml").read_bytes())

    (draft,) = build_connector("wecom_callback", settings).parse(record)

    assert draft.source_id == "1456453720"


def test_archive_connector_refuses_a_configuration_that_is_no_mapping():
    """A configuration must be a mapping of settings."""
    with pytest.raises(InvalidInput) as caught:
        WeComArchiveConnector(["gbk"])  # type: ignore[arg-type]

    assert "configuration must be a mapping, got list" in caught.value.message


# ------------------------------------------------------------------ callback


def test_callback_text_message_becomes_a_chat_message_from_the_member():
    """The inner XML of a text callback keeps MsgId, sender, time and text."""
    record = RawRecord((FIXTURES / "wecom_callback_text.xml").read_bytes())

    (draft,) = build_connector("wecom_callback").parse(record)

    assert draft.source == "wecom_callback"
    assert draft.source_id == "1456453720"
    assert draft.event_type is EventType.CHAT_MESSAGE
    assert draft.sender == "wecom:ChenJiaShun"
    assert draft.occurred_at == dt.datetime(2016, 10, 14, 5, 26, 19, tzinfo=dt.UTC)
    assert draft.text == "合同下周一寄出"
    assert draft.attributes == {
        "msgtype": "text",
        "agent_id": "1000002",
        "corp_id": "ww1436e0e65a779aee",
    }


def test_callback_external_contact_added_is_an_activity_between_member_and_customer():
    """add_external_contact: the member is the sender, the customer the recipient."""
    record = RawRecord((FIXTURES / "wecom_callback_add_contact.xml").read_bytes())

    (draft,) = WeComCallbackConnector({}).parse(record)

    assert draft.event_type is EventType.ACTIVITY_LOGGED
    assert draft.sender == "wecom:zhangsan"
    assert draft.recipients == ("wecom:woAJ2GCAAAXtWyujaWJHDDGi0mACAAA",)
    assert draft.occurred_at == dt.datetime(2014, 6, 24, 11, 48, 33, tzinfo=dt.UTC)
    assert draft.attributes == {
        "event": "change_external_contact",
        "change_type": "add_external_contact",
        "activity": "external_contact_added",
        "state": "expo2024",
    }
    assert draft.source_id.startswith("event-")


def test_callback_event_id_ignores_whitespace_and_element_order():
    """The same event laid out differently hashes to the same source id."""
    fields = [
        "<ToUserName>ww1</ToUserName>",
        "<CreateTime>1403610513</CreateTime>",
        "<MsgType>event</MsgType>",
        "<Event>change_external_contact</Event>",
        "<ChangeType>del_follow_user</ChangeType>",
        "<UserID>zhangsan</UserID>",
        "<ExternalUserID>wo1</ExternalUserID>",
    ]
    compact = ("<xml>" + "".join(fields) + "</xml>").encode()
    spread = ("<xml>\n  " + "\n  ".join(reversed(fields)) + "\n</xml>").encode()

    (first,) = WeComCallbackConnector({}).parse(RawRecord(compact))
    (second,) = WeComCallbackConnector({}).parse(RawRecord(spread))

    assert first.source_id == second.source_id
    assert first.attributes["activity"] == "member_deleted_by_external_contact"


def test_callback_customer_group_change_is_threaded_to_the_group():
    """change_external_chat is an activity in thread wecom_room:<ChatId>."""
    xml = (
        b"<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>"
        b"<CreateTime>1403610513</CreateTime><MsgType>event</MsgType>"
        b"<Event>change_external_chat</Event><ChatId>wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"
        b"</ChatId><ChangeType>update</ChangeType><UpdateDetail>add_member"
        b"</UpdateDetail><JoinScene>1</JoinScene><MemChangeCnt>10</MemChangeCnt></xml>"
    )

    (draft,) = WeComCallbackConnector({}).parse(RawRecord(xml))

    assert draft.thread_ref == "wecom_room:wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"
    assert draft.sender is None
    assert draft.attributes == {
        "event": "change_external_chat",
        "change_type": "update",
        "activity": "customer_group_update",
        "update_detail": "add_member",
        "join_scene": "1",
        "member_change_count": "10",
    }


def test_callback_msgaudit_notify_is_accepted_with_no_events():
    """The archive wake-up event is no behaviour: no draft, no error."""
    record = RawRecord((FIXTURES / "wecom_callback_msgaudit.xml").read_bytes())

    drafts = WeComCallbackConnector({}).parse(record)

    assert drafts == []


def test_callback_unknown_msgtype_is_refused_naming_it():
    """A MsgType the connector does not read is quarantined with a reason."""
    xml = b"<xml><MsgType>hologram</MsgType><FromUserName>a</FromUserName></xml>"

    with pytest.raises(MalformedPayload) as caught:
        WeComCallbackConnector({}).parse(RawRecord(xml))

    assert "MsgType 'hologram' is not supported" in caught.value.message


def test_callback_contact_event_without_external_user_is_refused():
    """A contact event must name the customer (ExternalUserID)."""
    xml = (
        b"<xml><MsgType>event</MsgType><Event>change_external_contact</Event>"
        b"<ChangeType>add_external_contact</ChangeType><UserID>zhangsan</UserID>"
        b"<CreateTime>1403610513</CreateTime></xml>"
    )

    with pytest.raises(MalformedPayload) as caught:
        WeComCallbackConnector({}).parse(RawRecord(xml))

    assert "field 'ExternalUserID' is missing" in caught.value.message


def test_callback_json_flavour_is_refused_as_unsupported():
    """Smart-robot JSON plaintext is quarantined, not misread."""
    record = RawRecord(b'{"msgid": "1", "msgtype": "text"}')

    with pytest.raises(MalformedPayload) as caught:
        WeComCallbackConnector({}).parse(record)

    assert caught.value.details["reason"] == "unsupported_format"


def test_callback_parses_the_plaintext_of_the_published_wecom_sample():
    """The plaintext WeCom's official sample encrypts is a text message 你好."""
    vectors = VECTORS / "wecom-callback-crypto" / "vectors.json"
    sample = json.loads(vectors.read_text(encoding="utf-8"))["decrypt_xml_message"]

    (draft,) = WeComCallbackConnector({}).parse(
        RawRecord(sample["expected_plaintext"].encode("utf-8"))
    )

    assert (draft.source_id, draft.sender, draft.text) == (
        "1456453720",
        "wecom:ChenJiaShun",
        "你好",
    )


# ------------------------------------------------------------------ property

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
ARCHIVE_KEYS = ["msgid", "action", "from", "tolist", "roomid", "msgtime", "msgtype"]


def mutated_archive_messages() -> st.SearchStrategy[bytes]:
    """Real archive messages with one field replaced by arbitrary JSON."""
    lines = [json.loads(r.payload) for r in archive_records().values()]
    return st.builds(
        lambda message, key, value: json.dumps(message | {key: value}).encode(),
        st.sampled_from(lines),
        st.sampled_from([*ARCHIVE_KEYS, "text", "mixed", "file", "link"]),
        JSON_VALUES,
    )


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=300) | mutated_archive_messages())
def test_archive_any_bytes_parse_to_drafts_or_raise_invalid_input(payload):
    """Arbitrary bytes never escape as anything but an InvalidInput."""
    try:
        drafts = WeComArchiveConnector({}).parse(RawRecord(payload))
    except InvalidInput:
        return

    assert isinstance(drafts, list)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | st.builds(
        lambda tags: (
            "<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in tags) + "</xml>"
        ).encode(),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "MsgType",
                        "Event",
                        "ChangeType",
                        "CreateTime",
                        "MsgId",
                        "FromUserName",
                        "Content",
                        "UserID",
                        "ExternalUserID",
                        "ChatId",
                    ]
                ),
                st.sampled_from(
                    [
                        "text",
                        "event",
                        "change_external_contact",
                        "change_external_chat",
                        "link",
                        "1403610513",
                        "99999999999999999999",
                        "",
                        "a&amp;b",
                    ]
                ),
            ),
            max_size=8,
        ),
    )
)
def test_callback_any_bytes_parse_to_drafts_or_raise_invalid_input(payload):
    """Arbitrary bytes or XML never escape as anything but an InvalidInput."""
    try:
        drafts = WeComCallbackConnector({}).parse(RawRecord(payload))
    except InvalidInput:
        return

    assert isinstance(drafts, list)
