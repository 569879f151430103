"""Feishu connectors: v2.0 events (im.message.receive_v1) and the message list.

Fixtures follow the documented shapes of the 接收消息 event and of
``GET /open-apis/im/v1/messages`` (ids from the docs' examples; texts changed
to sales conversations).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.signals.connectors import build_connector, read_records
from waggle.signals.connectors.feishu import (
    FeishuEventConnector,
    FeishuMessageConnector,
    read_content,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat"


def event(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return payload


def parse_event(payload: dict[str, Any]) -> list[Any]:
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return FeishuEventConnector({}).parse(RawRecord(data, "t"))


def list_items() -> list[dict[str, Any]]:
    records = read_records("feishu_messages", FIXTURES / "feishu_messages.json")
    return [json.loads(record.payload) for record in records]


def parse_item(item: dict[str, Any]) -> Any:
    data = json.dumps(item, ensure_ascii=False).encode("utf-8")
    (draft,) = FeishuMessageConnector({}).parse(RawRecord(data, "t"))
    return draft


# -------------------------------------------------------------------- events


def test_received_text_message_becomes_a_chat_message_from_the_open_id():
    """im.message.receive_v1 keeps message_id, open_id sender, chat and text."""
    record = RawRecord((FIXTURES / "feishu_event_text.json").read_bytes())

    (draft,) = build_connector("feishu_events").parse(record)

    assert draft.source == "feishu_messages"
    assert draft.source_id == "om_5ce6d572455d361153b7cb51da133945"
    assert draft.event_type is EventType.CHAT_MESSAGE
    assert draft.channel is Channel.FEISHU
    assert draft.sender == "feishu:ou_84aad35d084aa403a838cf73ee18467"
    assert draft.thread_ref == "feishu_room:oc_5ce6d572455d361153b7xx51da133945"
    assert draft.occurred_at == dt.datetime(2020, 12, 27, 12, 45, 51, 345000, dt.UTC)
    assert draft.text == "@李经理 这个价格我们需要再内部讨论一下"
    assert draft.attributes == {
        "msgtype": "text",
        "root_id": "om_5ce6d572455d361153b7cb5xxfsdfsdfdsf",
        "parent_id": "om_5ce6d572455d361153b7cb5xxfsdfsdfdsf",
        "mentioned_ids": ["ou_84aad35d084aa403a838cf73ee18999"],
        "event_id": "5e3702a84e847582be8db7fb73283c02",
        "tenant_key": "736588c9260f175e",
        "app_id": "cli_9f5343c580712544",
        "sender_user_id": "e33ggbyz",
        "sender_union_id": "on_8ed6aa67826108097d9ee143816345",
        "sender_type": "user",
        "chat_type": "group",
    }


def test_received_post_message_reads_title_runs_links_and_mentions():
    """A rich-text post reads its title, text runs, link texts and @names."""
    payload = event("feishu_event_post.json")

    (draft,) = parse_event(payload)

    assert draft.text == "试用安排\n第一周：部署计划\n@王工 请确认环境"
    assert draft.attributes["msgtype"] == "post"


def test_post_content_wrapped_per_locale_reads_the_same():
    """A post in the send shape ({"zh_cn": {...}}) reads like a received one."""
    content = json.dumps(
        {"zh_cn": {"title": "标题", "content": [[{"tag": "text", "text": "正文"}]]}},
        ensure_ascii=False,
    )

    text, details = read_content("post", content, label="t")

    assert (text, details) == ("标题\n正文", {})


def test_url_verification_is_accepted_with_no_events():
    """The request-URL check is a handshake, not an event."""
    payload = event("feishu_url_verification.json")

    drafts = parse_event(payload)

    assert drafts == []


def test_other_event_types_are_accepted_with_no_events():
    """A v2.0 event that is not a received message (read receipt) gives no draft."""
    payload = event("feishu_event_text.json")
    payload["header"]["event_type"] = "im.message.message_read_v1"

    drafts = parse_event(payload)

    assert drafts == []


def test_schema_one_events_are_refused_with_a_reason():
    """A 1.0 event means the app subscribes with the wrong schema: quarantined."""
    payload = {"uuid": "41b5f371157e3d5341b38b20396e77a3", "type": "event_callback"}

    with pytest.raises(MalformedPayload) as caught:
        parse_event(payload)

    assert "field 'schema' is None; expected '2.0'" in caught.value.message


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("event", "sender", "sender_id", "open_id"), "field 'open_id' is missing"),
        (("event", "message", "message_id"), "field 'message_id' is missing"),
        (("event", "message", "chat_id"), "field 'chat_id' is missing"),
        (("event", "message", "create_time"), "field 'create_time' is missing"),
        (("event", "message", "content"), "field 'content' is missing"),
        (("header", "event_type"), "field 'event_type' is missing"),
    ],
)
def test_event_missing_a_required_field_is_refused_naming_it(path, message):
    """Each field the draft needs is named when it is missing."""
    payload = event("feishu_event_text.json")
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]

    with pytest.raises(MalformedPayload) as caught:
        parse_event(payload)

    assert message in caught.value.message


def test_content_that_is_not_a_json_string_is_refused():
    """content must be a JSON string such as {"text": ...}."""
    payload = event("feishu_event_text.json")
    payload["event"]["message"]["content"] = "你好"

    with pytest.raises(MalformedPayload) as caught:
        parse_event(payload)

    assert "the message content is not valid JSON" in caught.value.message


def test_create_time_in_seconds_reads_as_the_same_second():
    """A create_time of "1609073151" (seconds) is read as seconds."""
    payload = event("feishu_event_text.json")
    payload["event"]["message"]["create_time"] = "1609073151"

    (draft,) = parse_event(payload)

    assert draft.occurred_at == dt.datetime(2020, 12, 27, 12, 45, 51, tzinfo=dt.UTC)


def test_gbk_bytes_and_broken_json_are_refused():
    """GBK bytes and truncated JSON both raise MalformedPayload with reasons."""
    gbk = (FIXTURES / "feishu_event_text.json").read_text("utf-8").encode("gbk")

    with pytest.raises(MalformedPayload) as not_utf8:
        FeishuEventConnector({}).parse(RawRecord(gbk))
    with pytest.raises(MalformedPayload) as broken:
        FeishuEventConnector({}).parse(RawRecord(b'{"schema": "2.0", "header": {'))

    assert not_utf8.value.details["reason"] == "not_utf8"
    assert broken.value.details["reason"] == "bad_json"


def test_parsing_the_same_event_twice_gives_equal_drafts():
    """Parsing is deterministic."""
    record = RawRecord((FIXTURES / "feishu_event_post.json").read_bytes())
    connector = FeishuEventConnector({})

    assert connector.parse(record) == connector.parse(record)


# -------------------------------------------------------------- message list


def test_read_records_splits_the_api_response_into_items():
    """A saved {"code": 0, "data": {"items": [...]}} response gives one record each."""
    records = list(read_records("feishu_messages", FIXTURES / "feishu_messages.json"))

    assert [record.locator for record in records] == [
        f"feishu_messages.json item {index}" for index in (1, 2, 3, 4)
    ]


def test_read_records_refuses_a_response_with_an_error_code(tmp_path):
    """An API error response (code 230002) is not a message export."""
    path = tmp_path / "page.json"
    path.write_text('{"code": 230002, "msg": "Bot is not in the chat"}', "utf-8")

    with pytest.raises(InvalidInput) as caught:
        list(read_records("feishu_messages", path))

    assert "code 230002 (Bot is not in the chat)" in caught.value.message


def test_read_records_reads_json_lines_of_items(tmp_path):
    """A .jsonl file of items gives one verbatim record per line."""
    path = tmp_path / "items.jsonl"
    lines = [json.dumps(item, ensure_ascii=False) for item in list_items()[:2]]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")

    records = list(read_records("feishu_messages", path))

    assert [record.payload.decode("utf-8") for record in records] == lines


def test_list_text_item_becomes_a_chat_message_with_mentions_named():
    """A text item keeps message_id, open_id sender, chat, and @name in its text."""
    item = list_items()[0]

    draft = parse_item(item)

    assert draft.source == "feishu_messages"
    assert draft.source_id == "om_dc13264520392913993dd051dba21dcf"
    assert draft.sender == "feishu:ou_155184d1e73cbfb8973e5a9e698e74f2"
    assert draft.thread_ref == "feishu_room:oc_5ad11d72b830411d72b836c20"
    assert draft.occurred_at == dt.datetime(2021, 3, 10, 12, 49, 33, 411000, dt.UTC)
    assert draft.text == "@张三 招标文件已经发布了"
    assert draft.attributes == {
        "msgtype": "text",
        "mentioned_ids": ["ou_155184d1e73cbfb8973e5a9e698e74f3"],
        "sender_id_type": "open_id",
        "sender_type": "user",
    }


def test_list_file_and_card_items_keep_their_facts_without_text():
    """File items keep key and name; cards their title; neither has text."""
    file_item, card_item = list_items()[1:3]

    file_draft, card_draft = parse_item(file_item), parse_item(card_item)

    assert (file_draft.text, file_draft.attributes["file_name"]) == (
        None,
        "投标报价.pdf",
    )
    assert file_draft.attributes["file_key"] == "file_v2_f8e7b8b1-1c8f-4f2b"
    assert card_draft.text is None
    assert card_draft.attributes["card_title"] == "审批通知"
    assert card_draft.sender == "feishu:cli_9f427eec54ae901b"
    assert card_draft.attributes["sender_id_type"] == "app_id"


def test_list_recalled_item_is_kept_as_a_recall_without_text():
    """A deleted item ("This message was recalled") is a recall with no text."""
    item = list_items()[3]

    draft = parse_item(item)

    assert draft.text is None
    assert draft.attributes["is_recall"] is True


def test_event_and_list_item_of_one_message_share_source_and_source_id():
    """The same message seen by event and by export is stored once."""
    item = list_items()[0] | {"message_id": "om_5ce6d572455d361153b7cb51da133945"}
    (from_event,) = parse_event(event("feishu_event_text.json"))

    from_list = parse_item(item)

    assert (from_list.source, from_list.source_id) == (
        from_event.source,
        from_event.source_id,
    )


def test_unknown_message_type_is_accepted_as_unrecognised():
    """A msg_type the connector does not read keeps its content keys."""
    item = list_items()[1] | {"msg_type": "hologram"}

    draft = parse_item(item)

    assert draft.attributes["is_recognised"] is False
    assert draft.attributes["body_fields"] == ["file_key", "file_name"]


@pytest.mark.parametrize("field", ["message_id", "msg_type", "chat_id", "sender"])
def test_list_item_missing_a_required_field_is_refused(field):
    """message_id, msg_type, chat_id and sender are required."""
    item = list_items()[0]
    del item[field]

    with pytest.raises(MalformedPayload) as caught:
        parse_item(item)

    assert f"field '{field}' is missing" in caught.value.message


# ------------------------------------------------------------------ property

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def mutated(payload: dict[str, Any], paths: list[tuple[str, ...]]) -> Any:
    """Copies of ``payload`` with one nested field replaced by arbitrary JSON."""

    def replace(path: tuple[str, ...], value: Any) -> bytes:
        copy = json.loads(json.dumps(payload))
        parent = copy
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
        return json.dumps(copy).encode()

    return st.builds(replace, st.sampled_from(paths), JSON_VALUES)


EVENT_PATHS = [
    ("schema",),
    ("header",),
    ("header", "event_type"),
    ("event", "sender"),
    ("event", "sender", "sender_id"),
    ("event", "sender", "sender_id", "open_id"),
    ("event", "message", "content"),
    ("event", "message", "create_time"),
    ("event", "message", "mentions"),
    ("event", "message", "message_type"),
]
ITEM_PATHS = [
    ("sender",),
    ("sender", "id"),
    ("body",),
    ("body", "content"),
    ("create_time",),
    ("deleted",),
    ("mentions",),
    ("msg_type",),
]


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | mutated(event("feishu_event_text.json"), EVENT_PATHS)
    | mutated(event("feishu_event_post.json"), EVENT_PATHS)
)
def test_events_any_bytes_parse_to_drafts_or_raise_invalid_input(payload):
    """Arbitrary bytes never escape the event connector but as InvalidInput."""
    try:
        drafts = FeishuEventConnector({}).parse(RawRecord(payload))
    except InvalidInput:
        return

    assert isinstance(drafts, list)


@settings(max_examples=100, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | st.sampled_from(list_items()).flatmap(lambda item: mutated(item, ITEM_PATHS))
)
def test_messages_any_bytes_parse_to_drafts_or_raise_invalid_input(payload):
    """Arbitrary bytes never escape the list connector but as InvalidInput."""
    try:
        drafts = FeishuMessageConnector({}).parse(RawRecord(payload))
    except InvalidInput:
        return

    assert isinstance(drafts, list)
