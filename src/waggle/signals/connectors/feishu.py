"""Feishu / Lark (飞书) connectors: v2.0 events and the message-list export.

``feishu_events`` reads one decrypted event of schema 2.0 (``header`` with
``event_id``, ``event_type``, ``create_time``...; ``event`` with the sender and
the message). ``im.message.receive_v1`` becomes one ``chat_message`` draft;
``url_verification`` and every other event type (read receipts, group
membership, contacts) are accepted with no draft. Schema 1.0 events are
quarantined: Waggle subscribes with 2.0 and a 1.0 body means a misconfigured
app.

``feishu_messages`` reads one item of ``GET /open-apis/im/v1/messages``
(``message_id``, ``msg_type``, ``create_time`` ms as a string, ``chat_id``,
``sender`` {id, id_type, sender_type}, ``body.content``); ``read_records``
splits a saved API response (``{"code": 0, "data": {"items": [...]}}``), a
JSON list or JSON lines of items.

Rules both follow:

- The sender is ``feishu:<open_id>``: events always carry the open_id, and
  the list API returns open_ids unless asked otherwise (``sender_id_type``
  records what it was). Identity links for Feishu therefore hold open_ids;
  ``sender_user_id`` and ``sender_union_id`` are kept when the event has them.
- ``thread_ref`` is ``feishu_room:<chat_id>``; ``source`` is
  ``feishu_messages`` and ``source_id`` the ``message_id``, so a message seen
  by event and again by export is stored once.
- ``content`` is a JSON string. ``text`` and ``post`` (rich text: title,
  text runs, links, @mentions, code) give ``text``; ``@_user_1`` placeholders
  become ``@<name>``. ``image``, ``file``, ``audio``, ``media``, ``sticker``,
  ``interactive`` (cards) and others keep their keys in attributes; unknown
  types are accepted with ``is_recognised: False``. A recalled (deleted) list
  item keeps ``is_recall`` and no text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from waggle.signals.connectors._chat import (
    check_config,
    join_text,
    load_json_object,
    optional_str,
    picked,
    read_json_records,
    read_time,
    record_label,
    require_object,
    require_str,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

EVENTS = "feishu_events"
MESSAGES = "feishu_messages"
RECEIVE_MESSAGE = "im.message.receive_v1"

_CONTENT_DETAILS: dict[str, dict[str, str]] = {
    "image": {"image_key": "image_key"},
    "file": {"file_key": "file_key", "file_name": "file_name"},
    "audio": {"file_key": "file_key", "duration": "duration_ms"},
    "media": {
        "file_key": "file_key",
        "image_key": "image_key",
        "file_name": "file_name",
        "duration": "duration_ms",
    },
    "sticker": {"file_key": "file_key"},
    "share_chat": {"chat_id": "shared_chat_id"},
    "share_user": {"user_id": "shared_user_id"},
    "location": {
        "name": "location_name",
        "longitude": "longitude",
        "latitude": "latitude",
    },
    "interactive": {"title": "card_title"},
    "merge_forward": {},
    "system": {"template": "template"},
    "video_chat": {"topic": "topic", "start_time": "starts_at"},
    "share_calendar_event": {"summary": "summary", "start_time": "starts_at"},
    "todo": {"task_id": "task_id"},
    "hongbao": {},
}
_POST_TEXT_TAGS = frozenset({"text", "a", "md", "code_block"})


class FeishuEventConnector:
    """Parse decrypted Feishu v2.0 events; messages become chat_message drafts."""

    name = EVENTS

    def __init__(self, config: Mapping[str, Any]):
        check_config(self.name, config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the draft of a received message, or none for other events.

        Raises:
            MalformedPayload: not UTF-8 JSON, a schema 1.0 event, or a missing
                or wrongly typed field (the message names it).
        """
        label = record_label(self.name, record)
        event = load_json_object(record.payload, label=label, what="the event")
        if event.get("type") == "url_verification":
            return []
        if event.get("schema") != "2.0":
            raise MalformedPayload(
                f"{label}: field 'schema' is {event.get('schema')!r}; expected "
                "'2.0' (set the app's event subscription to schema 2.0)",
                field="schema",
            )
        header = require_object(event, "header", label=label)
        event_type = require_str(header, "event_type", label=f"{label} header")
        if event_type != RECEIVE_MESSAGE:
            return []
        body = require_object(event, "event", label=label)
        return [_event_draft(header, body, label=label)]


def _event_draft(
    header: dict[str, Any], body: dict[str, Any], *, label: str
) -> EventDraft:
    sender = require_object(body, "sender", label=f"{label} event")
    ids = require_object(sender, "sender_id", label=f"{label} event.sender")
    open_id = require_str(ids, "open_id", label=f"{label} event.sender.sender_id")
    message = require_object(body, "message", label=f"{label} event")
    message_label = f"{label} event.message"

    draft = _message_draft(
        message,
        msgtype_key="message_type",
        content=require_str(message, "content", label=message_label),
        sender=open_id,
        label=message_label,
    )
    extra = picked(
        {**header, **ids, **sender, **message},
        {
            "event_id": "event_id",
            "tenant_key": "tenant_key",
            "app_id": "app_id",
            "user_id": "sender_user_id",
            "union_id": "sender_union_id",
            "sender_type": "sender_type",
            "chat_type": "chat_type",
        },
    )
    return _with_attributes(draft, extra)


class FeishuMessageConnector:
    """Parse items of the Feishu message-list API into chat_message drafts."""

    name = MESSAGES

    def __init__(self, config: Mapping[str, Any]):
        check_config(self.name, config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the draft of one message-list item.

        Raises:
            MalformedPayload: not UTF-8 JSON, or a field is missing or of the
                wrong type (the message names it).
        """
        label = record_label(self.name, record)
        item = load_json_object(record.payload, label=label)
        sender = require_object(item, "sender", label=label)
        sender_id = optional_str(sender, "id", label=f"{label} sender")
        body = require_object(item, "body", label=label)
        is_recall = item.get("deleted") is True

        draft = _message_draft(
            item,
            msgtype_key="msg_type",
            content=None if is_recall else require_str(body, "content", label=label),
            sender=sender_id,
            label=label,
        )
        extra = picked(
            sender, {"id_type": "sender_id_type", "sender_type": "sender_type"}
        )
        if is_recall:
            extra["is_recall"] = True
        if item.get("updated") is True:
            extra["is_edited"] = True
        return [_with_attributes(draft, extra)]


def _message_draft(
    message: dict[str, Any],
    *,
    msgtype_key: str,
    content: str | None,
    sender: str | None,
    label: str,
) -> EventDraft:
    message_id = require_str(message, "message_id", label=label)
    chat_id = require_str(message, "chat_id", label=label)
    msgtype = require_str(message, msgtype_key, label=label)
    occurred_at = read_time(
        message.get("create_time"), field="create_time", label=label
    )

    text, details = (
        (None, {}) if content is None else read_content(msgtype, content, label=label)
    )
    names = _mention_names(message)
    attributes: dict[str, Any] = {
        "msgtype": msgtype,
        **picked(
            message,
            {"root_id": "root_id", "parent_id": "parent_id", "thread_id": "thread_id"},
        ),
        **details,
    }
    if names:
        attributes["mentioned_ids"] = list(names.values())
        text = _replace_mentions(text, names, message)
    return EventDraft(
        source=MESSAGES,
        source_id=message_id,
        event_type=EventType.CHAT_MESSAGE,
        occurred_at=occurred_at,
        channel=Channel.FEISHU,
        sender=f"feishu:{sender}" if sender else None,
        thread_ref=f"feishu_room:{chat_id}",
        text=text,
        attributes=attributes,
    )


def _with_attributes(draft: EventDraft, extra: dict[str, Any]) -> EventDraft:
    return EventDraft(
        source=draft.source,
        source_id=draft.source_id,
        event_type=draft.event_type,
        occurred_at=draft.occurred_at,
        channel=draft.channel,
        sender=draft.sender,
        thread_ref=draft.thread_ref,
        text=draft.text,
        attributes={**draft.attributes, **extra},
    )


def read_content(
    msgtype: str, content: str, *, label: str
) -> tuple[str | None, dict[str, Any]]:
    """Return the text and attribute facts of a message's content JSON string.

    Raises:
        MalformedPayload: the content is not a JSON object, or a text message
            has no text.
    """
    data = load_json_object(content, label=label, what="the message content")
    if msgtype == "text":
        return require_str(data, "text", label=f"{label} content"), {}
    if msgtype == "post":
        return _post_text(data, label=f"{label} content"), {}
    details = _CONTENT_DETAILS.get(msgtype)
    if details is None:
        return None, {"is_recognised": False, "body_fields": sorted(data)}
    return None, picked(data, details)


def _post_text(data: dict[str, Any], *, label: str) -> str | None:
    # Received posts are {"title", "content"}; sent ones wrap that per locale.
    if "content" not in data:
        localised = [value for value in data.values() if isinstance(value, dict)]
        if not localised:
            raise MalformedPayload(
                f"{label}: a post has no 'content'; expected title and paragraphs",
                field="content",
            )
        data = localised[0]
    paragraphs = data.get("content")
    if not isinstance(paragraphs, list):
        raise MalformedPayload(
            f"{label}: field 'content' of the post is not an array; expected "
            "a list of paragraphs",
            field="content",
        )
    lines = [_paragraph_text(paragraph) for paragraph in paragraphs]
    title = data.get("title") if isinstance(data.get("title"), str) else None
    return join_text(title, *lines)


def _paragraph_text(paragraph: Any) -> str | None:
    if not isinstance(paragraph, list):
        return None
    runs: list[str] = []
    for element in paragraph:
        if not isinstance(element, dict):
            continue
        tag = element.get("tag")
        if tag in _POST_TEXT_TAGS and isinstance(element.get("text"), str):
            runs.append(element["text"])
        elif tag == "at" and isinstance(element.get("user_name"), str):
            runs.append("@" + element["user_name"])
    return "".join(runs) or None


def _mention_names(message: dict[str, Any]) -> dict[str, str]:
    """Map each ``@_user_N`` key to the mentioned person's open_id (or id)."""
    mentions = message.get("mentions")
    if not isinstance(mentions, list):
        return {}
    found: dict[str, str] = {}
    for mention in mentions:
        if not isinstance(mention, dict) or not isinstance(mention.get("key"), str):
            continue
        ident = mention.get("id")
        if isinstance(ident, dict) and isinstance(ident.get("open_id"), str):
            found[mention["key"]] = ident["open_id"]
        elif isinstance(ident, str):
            found[mention["key"]] = ident
    return found


def _replace_mentions(
    text: str | None, names: dict[str, str], message: dict[str, Any]
) -> str | None:
    if text is None:
        return None
    for mention in message.get("mentions") or []:
        key = mention.get("key") if isinstance(mention, dict) else None
        name = mention.get("name") if isinstance(mention, dict) else None
        if key in names and isinstance(name, str) and name:
            text = text.replace(key, "@" + name)
    return text


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Split a saved message-list response, JSON list or JSON lines into records.

    Raises:
        InvalidInput: the file cannot be read, is not of that shape, or is an
            API response with a non-zero ``code``.
    """
    return read_json_records(path, items_key=("data", "items"))


__all__ = [
    "RECEIVE_MESSAGE",
    "FeishuEventConnector",
    "FeishuMessageConnector",
    "read_content",
    "read_records",
]
