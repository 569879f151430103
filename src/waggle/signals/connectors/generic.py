"""The generic connector: events already in Waggle's own JSON shape.

For systems without a connector of their own (an in-house ticketing tool, a
quoting system): each record is one JSON object with the fields of an
:class:`~waggle.signals.events.EventDraft`::

    {"source": "ticketing", "source_id": "T-1001", "event_type": "service_ticket",
     "occurred_at": "2026-03-01T09:30:00+08:00", "channel": "crm",
     "sender": "contact:C0001", "recipients": ["employee:E0001"],
     "account_ref": "account:A0001", "text": "...", "attributes": {...}}

``occurred_at`` is ISO 8601 with an offset, or epoch seconds or milliseconds.
``read_records`` takes a JSON Lines file or a JSON array.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from waggle.signals.errors import MalformedPayload
from waggle.signals.events import (
    Channel,
    EventDraft,
    EventType,
    RawRecord,
    millis_to_datetime,
)

NAME = "generic"
_REQUIRED = ("source", "source_id", "event_type", "occurred_at")


class GenericEventConnector:
    """Reads events written in Waggle's own JSON shape."""

    name = NAME

    def __init__(self, config: Mapping[str, Any]):
        self.default_source = str(config.get("source") or "") or None

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the one event the record holds.

        Raises:
            MalformedPayload: not a JSON object, or a field is missing or wrong.
        """
        where = record.locator or "record"
        body = _object(record.payload, where)
        if self.default_source and "source" not in body:
            body["source"] = self.default_source
        missing = [name for name in _REQUIRED if body.get(name) in (None, "")]
        if missing:
            raise MalformedPayload(f"{where}: missing {', '.join(missing)}")
        return [_draft(body, where)]


def _object(payload: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedPayload(f"{where}: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise MalformedPayload(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(body, dict):
        raise MalformedPayload(f"{where}: expected a JSON object")
    return body


def _draft(body: dict[str, Any], where: str) -> EventDraft:
    recipients = body.get("recipients") or []
    attributes = body.get("attributes") or {}
    if not isinstance(recipients, list) or not all(
        isinstance(item, str) for item in recipients
    ):
        raise MalformedPayload(f"{where}: recipients must be a list of references")
    if not isinstance(attributes, dict):
        raise MalformedPayload(f"{where}: attributes must be an object")
    return EventDraft(
        source=_text(body, "source", where),
        source_id=_text(body, "source_id", where),
        event_type=_choice(EventType, {"event_type": body.get("event_type")}, where),
        occurred_at=_instant(body["occurred_at"], where),
        channel=_choice(Channel, {"channel": body.get("channel") or "crm"}, where),
        sender=_optional_text(body, "sender", where),
        recipients=tuple(recipients),
        account_ref=_optional_text(body, "account_ref", where),
        opportunity_ref=_optional_text(body, "opportunity_ref", where),
        thread_ref=_optional_text(body, "thread_ref", where),
        text=_optional_text(body, "text", where),
        attributes=attributes,
        is_automatic=bool(body.get("is_automatic", True)),
    )


def _text(body: Mapping[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise MalformedPayload(f"{where}: {key} must be a string")
    return str(value)


def _optional_text(body: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if body.get(key) in (None, "") else _text(body, key, where)


def _choice(kind: Any, named: Mapping[str, Any], where: str) -> Any:
    ((key, value),) = named.items()
    try:
        return kind(value)
    except ValueError as exc:
        names = ", ".join(member.value for member in kind)
        raise MalformedPayload(
            f"{where}: {key}={value!r} is not one of {names}"
        ) from exc


def _instant(value: Any, where: str) -> dt.datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return millis_to_datetime(value, field_name="occurred_at", record=where)
    if not isinstance(value, str):
        raise MalformedPayload(f"{where}: occurred_at must be ISO 8601 or epoch time")
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedPayload(
            f"{where}: occurred_at={value!r} is not ISO 8601"
        ) from exc
    if instant.tzinfo is None:
        raise MalformedPayload(f"{where}: occurred_at={value!r} has no UTC offset")
    return instant.astimezone(dt.UTC)


def draft_to_json(draft: EventDraft) -> bytes:
    """Write ``draft`` in this connector's shape (the inverse of ``parse``)."""
    body = {
        "source": draft.source,
        "source_id": draft.source_id,
        "event_type": str(draft.event_type),
        "occurred_at": draft.occurred_at.isoformat(),
        "channel": str(draft.channel),
        "sender": draft.sender,
        "recipients": list(draft.recipients),
        "account_ref": draft.account_ref,
        "opportunity_ref": draft.opportunity_ref,
        "thread_ref": draft.thread_ref,
        "text": draft.text,
        "attributes": dict(draft.attributes),
        "is_automatic": draft.is_automatic,
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def read_records(path: Path, config: Mapping[str, Any]) -> Iterator[RawRecord]:
    """Yield one record per JSON line, or per element of a JSON array.

    Raises:
        InvalidInput: the file cannot be read.
    """
    data = path.read_bytes()
    if data.lstrip().startswith(b"["):
        try:
            items = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedPayload(f"{path.name}: not a JSON array") from exc
        for number, item in enumerate(items, start=1):
            payload = json.dumps(item, ensure_ascii=False).encode("utf-8")
            yield RawRecord(payload, f"{path.name} item {number}")
        return
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield RawRecord(line, f"{path.name} line {number}")
