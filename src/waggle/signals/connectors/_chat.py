"""What the chat connectors (WeCom, DingTalk, Feishu) share.

Strict readers for decoded JSON fields, so that every connector names the
record, the field and the expectation the same way; epoch times that tolerate
seconds where milliseconds are documented; and the JSON-lines / JSON-list file
reader behind each module's ``read_records``.

Text encoding: every platform documents UTF-8, so bytes that are not UTF-8
(a GBK export, say) are refused with a reason rather than guessed at; guessing
a charset on a 200-byte chat line is wrong often enough to corrupt Chinese text
silently. Convert such exports to UTF-8 before importing them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from waggle.core.errors import InvalidInput
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import RawRecord, millis_to_datetime

# Epoch values beyond this cannot be milliseconds before 2100 (4.1e12) and are
# refused before float() could overflow on a 400-digit integer.
_LARGEST_EPOCH = 10**15


def record_label(connector: str, record: RawRecord) -> str:
    """Return how messages name a record: connector and locator when known."""
    return f"{connector} record {record.locator}" if record.locator else connector


def check_config(connector: str, config: Mapping[str, Any]) -> None:
    """Check a chat connector's configuration, which has no options of its own.

    Other keys are ignored on purpose: a callback source keeps its platform
    settings (token, AES key, receiver id) in the same mapping, and the
    pipeline passes that mapping to the connector as well.

    Raises:
        InvalidInput: ``config`` is not a mapping.
    """
    if not isinstance(config, Mapping):
        raise InvalidInput(
            f"connector {connector}: configuration must be a mapping, got "
            f"{type(config).__name__}",
            connector=connector,
        )


def decode_utf8(data: bytes, *, label: str) -> str:
    """Return ``data`` as text.

    Raises:
        MalformedPayload: ``data`` is not UTF-8 (GBK exports are refused).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload(
            f"{label}: byte {exc.start} is not UTF-8; expected UTF-8 JSON as the "
            "platform exports it (convert GBK exports to UTF-8 first)",
            reason="not_utf8",
        ) from exc


def load_json(text: str | bytes, *, label: str, what: str = "the record") -> Any:
    """Parse JSON, wrapping every decoder failure.

    Raises:
        MalformedPayload: not UTF-8, not JSON, or nested too deeply to parse.
    """
    if isinstance(text, bytes):
        text = decode_utf8(text, label=label)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedPayload(
            f"{label}: {what} is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}); expected one JSON object",
            reason="bad_json",
        ) from exc
    except RecursionError as exc:
        raise MalformedPayload(
            f"{label}: {what} is nested too deeply; expected a flat JSON object",
            reason="bad_json",
        ) from exc


def load_json_object(
    data: str | bytes, *, label: str, what: str = "the record"
) -> dict[str, Any]:
    """Parse one JSON object.

    Raises:
        MalformedPayload: not UTF-8, not JSON, or JSON but not an object.
    """
    value = load_json(data, label=label, what=what)
    if not isinstance(value, dict):
        raise MalformedPayload(
            f"{label}: {what} is JSON {type(value).__name__}; expected an object",
            reason="bad_json",
        )
    return value


def _missing(label: str, key: str, expected: str) -> MalformedPayload:
    return MalformedPayload(
        f"{label}: field {key!r} is missing; expected {expected}", field=key
    )


def _wrong(label: str, key: str, value: Any, expected: str) -> MalformedPayload:
    return MalformedPayload(
        f"{label}: field {key!r} is {type(value).__name__} {_preview(value)}; "
        f"expected {expected}",
        field=key,
    )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def require_str(data: Mapping[str, Any], key: str, *, label: str) -> str:
    """Return ``data[key]`` when it is a non-empty string.

    Raises:
        MalformedPayload: the field is missing, empty or not a string.
    """
    value = data.get(key)
    if value is None:
        raise _missing(label, key, "a non-empty string")
    if not isinstance(value, str) or not value:
        raise _wrong(label, key, value, "a non-empty string")
    return value


def optional_str(data: Mapping[str, Any], key: str, *, label: str) -> str | None:
    """Return ``data[key]`` as a string, ``None`` when absent, null or empty.

    Raises:
        MalformedPayload: the field holds something other than a string.
    """
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _wrong(label, key, value, "a string")
    return value


def id_text(data: Mapping[str, Any], key: str, *, label: str) -> str:
    """Return an identifier that platforms send as a string or an integer.

    Raises:
        MalformedPayload: the field is missing, empty, or neither kind.
    """
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return require_str(data, key, label=label)


def require_object(
    data: Mapping[str, Any], key: str, *, label: str, expected: str = "an object"
) -> dict[str, Any]:
    """Return ``data[key]`` when it is a JSON object.

    Raises:
        MalformedPayload: the field is missing or not an object.
    """
    value = data.get(key)
    if value is None:
        raise _missing(label, key, expected)
    if not isinstance(value, dict):
        raise _wrong(label, key, value, expected)
    return value


def optional_object(
    data: Mapping[str, Any], key: str, *, label: str
) -> dict[str, Any] | None:
    """Return ``data[key]`` when it is an object, ``None`` when absent or null.

    Raises:
        MalformedPayload: the field holds something other than an object.
    """
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(label, key, value, "an object")
    return value


def require_list(data: Mapping[str, Any], key: str, *, label: str) -> list[Any]:
    """Return ``data[key]`` when it is a JSON array.

    Raises:
        MalformedPayload: the field is missing or not an array.
    """
    value = data.get(key)
    if value is None:
        raise _missing(label, key, "an array")
    if not isinstance(value, list):
        raise _wrong(label, key, value, "an array")
    return value


def string_list(data: Mapping[str, Any], key: str, *, label: str) -> list[str]:
    """Return ``data[key]`` when it is an array of non-empty strings.

    Raises:
        MalformedPayload: the field is missing, not an array, or holds a
            non-string or empty entry.
    """
    values = require_list(data, key, label=label)
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise _wrong(label, f"{key}[{index}]", value, "a non-empty string")
    return values


def scalar(value: Any) -> str | int | float | bool | None:
    """Return ``value`` when it is a JSON scalar, else ``None``.

    Digit strings stay strings: platforms send sizes both ways, and attributes
    keep what was sent (numbers are normalised by :func:`number`).
    """
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    return None


def number(value: Any) -> int | float | None:
    """Return a size or duration sent as a number or a digit string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) if len(value) <= 18 else None
    return None


def read_time(value: Any, *, field: str, label: str) -> dt.datetime:
    """Read an epoch time in milliseconds or seconds (number or digit string).

    Raises:
        MalformedPayload: the value is missing, not a number, or outside
            2000-2100.
    """
    if value is None:
        raise _missing(label, field, "an epoch time in milliseconds")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _wrong(label, field, value, "an epoch time in milliseconds")
    if isinstance(value, str) and not (value.isascii() and value.strip().isdigit()):
        raise _wrong(label, field, value, "an epoch time in milliseconds")
    magnitude = abs(int(value)) if isinstance(value, str) else abs(value)
    if magnitude != magnitude or magnitude > _LARGEST_EPOCH:
        raise MalformedPayload(
            f"{label}: {field}={_preview(value)} lies outside 2000-2100", field=field
        )
    return millis_to_datetime(value, field_name=field, record=label)


def join_text(*parts: str | None) -> str | None:
    """Join the non-empty parts with newlines; ``None`` when nothing is left."""
    kept = [part for part in parts if part]
    return "\n".join(kept) if kept else None


def picked(body: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Copy the scalar fields named in ``names`` (source -> attribute) from ``body``.

    Absent, null and non-scalar values are skipped, so attributes only hold
    what the platform actually sent and stay JSON-serialisable.
    """
    kept: dict[str, Any] = {}
    for source, target in names.items():
        value = scalar(body.get(source))
        if value is not None and value != "":
            kept[target] = value
    return kept


def stable_id(prefix: str, fields: Mapping[str, str]) -> str:
    """Return a deterministic id for a record without one: a hash of its fields.

    The fields are sorted first, so the id does not depend on element order or
    whitespace in the platform's document.
    """
    canonical = json.dumps(dict(sorted(fields.items())), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
    return f"{prefix}-{digest}"


def read_json_records(
    path: Path, *, items_key: tuple[str, ...] = ()
) -> Iterator[RawRecord]:
    """Split a ``.jsonl`` file (one object a line) or a ``.json`` file into records.

    A ``.json`` file holds a list of objects, or (with ``items_key``) an API
    response whose nested list sits under that key path, e.g. ``("data",
    "items")``. Blank lines are skipped; each JSON line is kept byte for byte,
    each list element is re-serialised as compact UTF-8 JSON.

    Raises:
        InvalidInput: the file cannot be read, or a ``.json`` file is not JSON
            of the expected shape.
    """
    if path.suffix.lower() == ".jsonl":
        return _read_lines(path)
    if path.suffix.lower() == ".json":
        return _read_list(path, items_key)
    raise InvalidInput(
        f"{path.name}: unsupported file type {path.suffix!r}; expected .jsonl "
        "(one JSON object a line) or .json (a list)",
        path=str(path),
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"{path.name}: cannot be read ({exc.strerror}); expected a readable file",
            path=str(path),
        ) from exc


def _read_lines(path: Path) -> Iterator[RawRecord]:
    data = _read_bytes(path)
    for number_, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield RawRecord(payload=line.strip(), locator=f"{path.name} line {number_}")


def _read_list(path: Path, items_key: tuple[str, ...]) -> Iterator[RawRecord]:
    label = path.name
    try:
        value = load_json(_read_bytes(path), label=label, what="the file")
    except MalformedPayload as exc:
        raise InvalidInput(exc.message, path=str(path)) from exc
    items = _items(value, items_key, label=label)
    for index, item in enumerate(items, start=1):
        payload = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        yield RawRecord(
            payload=payload.encode("utf-8"), locator=f"{label} item {index}"
        )


def _items(value: Any, items_key: tuple[str, ...], *, label: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if items_key and isinstance(value, dict):
        code = value.get("code", 0)
        if code != 0:
            raise InvalidInput(
                f"{label}: the API response has code {code!r} "
                f"({value.get('msg', '')}); expected code 0",
            )
        nested: Any = value
        for key in items_key:
            nested = nested.get(key) if isinstance(nested, dict) else None
        if isinstance(nested, list):
            return nested
    shape = "a list" + (
        f" or an object with {'.'.join(items_key)}" if items_key else ""
    )
    raise InvalidInput(
        f"{label}: the file holds JSON {type(value).__name__}; expected {shape} "
        "of records"
    )
