"""WeCom (企业微信) connectors: the chat archive and the app callback.

``wecom_archive`` reads one message of 会话内容存档 as the Finance SDK returns
it after decryption (``msgid``, ``action``, ``from``, ``tolist``, ``roomid``,
``msgtime`` in ms, ``msgtype`` and a body under the type's key). Every message
becomes one ``chat_message`` draft:

- ``source_id`` is ``msgid``; the sender ``wecom:<from>`` and the recipients
  ``wecom:<each of tolist>`` whatever the id (external ``wo``/``wm``, robots
  ``wb``; ``sender_kind`` says which); ``thread_ref`` ``wecom_room:<roomid>``
  for group chats.
- ``text`` is what someone wrote: the content of text and markdown, the text
  parts of ``mixed``, title and description of ``link``/``weapp``/``news``,
  the titles of todo, vote, meeting, calendar, docmsg, the red-packet wish.
  Media, files, cards, locations and consent messages carry no text; their
  facts (``file_name``, ``file_size``, ``md5sum``, ``play_length_seconds``,
  ``url``...) go into ``attributes`` next to ``msgtype``.
- ``action: recall`` (msgtype ``revoke``) is kept as a chat_message with
  ``is_recall`` and ``recalled_msgid``, so the pipeline can mark the original.
- ``action: switch`` (a member switching enterprise log-in) is no chat: the
  record is accepted and yields no draft.
- A msgtype this module does not know is still a message between these people
  at that time: it is accepted with ``is_recognised: False`` and the body's
  field names, rather than quarantined every time WeCom adds a type.

``wecom_callback`` reads one decrypted app-callback message (the inner XML):
text, image, voice, video, location and link messages become ``chat_message``
drafts from ``wecom:<FromUserName>`` (``source_id`` = ``MsgId``);
``change_external_contact`` events (a customer added, edited, deleted...) and
``change_external_chat`` events become ``activity_logged`` drafts with the
``change_type`` and, for contacts, the employee as sender and the customer as
recipient; their ``source_id`` is a hash of all the event's fields. Every other
event (``msgaudit_notify``, menu clicks, org-chart changes) is accepted with no
draft. The JSON flavour (智能机器人) is quarantined: it is not supported yet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waggle.signals.connectors._chat import (
    check_config,
    id_text,
    join_text,
    load_json,
    load_json_object,
    optional_object,
    optional_str,
    picked,
    read_json_records,
    read_time,
    record_label,
    require_list,
    require_str,
    stable_id,
    string_list,
)
from waggle.signals.crypto.wecom import parse_xml_message
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

ARCHIVE = "wecom_archive"
CALLBACK = "wecom_callback"


@dataclass(frozen=True, slots=True)
class _Body:
    """How one archive msgtype reads: its body key, text fields, detail fields."""

    key: str
    text: tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)


_MEDIA = {"md5sum": "md5sum", "sdkfileid": "sdkfileid"}
_REDPACKET = _Body(
    "redpacket",
    ("wish",),
    {"type": "redpacket_type", "totalcnt": "redpacket_count", "totalamount": "amount"},
)

ARCHIVE_TYPES: dict[str, _Body] = {
    "text": _Body("text", ("content",)),
    "markdown": _Body("info", ("content",)),
    "image": _Body("image", (), {"filesize": "file_size", **_MEDIA}),
    "revoke": _Body("revoke", (), {"pre_msgid": "recalled_msgid"}),
    "agree": _Body("agree", (), {"userid": "consent_userid", "agree_time": "at"}),
    "disagree": _Body(
        "disagree", (), {"userid": "consent_userid", "disagree_time": "at"}
    ),
    "voice": _Body(
        "voice",
        (),
        {"voice_size": "file_size", "play_length": "play_length_seconds", **_MEDIA},
    ),
    "video": _Body(
        "video",
        (),
        {"filesize": "file_size", "play_length": "play_length_seconds", **_MEDIA},
    ),
    "card": _Body("card", (), {"corpname": "card_corp_name", "userid": "card_userid"}),
    "location": _Body(
        "location",
        (),
        {
            "title": "location_title",
            "address": "address",
            "longitude": "longitude",
            "latitude": "latitude",
            "zoom": "zoom",
        },
    ),
    "emotion": _Body(
        "emotion",
        (),
        {"type": "emotion_type", "imagesize": "file_size", **_MEDIA},
    ),
    "file": _Body(
        "file",
        (),
        {"filename": "file_name", "fileext": "file_ext", "filesize": "file_size"}
        | _MEDIA,
    ),
    "link": _Body(
        "link",
        ("title", "description"),
        {"title": "link_title", "link_url": "url", "image_url": "image_url"},
    ),
    "weapp": _Body(
        "weapp",
        ("title", "description"),
        {"title": "weapp_title", "username": "weapp_id", "displayname": "weapp_name"},
    ),
    "chatrecord": _Body("chatrecord", ("title",)),
    "todo": _Body("todo", ("title", "content")),
    "vote": _Body(
        "vote", ("votetitle",), {"votetype": "vote_type", "voteid": "vote_id"}
    ),
    "collect": _Body(
        "collect", ("title",), {"room_name": "room_name", "creator": "collect_creator"}
    ),
    "redpacket": _REDPACKET,
    "external_redpacket": _REDPACKET,
    "meeting": _Body(
        "meeting",
        ("topic", "remarks"),
        {"starttime": "starts_at", "endtime": "ends_at", "meetingid": "meeting_id"},
    ),
    "docmsg": _Body("doc", ("title",), {"link_url": "url", "doc_creator": "creator"}),
    "calendar": _Body(
        "calendar",
        ("title", "remarks"),
        {"starttime": "starts_at", "endtime": "ends_at", "place": "place"},
    ),
    "meeting_voice_call": _Body(
        "meeting_voice_call", (), {"endtime": "ends_at", "sdkfileid": "sdkfileid"}
    ),
    "voip_doc_share": _Body(
        "voip_doc_share",
        (),
        {"filename": "file_name", "filesize": "file_size"} | _MEDIA,
    ),
    "sphfeed": _Body(
        "sphfeed", ("feed_desc",), {"feed_type": "feed_type", "sph_name": "feed_author"}
    ),
    "voiptext": _Body(
        "voiptext",
        (),
        {"callduration": "call_duration_seconds", "invitetype": "invite_type"},
    ),
    # mixed and news have lists of parts, read by their own functions below.
    "mixed": _Body("mixed"),
    "news": _Body("info"),
}
_ACTIONS = frozenset({"send", "recall"})


class WeComArchiveConnector:
    """Parse decrypted 会话内容存档 messages into chat_message drafts."""

    name = ARCHIVE

    def __init__(self, config: Mapping[str, Any]):
        check_config(self.name, config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the draft of one archive message (none for ``switch``).

        Raises:
            MalformedPayload: not UTF-8 JSON, or a field is missing or of the
                wrong type (the message names it).
        """
        label = record_label(self.name, record)
        message = load_json_object(record.payload, label=label)
        action = require_str(message, "action", label=label)
        if action == "switch":
            return []
        if action not in _ACTIONS:
            raise MalformedPayload(
                f"{label}: field 'action' is {action!r}; expected send, recall "
                "or switch",
                field="action",
            )
        return [_archive_draft(message, action=action, label=label)]


def _archive_draft(message: dict[str, Any], *, action: str, label: str) -> EventDraft:
    msgid = id_text(message, "msgid", label=label)
    sender = require_str(message, "from", label=label)
    recipients = string_list(message, "tolist", label=label)
    room = optional_str(message, "roomid", label=label)
    occurred_at = read_time(message.get("msgtime"), field="msgtime", label=label)
    msgtype = require_str(message, "msgtype", label=label)

    text, details = _read_body(message, msgtype, label=label)
    attributes: dict[str, Any] = {
        "msgtype": msgtype,
        "action": action,
        "sender_kind": _sender_kind(sender),
        "is_group": room is not None,
        **details,
    }
    if action == "recall" or msgtype == "revoke":
        attributes["is_recall"] = True
    return EventDraft(
        source=ARCHIVE,
        source_id=msgid,
        event_type=EventType.CHAT_MESSAGE,
        occurred_at=occurred_at,
        channel=Channel.WECOM,
        sender=f"wecom:{sender}",
        recipients=tuple(dict.fromkeys(f"wecom:{to}" for to in recipients)),
        thread_ref=f"wecom_room:{room}" if room else None,
        text=text,
        attributes=attributes,
    )


def _sender_kind(user_id: str) -> str:
    # WeCom documents external_userid prefixes: wo/wm customers, wb robots.
    if user_id.startswith(("wo", "wm")):
        return "external"
    return "robot" if user_id.startswith("wb") else "member"


def _read_body(
    message: dict[str, Any], msgtype: str, *, label: str
) -> tuple[str | None, dict[str, Any]]:
    spec = ARCHIVE_TYPES.get(msgtype)
    if spec is None:
        return None, _unrecognised(message.get(msgtype))
    body = optional_object(message, spec.key, label=label)
    if body is None:
        raise MalformedPayload(
            f"{label}: field {spec.key!r} is missing; expected the body of a "
            f"{msgtype} message",
            field=spec.key,
        )
    if msgtype == "mixed":
        return _read_mixed(body, label=f"{label} mixed")
    if msgtype == "news":
        return _read_news(body, label=f"{label} news")
    if msgtype == "text":
        return require_str(body, "content", label=f"{label} text"), {}
    texts = [
        optional_str(body, name, label=f"{label} {spec.key}") for name in spec.text
    ]
    details = picked(body, spec.details)
    if msgtype == "chatrecord" and isinstance(body.get("item"), list):
        details["item_count"] = len(body["item"])
    return join_text(*texts), details


def _unrecognised(body: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"is_recognised": False}
    if isinstance(body, dict):
        details["body_fields"] = sorted(str(key) for key in body)
    return details


def _read_mixed(
    body: dict[str, Any], *, label: str
) -> tuple[str | None, dict[str, Any]]:
    """Join the text parts of a mixed message; list every part's type and facts."""
    texts: list[str | None] = []
    parts: list[dict[str, Any]] = []
    for index, item in enumerate(require_list(body, "item", label=label)):
        item_label = f"{label} item {index}"
        if not isinstance(item, dict):
            raise MalformedPayload(
                f"{item_label}: expected an object with type and content",
                field=f"item[{index}]",
            )
        part_type = require_str(item, "type", label=item_label)
        content = _part_content(item.get("content"), label=item_label)
        part_spec = ARCHIVE_TYPES.get(part_type)
        if part_type in ("text", "markdown"):
            texts.append(optional_str(content, "content", label=item_label))
        details = picked(content, part_spec.details) if part_spec else {}
        parts.append({"type": part_type, **details})
    return join_text(*texts), {"parts": parts}


def _part_content(content: Any, *, label: str) -> dict[str, Any]:
    # The SDK sends each part's content as a JSON string; some exports inline it.
    if isinstance(content, dict):
        return content
    if isinstance(content, str):
        return load_json_object(content, label=label, what="the part content")
    raise MalformedPayload(
        f"{label}: field 'content' is {type(content).__name__}; expected the "
        "part as a JSON string",
        field="content",
    )


def _read_news(
    body: dict[str, Any], *, label: str
) -> tuple[str | None, dict[str, Any]]:
    texts: list[str | None] = []
    urls: list[str] = []
    for index, item in enumerate(require_list(body, "item", label=label)):
        if not isinstance(item, dict):
            raise MalformedPayload(
                f"{label} item {index}: expected an object with title and url",
                field=f"item[{index}]",
            )
        item_label = f"{label} item {index}"
        texts.append(optional_str(item, "title", label=item_label))
        texts.append(optional_str(item, "description", label=item_label))
        url = optional_str(item, "url", label=item_label)
        if url:
            urls.append(url)
    return join_text(*texts), {"urls": urls}


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Split an archive export (``.jsonl`` or a ``.json`` list) into records.

    Raises:
        InvalidInput: the file cannot be read or is not of that shape.
    """
    return read_json_records(path)


# ------------------------------------------------------------------ callback

_CALLBACK_MESSAGES: dict[str, dict[str, str]] = {
    "text": {},
    "image": {"PicUrl": "pic_url", "MediaId": "media_id"},
    "voice": {"MediaId": "media_id", "Format": "format"},
    "video": {"MediaId": "media_id", "ThumbMediaId": "thumb_media_id"},
    "location": {
        "Location_X": "latitude",
        "Location_Y": "longitude",
        "Scale": "scale",
        "Label": "address",
    },
    "link": {"Title": "link_title", "Url": "url", "PicUrl": "pic_url"},
}
_CONTACT_ACTIVITIES = {
    "add_external_contact": "external_contact_added",
    "add_half_external_contact": "external_contact_half_added",
    "edit_external_contact": "external_contact_edited",
    "del_external_contact": "external_contact_deleted_by_member",
    "del_follow_user": "member_deleted_by_external_contact",
    "transfer_fail": "external_contact_transfer_failed",
}


class WeComCallbackConnector:
    """Parse decrypted WeCom app-callback messages (XML) into drafts."""

    name = CALLBACK

    def __init__(self, config: Mapping[str, Any]):
        check_config(self.name, config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the drafts of one decrypted callback message.

        Raises:
            MalformedPayload: not the XML of an app callback, an unsupported
                MsgType, or a missing field (the message names it).
        """
        label = record_label(self.name, record)
        fields = _callback_fields(record.payload, label=label)
        msgtype = require_str(fields, "MsgType", label=label)
        if msgtype == "event":
            return _event_drafts(fields, label=label)
        if msgtype not in _CALLBACK_MESSAGES:
            raise MalformedPayload(
                f"{label}: MsgType {msgtype!r} is not supported; expected event or "
                f"one of {', '.join(sorted(_CALLBACK_MESSAGES))}",
                field="MsgType",
            )
        return [_message_draft(fields, msgtype, label=label)]


def _callback_fields(payload: bytes, *, label: str) -> dict[str, str]:
    if payload.lstrip().startswith(b"{"):
        load_json(payload, label=label, what="the decrypted message")
        raise MalformedPayload(
            f"{label}: the JSON flavour of WeCom callbacks (智能机器人) is not "
            "supported; expected the XML message of an app callback",
            reason="unsupported_format",
        )
    try:
        return parse_xml_message(payload, what=f"{label}: the decrypted message")
    except (ValueError, LookupError) as exc:
        # expat raises these (not ParseError) for some declared encodings.
        raise MalformedPayload(
            f"{label}: the decrypted message is not readable XML ({exc}); "
            "expected UTF-8 <xml>...</xml>",
        ) from exc


def _message_draft(fields: dict[str, str], msgtype: str, *, label: str) -> EventDraft:
    sender = require_str(fields, "FromUserName", label=label)
    occurred_at = read_time(fields.get("CreateTime"), field="CreateTime", label=label)
    msgid = require_str(fields, "MsgId", label=label)
    if msgtype == "text":
        text: str | None = require_str(fields, "Content", label=label)
    else:
        text = join_text(fields.get("Title"), fields.get("Description"))

    attributes = {
        "msgtype": msgtype,
        "agent_id": fields.get("AgentID") or None,
        "corp_id": fields.get("ToUserName") or None,
        **picked(fields, _CALLBACK_MESSAGES[msgtype]),
    }
    return EventDraft(
        source=CALLBACK,
        source_id=msgid,
        event_type=EventType.CHAT_MESSAGE,
        occurred_at=occurred_at,
        channel=Channel.WECOM,
        sender=f"wecom:{sender}",
        text=text,
        attributes={key: value for key, value in attributes.items() if value},
    )


def _event_drafts(fields: dict[str, str], *, label: str) -> list[EventDraft]:
    event = require_str(fields, "Event", label=label)
    if event == "change_external_contact":
        return [_contact_draft(fields, label=label)]
    if event == "change_external_chat":
        return [_group_chat_draft(fields, label=label)]
    # Other events (msgaudit_notify, menus, org chart) are no behaviour.
    return []


def _contact_draft(fields: dict[str, str], *, label: str) -> EventDraft:
    change_type = require_str(fields, "ChangeType", label=label)
    member = require_str(fields, "UserID", label=label)
    customer = require_str(fields, "ExternalUserID", label=label)
    occurred_at = read_time(fields.get("CreateTime"), field="CreateTime", label=label)

    attributes = {
        "event": "change_external_contact",
        "change_type": change_type,
        "activity": _CONTACT_ACTIVITIES.get(change_type, change_type),
        **picked(
            fields,
            {"State": "state", "Source": "deletion_source", "FailReason": "reason"},
        ),
    }
    return EventDraft(
        source=CALLBACK,
        source_id=stable_id("event", fields),
        event_type=EventType.ACTIVITY_LOGGED,
        occurred_at=occurred_at,
        channel=Channel.WECOM,
        sender=f"wecom:{member}",
        recipients=(f"wecom:{customer}",),
        attributes=attributes,
    )


def _group_chat_draft(fields: dict[str, str], *, label: str) -> EventDraft:
    change_type = require_str(fields, "ChangeType", label=label)
    chat = require_str(fields, "ChatId", label=label)
    occurred_at = read_time(fields.get("CreateTime"), field="CreateTime", label=label)

    attributes = {
        "event": "change_external_chat",
        "change_type": change_type,
        "activity": f"customer_group_{change_type}",
        **picked(
            fields,
            {
                "UpdateDetail": "update_detail",
                "JoinScene": "join_scene",
                "QuitScene": "quit_scene",
                "MemChangeCnt": "member_change_count",
            },
        ),
    }
    return EventDraft(
        source=CALLBACK,
        source_id=stable_id("event", fields),
        event_type=EventType.ACTIVITY_LOGGED,
        occurred_at=occurred_at,
        channel=Channel.WECOM,
        thread_ref=f"wecom_room:{chat}",
        attributes=attributes,
    )


__all__ = [
    "ARCHIVE_TYPES",
    "WeComArchiveConnector",
    "WeComCallbackConnector",
    "read_records",
]
