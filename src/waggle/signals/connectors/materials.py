"""The materials connector: views of tracked links as ``material_opened`` events.

Waggle itself is the source: when someone opens ``/t/<token>``, the viewer
route writes a JSON snapshot of the view and runs it through the pipeline like
any other record, so it is kept raw, matched and audited the same way::

    {"view_id": 12, "link_id": 3, "token_prefix": "Qm3x9a",
     "material": {"id": 1, "title": "星河二期方案", "kind": "deck", "page_count": 8},
     "owner_ref": "employee:E0001", "contact_ref": "contact:C0001",
     "opportunity_ref": "opportunity:O0001", "viewer": "3f9a0c1d2e4b5a69",
     "opened_at": "2026-03-02T09:00:00+00:00",
     "pages": {"1": 15, "2": 8}, "total_dwell_seconds": 23}

The contact (when the link names one) is the sender: the customer did the
reading; the employee who owns the link is the recipient, hence the actor.
Only a prefix of the link's token travels: the whole token is a credential.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from waggle.core.errors import InvalidInput
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

NAME = "materials"
SOURCE = "materials"
TOKEN_PREFIX_LENGTH = 6
VIEWER_LENGTH = 16
_MATERIAL_FIELDS = ("id", "title", "kind", "page_count")


class MaterialViewConnector:
    """Reads the view snapshots the tracked-link viewer writes."""

    name = NAME

    def __init__(self, config: Mapping[str, Any]):
        if config:
            raise InvalidInput(
                f"the {NAME} connector takes no settings, got {sorted(config)}",
                connector=NAME,
            )

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the one ``material_opened`` event of a view snapshot.

        Raises:
            MalformedPayload: not a JSON object, or a field is missing or wrong.
        """
        where = record.locator or "material view"
        body = _object(record.payload, where)
        material = body.get("material")
        if not isinstance(material, dict):
            raise MalformedPayload(f"{where}: material must be an object")
        view_id = _integer(body, "view_id", where)
        attributes = view_attributes(
            material_id=_integer(material, "id", where),
            title=_string(material, "title", where),
            kind=_string(material, "kind", where),
            page_count=_integer(material, "page_count", where),
            link_id=_integer(body, "link_id", where),
            token_prefix=_string(body, "token_prefix", where)[:TOKEN_PREFIX_LENGTH],
            view_id=view_id,
            viewer=_string(body, "viewer", where)[:VIEWER_LENGTH],
            pages=_pages(body.get("pages"), where),
        )
        return [
            EventDraft(
                source=SOURCE,
                source_id=f"view:{view_id}",
                event_type=EventType.MATERIAL_OPENED,
                occurred_at=_instant(body.get("opened_at"), where),
                channel=Channel.MATERIAL,
                sender=_optional(body, "contact_ref", where),
                recipients=(_string(body, "owner_ref", where),),
                opportunity_ref=_optional(body, "opportunity_ref", where),
                attributes=attributes,
            )
        ]


def view_attributes(
    *,
    material_id: int,
    title: str,
    kind: str,
    page_count: int,
    link_id: int,
    token_prefix: str,
    view_id: int,
    viewer: str,
    pages: Mapping[str, int],
) -> dict[str, Any]:
    """Return the event attributes of a view with dwell ``pages`` so far.

    The viewer route's beacons call this too, so the stored event always holds
    the same shape whether it was just ingested or updated since.
    """
    ordered = {key: int(pages[key]) for key in sorted(pages, key=int)}
    return {
        "material_id": material_id,
        "title": title,
        "kind": kind,
        "page_count": page_count,
        "link_id": link_id,
        "token_prefix": token_prefix,
        "view_id": view_id,
        "viewer": viewer,
        "pages": ordered,
        "pages_viewed": len(ordered),
        "max_page": max(map(int, ordered), default=0),
        "total_dwell_seconds": sum(ordered.values()),
    }


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


def _integer(body: Mapping[str, Any], key: str, where: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedPayload(f"{where}: {key} must be a non-negative integer")
    return value


def _string(body: Mapping[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{where}: {key} must be a non-empty string")
    return value


def _optional(body: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if body.get(key) is None else _string(body, key, where)


def _pages(value: Any, where: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedPayload(f"{where}: pages must map page numbers to seconds")
    pages: dict[str, int] = {}
    for key, seconds in value.items():
        if not str(key).isdigit() or int(key) < 1:
            raise MalformedPayload(f"{where}: pages key {key!r} is not a page number")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise MalformedPayload(f"{where}: pages[{key}] must be whole seconds")
        pages[str(int(key))] = seconds
    return pages


def _instant(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedPayload(f"{where}: opened_at must be ISO 8601 text")
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedPayload(f"{where}: opened_at={value!r} is not ISO 8601") from exc
    if instant.tzinfo is None:
        raise MalformedPayload(f"{where}: opened_at={value!r} has no UTC offset")
    return instant.astimezone(dt.UTC)


__all__ = ["MaterialViewConnector", "view_attributes"]
