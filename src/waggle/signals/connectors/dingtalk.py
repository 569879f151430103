"""DingTalk (钉钉) connectors: robot messages and event-subscription callbacks.

``dingtalk_messages`` reads one message in the shape DingTalk delivers to a
robot (``msgId``, ``conversationId``, ``conversationType`` 1 single / 2 group,
``senderStaffId`` or ``senderId``, ``senderNick``, ``createAt`` in ms,
``msgtype`` and its body). It becomes one ``chat_message`` draft from
``dingtalk:<senderStaffId>`` (``senderId`` when the staff id is absent, as for
people of other organisations) in thread ``dingtalk_room:<conversationId>``.
``text`` is the content of ``text``, the text parts of ``richText`` and the
speech recognition of ``audio``; pictures, files and videos keep their facts
in attributes. Unknown msgtypes are accepted with ``is_recognised: False``.
The ``sessionWebhook`` (a short-lived URL that lets anyone holding it post as
the robot) is never copied into attributes.

``dingtalk_callback`` reads one decrypted event of the HTTP event
subscription. The URL checks (``check_url``, ``check_create_suite_url``,
``check_update_suite_url``) and every ``EventType`` event (org chart, group
settings, approvals, attendance) are accepted with no draft: none of them is a
conversation. A decrypted robot message (the shape above, pushed through an
encrypted robot callback) is parsed like ``dingtalk_messages``.

Both produce drafts with ``source`` ``dingtalk_messages`` and ``source_id``
``msgId``, so a message that arrives by callback and again in an import is
stored once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from waggle.signals.connectors._chat import (
    check_config,
    id_text,
    join_text,
    load_json_object,
    optional_str,
    picked,
    read_json_records,
    read_time,
    record_label,
    require_list,
    require_object,
    require_str,
)
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

MESSAGES = "dingtalk_messages"
CALLBACK = "dingtalk_callback"
URL_CHECKS = frozenset(
    {"check_url", "check_create_suite_url", "check_update_suite_url"}
)

_CONTENT_DETAILS: dict[str, dict[str, str]] = {
    "picture": {"downloadCode": "download_code"},
    "file": {"fileName": "file_name", "downloadCode": "download_code"},
    "audio": {"duration": "duration_ms", "downloadCode": "download_code"},
    "video": {
        "duration": "duration_ms",
        "videoType": "video_type",
        "downloadCode": "download_code",
    },
}
_MESSAGE_DETAILS = {
    "conversationType": "conversation_type",
    "conversationTitle": "conversation_title",
    "senderNick": "sender_nick",
    "senderCorpId": "sender_corp_id",
    "senderStaffId": "sender_staff_id",
    "chatbotUserId": "chatbot_user_id",
    "robotCode": "robot_code",
    "isInAtList": "is_in_at_list",
}


class DingTalkMessageConnector:
    """Parse DingTalk robot messages into chat_message drafts."""

    name = MESSAGES

    def __init__(self, config: Mapping[str, Any]):
        check_config(self.name, config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the draft of one robot message.

        Raises:
            MalformedPayload: not UTF-8 JSON, or a field is missing or of the
                wrong type (the message names it).
        """
        label = record_label(self.name, record)
        message = load_json_object(record.payload, label=label)
        return [message_draft(message, label=label)]


class DingTalkCallbackConnector:
    """Parse decrypted DingTalk event-subscription callbacks."""

    name = CALLBACK

    def __init__(self, config: Mapping[str, Any]):
        check_config(self.name, config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the drafts of one decrypted event: a robot message, else none.

        Raises:
            MalformedPayload: not a UTF-8 JSON object carrying ``EventType`` or a
                robot message.
        """
        label = record_label(self.name, record)
        event = load_json_object(record.payload, label=label, what="the event")
        if "msgtype" in event and "msgId" in event:
            return [message_draft(event, label=label)]
        require_str(event, "EventType", label=label)
        # URL checks and org/group/approval events carry no conversation.
        return []


def message_draft(message: dict[str, Any], *, label: str) -> EventDraft:
    """Build the chat_message draft of one robot message.

    Raises:
        MalformedPayload: a field is missing or of the wrong type.
    """
    msgid = id_text(message, "msgId", label=label)
    conversation = require_str(message, "conversationId", label=label)
    sender = _sender(message, label=label)
    occurred_at = read_time(message.get("createAt"), field="createAt", label=label)
    msgtype = require_str(message, "msgtype", label=label)

    text, details = _read_body(message, msgtype, label=label)
    attributes: dict[str, Any] = {
        "msgtype": msgtype,
        **picked(message, _MESSAGE_DETAILS),
        **details,
    }
    attributes["is_group"] = str(message.get("conversationType")) == "2"
    mentions = _mentioned_staff(message)
    if mentions:
        attributes["mentioned_staff_ids"] = mentions
    return EventDraft(
        source=MESSAGES,
        source_id=msgid,
        event_type=EventType.CHAT_MESSAGE,
        occurred_at=occurred_at,
        channel=Channel.DINGTALK,
        sender=f"dingtalk:{sender}",
        thread_ref=f"dingtalk_room:{conversation}",
        text=text,
        attributes=attributes,
    )


def _sender(message: dict[str, Any], *, label: str) -> str:
    staff = optional_str(message, "senderStaffId", label=label)
    if staff:
        return staff
    if message.get("senderId") in (None, ""):
        raise MalformedPayload(
            f"{label}: fields 'senderStaffId' and 'senderId' are both missing; "
            "expected the sender's staff id or DingTalk id",
            field="senderStaffId",
        )
    return require_str(message, "senderId", label=label)


def _read_body(
    message: dict[str, Any], msgtype: str, *, label: str
) -> tuple[str | None, dict[str, Any]]:
    if msgtype == "text":
        body = require_object(message, "text", label=label)
        return require_str(body, "content", label=f"{label} text"), {}
    if msgtype == "richText":
        content = require_object(message, "content", label=label)
        return _read_rich_text(content, label=f"{label} content")
    if msgtype in _CONTENT_DETAILS:
        content = require_object(message, "content", label=label)
        details = picked(content, _CONTENT_DETAILS[msgtype])
        if msgtype == "audio":
            spoken = optional_str(content, "recognition", label=f"{label} content")
            details["is_transcribed"] = spoken is not None
            return spoken, details
        return None, details
    unknown: Any = message.get("content", message.get(msgtype))
    fields = sorted(str(key) for key in unknown) if isinstance(unknown, dict) else []
    return None, {"is_recognised": False, "body_fields": fields}


def _read_rich_text(
    content: dict[str, Any], *, label: str
) -> tuple[str | None, dict[str, Any]]:
    texts: list[str | None] = []
    pictures = 0
    for index, part in enumerate(require_list(content, "richText", label=label)):
        if not isinstance(part, dict):
            raise MalformedPayload(
                f"{label} richText[{index}]: expected an object with text or type",
                field=f"richText[{index}]",
            )
        if part.get("type") == "picture":
            pictures += 1
        else:
            texts.append(optional_str(part, "text", label=f"{label} richText"))
    return join_text(*texts), {"picture_count": pictures}


def _mentioned_staff(message: dict[str, Any]) -> list[str]:
    users = message.get("atUsers")
    if not isinstance(users, list):
        return []
    return [
        user["staffId"]
        for user in users
        if isinstance(user, dict) and isinstance(user.get("staffId"), str)
    ]


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Split a message export (``.jsonl`` or a ``.json`` list) into records.

    Raises:
        InvalidInput: the file cannot be read or is not of that shape.
    """
    return read_json_records(path)


__all__ = [
    "URL_CHECKS",
    "DingTalkCallbackConnector",
    "DingTalkMessageConnector",
    "message_draft",
    "read_records",
]
