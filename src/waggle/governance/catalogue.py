"""The data catalogue: the classification of every field of every business table.

Each field carries its statutory level per GB/T 43697-2024 (一般/重要/核心:
general, important, core), an internal grade (public, internal, confidential,
secret) that the masking matrix reads, personal-information flags and the
shape of its partial mask. The shipped YAML (or ``WAGGLE_CATALOGUE_FILE``)
gives the defaults; the data owner's stored overrides win over it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import InvalidInput, NotFound
from waggle.governance.guard import authorize, record_audit
from waggle.governance.models import CatalogueOverride

logger = logging.getLogger(__name__)

LEVELS = ("general", "important", "core")
LEVEL_LABELS = {"general": "一般数据", "important": "重要数据", "core": "核心数据"}
GRADES = ("public", "internal", "confidential", "secret")
CLASSIFIED_GRADES = frozenset({"confidential", "secret"})
FORMATS = ("text", "phone", "email", "name")
ENTRY_KEYS = {"level", "grade", "pi", "spi", "format"}
RESOURCE = "catalogue"

_catalogue_path: Path | None = None


@dataclass(frozen=True)
class FieldClass:
    """How one column is classified."""

    table: str
    column: str
    level: str = "general"
    grade: str = "internal"
    is_personal: bool = False
    is_sensitive_personal: bool = False
    mask_format: str = "text"

    @property
    def is_classified(self) -> bool:
        return self.grade in CLASSIFIED_GRADES

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "level": self.level,
            "level_label": LEVEL_LABELS[self.level],
            "grade": self.grade,
            "is_personal": self.is_personal,
            "is_sensitive_personal": self.is_sensitive_personal,
            "mask_format": self.mask_format,
        }


@dataclass(frozen=True)
class Catalogue:
    """Every classified field, and the tables left out as purely technical."""

    fields: dict[tuple[str, str], FieldClass]
    technical_tables: dict[str, str]
    version: str

    def field(self, table: str, column: str) -> FieldClass | None:
        return self.fields.get((table, column))

    def table_fields(self, table: str) -> dict[str, FieldClass]:
        return {col: entry for (tab, col), entry in self.fields.items() if tab == table}


def configure_catalogue(path: Path | None) -> None:
    """Use the catalogue file at ``path`` (``None``: the shipped default)."""
    global _catalogue_path
    _catalogue_path = path


def parse_catalogue(document: Mapping[str, Any], *, version: str) -> Catalogue:
    """Validate a catalogue document (as parsed from YAML) and build it.

    Raises:
        InvalidInput: an entry names an unknown level, grade, format or key.
    """
    fields: dict[tuple[str, str], FieldClass] = {}
    for table, columns in (document.get("tables") or {}).items():
        for column, body in (columns or {}).items():
            fields[(table, column)] = _parse_entry(table, column, body)
    technical = {
        str(k): str(v) for k, v in (document.get("technical_tables") or {}).items()
    }
    return Catalogue(fields=fields, technical_tables=technical, version=version)


def _parse_entry(table: str, column: str, body: Any) -> FieldClass:
    where = f"catalogue {table}.{column}"
    if isinstance(body, str):
        body = {"grade": body}
    if not isinstance(body, Mapping):
        raise InvalidInput(f"{where}: expected a grade or a mapping, got {body!r}")
    unknown = set(body) - ENTRY_KEYS
    if unknown:
        raise InvalidInput(
            f"{where}: unknown keys {sorted(unknown)}, expected {sorted(ENTRY_KEYS)}"
        )
    entry = FieldClass(
        table=table,
        column=column,
        level=str(body.get("level", "general")),
        grade=str(body.get("grade", "internal")),
        is_personal=bool(body.get("pi", False)),
        is_sensitive_personal=bool(body.get("spi", False)),
        mask_format=str(body.get("format", "text")),
    )
    return validated(entry)


def validated(entry: FieldClass) -> FieldClass:
    """Return ``entry`` if its level, grade and format are known.

    Sensitive personal information is personal information, so ``spi``
    implies ``pi``.

    Raises:
        InvalidInput: naming the field and the expected values.
    """
    where = f"catalogue {entry.table}.{entry.column}"
    for name, value, allowed in (
        ("level", entry.level, LEVELS),
        ("grade", entry.grade, GRADES),
        ("format", entry.mask_format, FORMATS),
    ):
        if value not in allowed:
            raise InvalidInput(
                f"{where}.{name}: unknown {value!r}, expected one of "
                f"{', '.join(allowed)}"
            )
    if entry.is_sensitive_personal and not entry.is_personal:
        return replace(entry, is_personal=True)
    return entry


@lru_cache(maxsize=8)
def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load the catalogue from ``path`` or the shipped default."""
    if path is None:
        text = (
            package_files.files("waggle.governance")
            .joinpath("default_catalogue.yaml")
            .read_text(encoding="utf-8")
        )
        version = "default"
    else:
        text = path.read_text(encoding="utf-8")
        version = path.name
    return parse_catalogue(yaml.safe_load(text) or {}, version=version)


def file_catalogue() -> Catalogue:
    """Return the configured catalogue file's contents, without stored overrides."""
    return load_catalogue(_catalogue_path)


def active_catalogue(session: Session) -> Catalogue:
    """Return the catalogue in force: the file with the stored overrides applied.

    The overrides are read once per session (one request, one job run).
    """
    cached: Catalogue | None = session.info.get("waggle_catalogue")
    if cached is not None:
        return cached
    base = file_catalogue()
    fields = dict(base.fields)
    for row in session.scalars(select(CatalogueOverride)):
        fields[(row.table_name, row.column_name)] = _from_row(row)
    catalogue = Catalogue(
        fields=fields, technical_tables=base.technical_tables, version=base.version
    )
    session.info["waggle_catalogue"] = catalogue
    return catalogue


def _from_row(row: CatalogueOverride) -> FieldClass:
    return FieldClass(
        table=row.table_name,
        column=row.column_name,
        level=row.level,
        grade=row.grade,
        is_personal=row.is_personal,
        is_sensitive_personal=row.is_sensitive_personal,
        mask_format=row.mask_format,
    )


def missing_columns(catalogue: Catalogue, metadata: MetaData) -> list[str]:
    """Return ``table.column`` for every column of a business table not catalogued."""
    return sorted(
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        if table.name not in catalogue.technical_tables
        for column in table.columns
        if catalogue.field(table.name, column.name) is None
    )


def list_catalogue(session: Session, actor: Actor) -> list[FieldClass]:
    """Return every catalogued field, ordered by table and column.

    Raises:
        PolicyDenied: the actor may not read the catalogue.
    """
    authorize(session, actor, "read", RESOURCE)
    catalogue = active_catalogue(session)
    return [catalogue.fields[key] for key in sorted(catalogue.fields)]


def classify_field(
    session: Session,
    actor: Actor,
    table: str,
    column: str,
    *,
    changes: Mapping[str, Any],
    check: Iterable[Any] = (),
) -> FieldClass:
    """Change one field's classification and store it as an override.

    The change is audited like a policy change (action ``policy_change``),
    with the old and new classification in the detail. ``check`` holds
    callables that may refuse the new entry (masking's type check).

    Raises:
        PolicyDenied: the actor may not update the catalogue (data_owner only).
        NotFound: the field is not in the catalogue.
        InvalidInput: an unknown level, grade or format.
    """
    authorize(session, actor, "update", RESOURCE)
    current = active_catalogue(session).field(table, column)
    if current is None:
        raise NotFound(f"catalogue {table}.{column} does not exist")
    updated = validated(replace(current, **dict(changes)))
    for refuse in check:
        refuse(updated)
    _store(session, actor, updated)
    session.info.pop("waggle_catalogue", None)
    session.info.pop("waggle_mask_cache", None)
    record_audit(
        session,
        actor,
        action="policy_change",
        resource=RESOURCE,
        record_ids=[f"{table}.{column}"],
        detail=f"{_describe(current)} -> {_describe(updated)}",
    )
    logger.info("catalogue field changed", extra={"field": f"{table}.{column}"})
    return updated


def _store(session: Session, actor: Actor, entry: FieldClass) -> None:
    row = session.scalar(
        select(CatalogueOverride).where(
            CatalogueOverride.table_name == entry.table,
            CatalogueOverride.column_name == entry.column,
        )
    )
    if row is None:
        row = CatalogueOverride(table_name=entry.table, column_name=entry.column)
        session.add(row)
    row.level, row.grade = entry.level, entry.grade
    row.is_personal = entry.is_personal
    row.is_sensitive_personal = entry.is_sensitive_personal
    row.mask_format = entry.mask_format
    row.updated_by, row.updated_at = actor.username, now()
    session.flush()


def _describe(entry: FieldClass) -> str:
    flags = ",".join(
        flag
        for flag, on in (
            ("pi", entry.is_personal),
            ("spi", entry.is_sensitive_personal),
        )
        if on
    )
    return f"{entry.level}/{entry.grade}/{flags or '-'}/{entry.mask_format}"
