"""Column masking: what each role sees of a field, by the field's grade.

The policy's ``masking`` section maps each grade to a mask kind per role
(``default`` for roles it does not name); the widest kind among the actor's
roles applies, and with ``owner_sees_full`` the owner of a record sees it in
full. Kinds, narrowest first: ``null`` (nothing), ``hash`` (a keyed hash,
for joining without reading), ``partial`` (138****1234, w***@domain.cn, 王*)
and ``full``.

The ``hash`` mask is an HMAC (HMAC-SM3 under the ``gm`` suite, HMAC-SHA-256
under ``intl``) of the field's name and value with the instance's masking
key, so the same value hashes the same across the instance but nobody
without the key can test guesses, as an unkeyed hash of an 11-digit phone
number would let them. :func:`configure_masking_key` loads that key at start-up.

:func:`mask_records` is applied by :mod:`waggle.governance.records` on every
get and list, so API, pages and reports receive masked values; exports use
:func:`row_masker`. Masked records are detached copies: the session's own
objects keep the stored values, so nothing masked is ever flushed back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives import hmac
from sqlalchemy import (
    Column,
    ColumnElement,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    and_,
    false,
)
from sqlalchemy import inspect as inspect_model
from sqlalchemy.orm import InstrumentedAttribute, Session

from waggle.core.actor import Actor
from waggle.core.db import Base
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.core.settings import Settings
from waggle.governance.catalogue import GRADES, Catalogue, FieldClass, active_catalogue
from waggle.governance.crypto import SecretKey, get_suite
from waggle.governance.keystore import KeyStore

logger = logging.getLogger(__name__)

MASK_KINDS = ("null", "hash", "partial", "full")
HASH_LENGTH = 16
MASKING_KEY_PREFIX = "masking-hash"
# The suite of the in-memory key used when no key store was configured; the
# settings' default suite.
EPHEMERAL_SUITE = "gm"
ModelT = TypeVar("ModelT", bound=Base)
RowMasker = Callable[[int | None, str, Any], Any]


@dataclass(frozen=True)
class MaskingRules:
    """The masking matrix: grade -> role (or ``default``) -> mask kind."""

    grades: dict[str, dict[str, str]]
    owner_sees_full: bool = True

    def kind_for(self, roles: Iterable[str], grade: str) -> str:
        """Return the widest mask kind any of ``roles`` has on ``grade``."""
        row = self.grades.get(grade, {})
        fallback = row.get("default", "full")
        kinds = [row.get(role, fallback) for role in roles] or [fallback]
        return max(kinds, key=MASK_KINDS.index)

    def kinds_used(self, grade: str) -> set[str]:
        return set(self.grades.get(grade, {}).values()) | {
            self.grades.get(grade, {}).get("default", "full")
        }


def parse_masking(document: Mapping[str, Any] | None) -> MaskingRules | None:
    """Validate a policy's ``masking`` section (``None`` when it has none).

    Raises:
        InvalidInput: an unknown grade or mask kind.
    """
    if document is None:
        return None
    grades: dict[str, dict[str, str]] = {}
    for grade, row in (document.get("grades") or {}).items():
        if grade not in GRADES:
            raise InvalidInput(
                f"policy masking.grades.{grade}: unknown grade, expected one of "
                f"{', '.join(GRADES)}"
            )
        for role, kind in (row or {}).items():
            if kind not in MASK_KINDS:
                raise InvalidInput(
                    f"policy masking.grades.{grade}.{role}: unknown kind {kind!r}, "
                    f"expected one of {', '.join(MASK_KINDS)}"
                )
        grades[grade] = {str(role): str(kind) for role, kind in (row or {}).items()}
    for grade in ("confidential", "secret"):
        # A classified grade the section forgets is hidden, not shown.
        grades.setdefault(grade, {"default": "null"})
    owner_full = bool(document.get("owner_sees_full", True))
    return MaskingRules(grades=grades, owner_sees_full=owner_full)


def active_rules() -> MaskingRules:
    """Return the masking matrix of the policy in force (or the shipped one)."""
    from waggle.governance.guard import active_policy
    from waggle.governance.policy import load_policy

    rules: MaskingRules | None = active_policy().masking or load_policy(None).masking
    return rules or MaskingRules(grades={})


# The masking key ---------------------------------------------------------------

_configured_key: SecretKey | None = None
_ephemeral_key: SecretKey | None = None
_ephemeral_lock = threading.Lock()


def configure_masking_key(settings: Settings | None) -> None:
    """Key the ``hash`` mask with the instance's masking key (``None``: forget it).

    The key is a secret key of the instance's suite, used for nothing else:
    ``<data_dir>/keys/masking-hash-<suite>.secret.json``, created on first use.
    The app reads it once when it starts, the CLI once per command. Rotating
    it (replacing or removing that file; a missing key is made anew) takes
    effect in each process when it next starts, so restart every server
    process; it changes every hash: values masked before and after no longer
    match, so joins across the rotation break.

    Raises:
        InvalidInput: the key file is readable by others or malformed.
    """
    global _configured_key
    if settings is None:
        _configured_key = None
        return
    store = KeyStore.for_settings(settings)
    _configured_key = load_masking_key(store, suite=settings.crypto_suite)


def load_masking_key(store: KeyStore, *, suite: str) -> SecretKey:
    """Return the masking key of ``suite`` from ``store``, creating it once.

    Raises:
        InvalidInput: the key file is readable by others or malformed.
    """
    name = f"{MASKING_KEY_PREFIX}-{suite}"
    try:
        return store.secret_key(name)
    except NotFound:
        pass
    try:
        return store.create_secret_key(name, suite=suite)
    except Conflict:  # another process created it since we looked
        return store.secret_key(name)


def masking_key() -> SecretKey:
    """Return the key the ``hash`` mask uses: the configured one, else ephemeral.

    Without :func:`configure_masking_key` (unit tests, one-off scripts) it is a
    random key held in memory for the life of the process, announced once with
    a warning: hashes are then stable within the process only. The hash mask is
    never unkeyed.
    """
    configured = _configured_key
    return configured if configured is not None else _ephemeral_masking_key()


def _ephemeral_masking_key() -> SecretKey:
    global _ephemeral_key
    with _ephemeral_lock:
        if _ephemeral_key is None:
            _ephemeral_key = get_suite(EPHEMERAL_SUITE).generate_secret_key()
            logger.warning(
                "masking key is ephemeral",
                extra={"reason": "no_key_store", "suite": EPHEMERAL_SUITE},
            )
        return _ephemeral_key


# Formats ---------------------------------------------------------------------


def partial_mask(value: str, mask_format: str) -> str:
    """Return ``value`` with most of it starred, in the shape of its format."""
    if mask_format == "phone" and len(value) >= 7:
        return f"{value[:3]}****{value[-4:]}"
    if mask_format == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if mask_format == "name" or len(value) <= 4:
        return value[:1] + "*" * (len(value) - 1) if len(value) > 1 else "*"
    return f"{value[:2]}****{value[-2:]}"


def hash_mask(
    value: object, *, table: str, column: str, key: SecretKey | None = None
) -> str:
    """Return a hex prefix of the HMAC of the field's name and value.

    The HMAC is keyed with ``key`` (default: :func:`masking_key`) under the
    hash of the key's suite: HMAC-SM3 for ``gm``, HMAC-SHA-256 for ``intl``.
    """
    key = masking_key() if key is None else key
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    mac = hmac.HMAC(key.material, get_suite(key.suite).new_hash().algorithm)
    mac.update(f"{table}.{column}\x00".encode() + raw)
    return mac.finalize().hex()[:HASH_LENGTH]


def mask_value(kind: str, value: Any, *, entry: FieldClass, nullable: bool) -> Any:
    """Return what ``kind`` leaves of ``value``.

    Partial and hash masks apply to text; other values (numbers, dates, JSON)
    are hidden whole. A hidden value is ``None``, or the empty value of its
    type when the column may not be empty (``""``, ``[]``, ``{}``, ``b""``).
    """
    if kind == "full" or value is None:
        return value
    if isinstance(value, str) and kind == "partial":
        return partial_mask(value, entry.mask_format)
    if isinstance(value, str) and kind == "hash":
        return hash_mask(value, table=entry.table, column=entry.column)
    if nullable or not isinstance(value, str | bytes | list | dict):
        return None
    return type(value)()


# Records -----------------------------------------------------------------------


@dataclass(frozen=True)
class TableMasks:
    """The mask kinds one actor has on one table's fields (full ones left out)."""

    table: str
    kinds: dict[str, str]
    classified: tuple[str, ...]
    owner_sees_full: bool

    def applies_to(self, actor: Actor, owner_id: int | None) -> bool:
        """Return whether a row owned by ``owner_id`` is masked for ``actor``."""
        if not self.kinds:
            return False
        is_owner = actor.employee_id is not None and owner_id == actor.employee_id
        return not (self.owner_sees_full and is_owner)


def table_masks(session: Session, actor: Actor, table: str) -> TableMasks:
    """Return the actor's mask kinds on ``table`` (cached for the session)."""
    cache: dict[tuple[str, frozenset[str], str], TableMasks] = session.info.setdefault(
        "waggle_mask_cache", {}
    )
    key = (actor.username, actor.roles, table)
    if key not in cache:
        cache[key] = _compute_masks(
            active_catalogue(session), active_rules(), actor, table
        )
    return cache[key]


def _compute_masks(
    catalogue: Catalogue, rules: MaskingRules, actor: Actor, table: str
) -> TableMasks:
    fields = catalogue.table_fields(table)
    kinds = {
        column: kind
        for column, entry in fields.items()
        if (kind := rules.kind_for(actor.roles, entry.grade)) != "full"
    }
    classified = tuple(sorted(c for c, entry in fields.items() if entry.is_classified))
    return TableMasks(
        table=table,
        kinds=kinds,
        classified=classified,
        owner_sees_full=rules.owner_sees_full,
    )


def table_name(model: type[Base]) -> str:
    """Return the name of the table ``model`` is mapped to."""
    table = cast(Table, model.__table__)
    return str(table.name)


def mask_records(
    session: Session,
    actor: Actor,
    records: Sequence[ModelT],
    *,
    owner_column: str | None,
) -> tuple[list[ModelT], str | None]:
    """Return ``records`` as the actor may see them, and the audit detail.

    Records that need no mask are returned as they are; the others are
    replaced by detached copies with masked values. The detail names the
    classified (confidential or secret) fields read and those masked; it is
    ``None`` when the table holds no classified field.
    """
    if not records:
        return [], None
    table = table_name(type(records[0]))
    masks = table_masks(session, actor, table)
    catalogue = active_catalogue(session)
    shown: list[ModelT] = []
    masked = False
    for record in records:
        owner = getattr(record, owner_column) if owner_column else None
        if masks.applies_to(actor, owner):
            shown.append(_masked_copy(record, masks, catalogue))
            masked = True
        else:
            shown.append(record)
    return shown, _detail(masks, masked)


def mask_record(
    session: Session, actor: Actor, record: ModelT, *, owner_column: str | None
) -> ModelT:
    """Return one record as the actor may see it (see :func:`mask_records`)."""
    shown, _detail = mask_records(session, actor, [record], owner_column=owner_column)
    return shown[0]


def _masked_copy(record: ModelT, masks: TableMasks, catalogue: Catalogue) -> ModelT:
    mapper = inspect_model(type(record))
    copy = type(record)()
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        value = getattr(record, prop.key)
        kind = masks.kinds.get(column.name, "full")
        entry = catalogue.field(masks.table, column.name)
        if kind != "full" and entry is not None:
            value = mask_value(kind, value, entry=entry, nullable=bool(column.nullable))
        setattr(copy, prop.key, value)
    return copy


def _detail(masks: TableMasks, masked: bool) -> str | None:
    if not masks.classified:
        return None
    fields = ",".join(masks.classified)
    hidden = sorted(c for c in masks.classified if c in masks.kinds) if masked else []
    shown = ",".join(f"{c}={masks.kinds[c]}" for c in hidden) or "none"
    return f"classified fields read: {fields}; masked: {shown}"


def row_masker(session: Session, actor: Actor, table: str) -> RowMasker | None:
    """Return a function masking one exported cell, or ``None`` if none is masked.

    It takes the row's owner id, the column name and the stored value.
    """
    masks = table_masks(session, actor, table)
    if not masks.kinds:
        return None
    catalogue = active_catalogue(session)
    nullable = {
        column.name: bool(column.nullable)
        for column in Base.metadata.tables[table].columns
    }

    def mask(owner_id: int | None, column: str, value: Any) -> Any:
        kind = masks.kinds.get(column, "full")
        entry = catalogue.field(table, column)
        if kind == "full" or entry is None or not masks.applies_to(actor, owner_id):
            return value
        return mask_value(kind, value, entry=entry, nullable=nullable.get(column, True))

    return mask


def guard_masked_condition(
    session: Session,
    actor: Actor,
    table: str,
    column: str,
    condition: ColumnElement[bool],
    *,
    owner: InstrumentedAttribute[Any] | None,
) -> ColumnElement[bool]:
    """Limit a filter or search on ``column`` to rows where it is not masked.

    Otherwise a filter on a masked field (``email=...``) would confirm its
    hidden value. The owner still finds their own records.
    """
    masks = table_masks(session, actor, table)
    if column not in masks.kinds:
        return condition
    if owner is not None and masks.owner_sees_full and actor.employee_id is not None:
        return and_(condition, owner == actor.employee_id)
    return false()


def unmaskable_fields(
    catalogue: Catalogue, rules: MaskingRules, metadata: MetaData
) -> list[str]:
    """Return the fields whose grade may be masked but whose column cannot be.

    A NOT NULL column of a non-text type (an amount, a date) has no value that
    hides it; such a field must keep a grade that every role sees in full.
    """
    found = []
    for (table, column_name), entry in sorted(catalogue.fields.items()):
        table_meta = metadata.tables.get(table)
        if table_meta is None or column_name not in table_meta.columns:
            continue
        column = table_meta.columns[column_name]
        if rules.kinds_used(entry.grade) != {"full"} and not _can_hide(column):
            found.append(f"{table}.{column_name}")
    return found


def _can_hide(column: Column[Any]) -> bool:
    stored = column.type
    while isinstance(stored, TypeDecorator):  # JsonText, Money, encrypted text
        stored = stored.impl_instance
    return bool(column.nullable) or isinstance(stored, String | LargeBinary)


def refuse_unmaskable(metadata: MetaData) -> Callable[[FieldClass], None]:
    """Return a check that refuses a classification no mask can honour.

    Raises (from the check):
        InvalidInput: naming the field, its grade and why.
    """

    def check(entry: FieldClass) -> None:
        single = Catalogue(
            fields={(entry.table, entry.column): entry},
            technical_tables={},
            version="check",
        )
        if unmaskable_fields(single, active_rules(), metadata):
            raise InvalidInput(
                f"catalogue {entry.table}.{entry.column}: grade {entry.grade} "
                "would mask it, but the column is a required non-text value; "
                "choose a grade every role sees in full"
            )

    return check
