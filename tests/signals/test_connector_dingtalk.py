"""DingTalk connectors: robot messages and decrypted event-subscription callbacks.

The message fixtures follow the shape DingTalk delivers to a robot (as in the
official Stream/HTTP robot docs and SDK samples); the events follow the
event-subscription list (check_url, 通讯录, 群会话 events).
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
from waggle.signals.connectors.dingtalk import (
    DingTalkCallbackConnector,
    DingTalkMessageConnector,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat"


def messages() -> list[dict[str, Any]]:
    records = read_records("dingtalk_messages", FIXTURES / "dingtalk_messages.jsonl")
    return [json.loads(record.payload) for record in records]


def parse_one(message: dict[str, Any]) -> Any:
    payload = json.dumps(message, ensure_ascii=False).encode("utf-8")
    (draft,) = DingTalkMessageConnector({}).parse(RawRecord(payload, "t"))
    return draft


def test_text_message_becomes_a_chat_message_from_the_staff_member():
    """A robot text message keeps msgId, staff sender, conversation and text."""
    record = next(
        iter(read_records("dingtalk_messages", FIXTURES / "dingtalk_messages.jsonl"))
    )

    (draft,) = build_connector("dingtalk_messages").parse(record)

    assert draft.source == "dingtalk_messages"
    assert draft.source_id == "msgBjXREkdlZkfTfrIiQomjAw=="
    assert draft.event_type is EventType.CHAT_MESSAGE
    assert draft.channel is Channel.DINGTALK
    assert draft.sender == "dingtalk:032615015535634423"
    assert draft.thread_ref == (
        "dingtalk_room:cidh6ezDLHQau9V23Es/xSLNoiDDmPuN354KylQ2BaIhuM="
    )
    assert draft.occurred_at == dt.datetime(2026, 3, 21, 8, 16, 34, 334000, dt.UTC)
    assert draft.text == "客户说预算下个季度才批"
    assert draft.attributes == {
        "msgtype": "text",
        "conversation_type": "1",
        "sender_nick": "赵文浩",
        "sender_corp_id": "dinge19e25c0b3f73fd635c2f4657eb6378f",
        "sender_staff_id": "032615015535634423",
        "chatbot_user_id": "$:LWCP_v1:$01B/44e/ph+R21B/X+43WLnAcUVO5BKL",
        "robot_code": "dingf0apw4ibx5u5ktba",
        "is_group": False,
    }


def test_session_webhook_is_never_copied_into_attributes():
    """The reply URL that lets anyone post as the robot stays out of storage."""
    message = messages()[0]

    draft = parse_one(message)

    assert "sessionWebhook" not in json.dumps(dict(draft.attributes))
    assert "3dc9981636af125faaf72220d6242ff7" not in json.dumps(dict(draft.attributes))


def test_group_rich_text_joins_text_runs_and_uses_sender_id_without_staff_id():
    """richText keeps its text runs; a sender of another org is dingtalk:<senderId>."""
    message = messages()[1]

    draft = parse_one(message)

    assert draft.sender == "dingtalk:$:LWCP_v1:$ext0001=="
    assert draft.text == "合同初稿\n请法务审核"
    assert draft.attributes["picture_count"] == 1
    assert draft.attributes["is_group"] is True
    assert draft.attributes["conversation_title"] == "华东大客户项目群"
    assert draft.attributes["mentioned_staff_ids"] == ["manager01"]


def test_audio_message_reads_the_speech_recognition_as_text():
    """An audio message's recognition is what was said, so trackers read it."""
    message = messages()[2]

    draft = parse_one(message)

    assert draft.text == "下周安排试用"
    assert draft.attributes["duration_ms"] == 4000
    assert draft.attributes["is_transcribed"] is True


@pytest.mark.parametrize(
    ("index", "details"),
    [
        (3, {"file_name": "报价单V2.xlsx", "download_code": "dlc-file"}),
        (4, {"download_code": "dlc-pic"}),
    ],
    ids=["file", "picture"],
)
def test_file_and_picture_messages_keep_their_facts_without_text(index, details):
    """Files and pictures carry no text; their name and download code are kept."""
    message = messages()[index]

    draft = parse_one(message)

    assert draft.text is None
    assert {key: draft.attributes[key] for key in details} == details


def test_unknown_msgtype_is_accepted_as_unrecognised():
    """A msgtype the connector does not read still records who spoke when."""
    message = messages()[0] | {"msgtype": "interactiveCard", "content": {"cardId": "c"}}
    del message["text"]

    draft = parse_one(message)

    assert draft.attributes["is_recognised"] is False
    assert draft.attributes["body_fields"] == ["cardId"]


def test_create_at_in_seconds_reads_as_the_same_instant():
    """createAt 1774080994 (seconds) is the same second as its ms form."""
    message = messages()[0] | {"createAt": 1774080994}

    draft = parse_one(message)

    assert draft.occurred_at == dt.datetime(2026, 3, 21, 8, 16, 34, tzinfo=dt.UTC)


@pytest.mark.parametrize("field", ["msgId", "conversationId", "createAt", "msgtype"])
def test_message_missing_a_required_field_is_refused(field):
    """Without msgId, conversationId, createAt or msgtype a message is rejected."""
    message = messages()[0]
    del message[field]

    with pytest.raises(MalformedPayload) as caught:
        parse_one(message)

    assert f"'{field}' is missing" in caught.value.message


def test_message_without_any_sender_id_is_refused():
    """A message needs senderStaffId or senderId to name who spoke."""
    message = messages()[0]
    del message["senderStaffId"], message["senderId"]

    with pytest.raises(MalformedPayload) as caught:
        parse_one(message)

    assert "'senderStaffId' and 'senderId' are both missing" in caught.value.message


def test_text_message_whose_text_is_not_an_object_is_refused():
    """text must be the {"content": ...} object the robot API sends."""
    message = messages()[0] | {"text": "客户说预算"}

    with pytest.raises(MalformedPayload) as caught:
        parse_one(message)

    assert (
        "field 'text' is str '客户说预算'; expected an object" in caught.value.message
    )


def test_broken_json_and_gbk_bytes_are_refused():
    """Truncated JSON and GBK bytes are both MalformedPayload, with reasons."""
    gbk = json.dumps(messages()[0], ensure_ascii=False).encode("gbk")

    with pytest.raises(MalformedPayload) as broken:
        DingTalkMessageConnector({}).parse(RawRecord(b'{"msgId": '))
    with pytest.raises(MalformedPayload) as not_utf8:
        DingTalkMessageConnector({}).parse(RawRecord(gbk))

    assert broken.value.details["reason"] == "bad_json"
    assert not_utf8.value.details["reason"] == "not_utf8"


def test_parsing_the_same_message_twice_gives_equal_drafts():
    """Parsing is deterministic."""
    payload = json.dumps(messages()[1], ensure_ascii=False).encode("utf-8")
    connector = DingTalkMessageConnector({})

    assert connector.parse(RawRecord(payload)) == connector.parse(RawRecord(payload))


# ------------------------------------------------------------------ callback


@pytest.mark.parametrize("line", [1, 2, 3], ids=["check_url", "user_add", "chat_add"])
def test_url_checks_and_org_or_group_events_are_accepted_with_no_events(line):
    """check_url, 通讯录 and 群会话 events carry no conversation: no drafts."""
    records = list(
        read_records("dingtalk_callback", FIXTURES / "dingtalk_events.jsonl")
    )

    drafts = build_connector("dingtalk_callback").parse(records[line - 1])

    assert drafts == []


def test_callback_carrying_a_robot_message_gives_the_same_draft_as_the_import():
    """A robot message pushed by callback dedupes with the imported one."""
    payload = json.dumps(messages()[0], ensure_ascii=False).encode("utf-8")

    (from_callback,) = DingTalkCallbackConnector({}).parse(RawRecord(payload))
    (from_import,) = DingTalkMessageConnector({}).parse(RawRecord(payload))

    assert (from_callback.source, from_callback.source_id) == (
        from_import.source,
        from_import.source_id,
    )
    assert from_callback == from_import


def test_callback_without_event_type_is_refused():
    """A decrypted event must carry EventType (or be a robot message)."""
    with pytest.raises(MalformedPayload) as caught:
        DingTalkCallbackConnector({}).parse(RawRecord(b'{"CorpId": "ding1"}'))

    assert "field 'EventType' is missing" in caught.value.message


def test_callback_parses_the_plaintext_of_the_published_check_url_vector():
    """The official SDK's check_url plaintext is accepted with no drafts."""
    vectors = VECTORS / "dingtalk-callback-crypto" / "vectors.json"
    sample = json.loads(vectors.read_text(encoding="utf-8"))["vectors"][1]

    drafts = DingTalkCallbackConnector({}).parse(
        RawRecord(sample["expected_plaintext"].encode("utf-8"))
    )

    assert drafts == []


# ------------------------------------------------------------------ property

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
KEYS = [
    "msgId",
    "conversationId",
    "conversationType",
    "senderStaffId",
    "senderId",
    "createAt",
    "msgtype",
    "text",
    "content",
    "atUsers",
    "EventType",
]


def mutated_messages() -> st.SearchStrategy[bytes]:
    """Real robot messages with one field replaced by arbitrary JSON."""
    return st.builds(
        lambda message, key, value: json.dumps(message | {key: value}).encode(),
        st.sampled_from(messages()),
        st.sampled_from(KEYS),
        JSON_VALUES,
    )


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=300) | mutated_messages())
def test_any_bytes_parse_to_drafts_or_raise_invalid_input(payload):
    """Arbitrary bytes never escape either connector as anything but InvalidInput."""
    for connector in (DingTalkMessageConnector({}), DingTalkCallbackConnector({})):
        try:
            drafts = connector.parse(RawRecord(payload))
        except InvalidInput:
            continue
        assert isinstance(drafts, list)
