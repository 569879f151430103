"""Column mappings: how a user's own export maps onto Waggle's import fields.

A mapping is a small YAML document (see ``examples/mappings/``)::

    resource: opportunities          # optional; checked when given
    columns: {商机编号: external_id, 客户名称: account_name, 阶段: stage_key}
    values: {stage_key: {赢单: won, 输单: lost}}   # translated before parsing
    defaults: {currency: CNY}        # used when the column is absent or empty
    ignore: [备注]                   # known columns to skip without a warning
    timezone: Asia/Shanghai          # zone of date-times written without one
    date_formats: ["%Y.%m.%d"]       # tried after the built-in formats
    datetime_formats: ["%Y.%m.%d %H:%M"]

A header that is already a Waggle field name needs no entry, so a file
exported by Waggle imports without any mapping.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from waggle.core.errors import InvalidInput

META_PREFIX = "_"  # columns such as _row and _reason in a rejects file


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class MappingDocument(BaseModel):
    """The mapping file as written; every scalar is read as text."""

    model_config = ConfigDict(extra="forbid")

    resource: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    defaults: dict[str, str] = Field(default_factory=dict)
    ignore: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    date_formats: list[str] = Field(default_factory=list)
    datetime_formats: list[str] = Field(default_factory=list)

    @field_validator("columns", "defaults", mode="before")
    @classmethod
    def _flat_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                _text(key).strip(): _text(item).strip() for key, item in value.items()
            }
        return value

    @field_validator("values", mode="before")
    @classmethod
    def _nested_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                _text(name): {
                    _text(k).strip(): _text(v).strip() for k, v in items.items()
                }
                if isinstance(items, dict)
                else items
                for name, items in value.items()
            }
        return value

    @field_validator("ignore", mode="before")
    @classmethod
    def _text_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_text(item).strip() for item in value]
        return value


@dataclass(frozen=True)
class ColumnMapping:
    """A validated mapping, ready to plan a file's columns."""

    document: MappingDocument = field(default_factory=MappingDocument)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.document.timezone)

    def stored(self) -> dict[str, object]:
        """Return the mapping as JSON-ready data (kept on the import run)."""
        return self.document.model_dump()


@dataclass(frozen=True)
class ColumnPlan:
    """Which cell of a row feeds which field, and which columns go unused."""

    header: list[str]
    fields: dict[str, int]
    unknown: list[str]

    def has(self, name: str) -> bool:
        return name in self.fields


def parse_mapping(document: Any, *, origin: str) -> ColumnMapping:
    """Validate a mapping document (parsed YAML).

    Raises:
        InvalidInput: naming ``origin``, the bad entry and what was expected.
    """
    if document is None:
        document = {}
    try:
        parsed = MappingDocument.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise InvalidInput(f"mapping {origin}: {where}: {first['msg']}") from exc
    try:
        ZoneInfo(parsed.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"mapping {origin}: timezone {parsed.timezone!r} is not an IANA zone "
            "such as Asia/Shanghai"
        ) from exc
    return ColumnMapping(parsed)


def load_mapping(text: bytes | str, *, origin: str) -> ColumnMapping:
    """Read a mapping from YAML text (UTF-8 or GBK bytes are both accepted).

    Raises:
        InvalidInput: not YAML, or not a valid mapping.
    """
    if isinstance(text, bytes):
        text = _decode(text)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"mapping {origin}: not valid YAML ({exc})") from exc
    if document is not None and not isinstance(document, dict):
        raise InvalidInput(f"mapping {origin}: expected a YAML mapping at the top")
    return parse_mapping(document, origin=origin)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def check_mapping(
    mapping: ColumnMapping, *, resource: str, fields: Collection[str], origin: str
) -> None:
    """Refuse a mapping that names another resource or fields it does not have.

    Raises:
        InvalidInput: the first unknown name, with the fields that exist.
    """
    document = mapping.document
    if document.resource is not None and document.resource != resource:
        raise InvalidInput(
            f"mapping {origin}: written for {document.resource}, not {resource}"
        )
    named = [
        *document.columns.values(),
        *document.values,
        *document.defaults,
    ]
    unknown = sorted({name for name in named if name not in fields})
    if unknown:
        raise InvalidInput(
            f"mapping {origin}: {', '.join(unknown)} are not {resource} fields; "
            f"fields are {', '.join(fields)}"
        )


def plan_columns(
    header: list[str], mapping: ColumnMapping, *, fields: Collection[str], origin: str
) -> ColumnPlan:
    """Match a file's header against the mapping and the resource's fields.

    Raises:
        InvalidInput: two columns feed the same field.
    """
    names = _unique_header(header)
    document = mapping.document
    chosen: dict[str, int] = {}
    unknown: list[str] = []
    for index, name in enumerate(names):
        target = document.columns.get(name) or (name if name in fields else None)
        if target is None:
            if name not in document.ignore and not name.startswith(META_PREFIX):
                unknown.append(name)
            continue
        if target in chosen:
            raise InvalidInput(
                f"{origin}: columns {names[chosen[target]]!r} and {name!r} both "
                f"give {target}; map or remove one of them"
            )
        chosen[target] = index
    return ColumnPlan(header=names, fields=chosen, unknown=unknown)


def _unique_header(header: list[str]) -> list[str]:
    """Name blank columns by position and number repeated names (备注, 备注 (2))."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = raw.strip() or f"column_{index + 1}"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names
