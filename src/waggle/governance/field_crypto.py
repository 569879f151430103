"""Field encryption at rest: data keys, the ``EncryptedText`` column, rotation and
crypto-shredding.

Values are sealed with a data key under the instance's suite (SM4-GCM for
``gm``, AES-256-GCM for ``intl``) into an envelope that names the suite and
the key id. Data keys live in ``field_data_keys``, each wrapped by the
master key of its suite, a secret key file in the instance's key store
(``<data_dir>/keys/field-master-<suite>.secret.json``). Rotation adds a new
data key and re-encrypts every value to it; shredding destroys one data key,
so the values under it can never be read again.

A column typed ``EncryptedText(context)`` encrypts on write and decrypts on
read through the cipher :func:`use_field_cipher` installed for the process;
``context`` (``table.column``) is bound into every envelope, so a value
copied into another column does not decrypt there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Table, Text, select, type_coerce, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.core.settings import Settings
from waggle.governance.crypto import (
    CryptoError,
    SecretKey,
    get_suite,
    load_encrypted_envelope,
    open_envelope,
)
from waggle.governance.keystore import KeyStore

if TYPE_CHECKING:
    from waggle.governance.models import FieldDataKey, SealedValue

logger = logging.getLogger(__name__)

RESOURCE = "field_keys"
MASTER_KEY_PREFIX = "field-master"
WRAP_LABEL = b"waggle/field-data-key:"
SHREDDED_TEXT = "[shredded]"


class FieldKeyShredded(NotFound):
    """A sealed value's data key was shredded; the value is gone for good."""

    code = "field_key_shredded"


class FieldCipherUnavailable(InvalidInput):
    """An encrypted column was used before a field cipher was installed."""

    code = "field_cipher_unavailable"


class ShreddedValue(str):
    """What an encrypted column reads as when its data key was shredded."""

    key_id: str

    def __new__(cls, key_id: str) -> ShreddedValue:
        marker = super().__new__(cls, SHREDDED_TEXT)
        marker.key_id = key_id
        return marker


@dataclass
class FieldCipher:
    """The unwrapped data keys of one instance and the one new writes use."""

    suite: str
    keys: dict[str, SecretKey] = field(default_factory=dict)
    shredded: set[str] = field(default_factory=set)
    current_key_id: str | None = None

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Return the envelope (JSON) of ``plaintext`` under the current key.

        Raises:
            FieldCipherUnavailable: no data key has been created yet.
        """
        if self.current_key_id is None:
            raise FieldCipherUnavailable(
                "field encryption: no active data key; create one first"
            )
        key = self.keys[self.current_key_id]
        envelope = get_suite(key.suite).encrypt(
            key, plaintext.encode("utf-8"), associated_data=context.encode("utf-8")
        )
        return envelope.to_json()

    def decrypt(self, stored: str, *, context: str) -> str:
        """Return the plaintext of an envelope, or a :class:`ShreddedValue`.

        Raises:
            EnvelopeInvalid: malformed, or its key is unknown to this instance.
            DecryptionFailed: the envelope was altered or moved to another column.
        """
        envelope = load_encrypted_envelope(stored)
        if envelope.key_id in self.shredded:
            return ShreddedValue(envelope.key_id)
        plaintext = open_envelope(
            envelope, self.keys.values(), associated_data=context.encode("utf-8")
        )
        return plaintext.decode("utf-8")


_installed: FieldCipher | None = None


def installed_field_cipher() -> FieldCipher:
    """Return the cipher encrypted columns use.

    Raises:
        FieldCipherUnavailable: :func:`use_field_cipher` was not called.
    """
    if _installed is None:
        raise FieldCipherUnavailable(
            "field encryption is not set up: call use_field_cipher(session, settings)"
        )
    return _installed


def uninstall_field_cipher() -> None:
    """Forget the installed cipher (tests; a process switching instances)."""
    global _installed
    _installed = None


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest; ``context`` (``table.column``) is bound into it."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str = "") -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, ShreddedValue):
            raise FieldKeyShredded(
                f"{self.context}: cannot store a shredded value; write a new one"
            )
        return installed_field_cipher().encrypt(value, context=self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return installed_field_cipher().decrypt(value, context=self.context)


# Keys -------------------------------------------------------------------------


def master_key(settings: Settings, suite: str) -> SecretKey:
    """Return the master key of ``suite`` from the key store, creating it once."""
    store = KeyStore.for_settings(settings)
    name = f"{MASTER_KEY_PREFIX}-{suite}"
    try:
        return store.secret_key(name)
    except NotFound:
        return store.create_secret_key(name, suite=suite)


def use_field_cipher(session: Session, settings: Settings) -> FieldCipher:
    """Load the data keys from the database, install the cipher and return it.

    Called at the start of each service that touches encrypted columns, so a
    rotation or shredding done by another process is seen.

    Raises:
        InvalidInput: a data key cannot be unwrapped with the stored master key.
    """
    from waggle.governance.models import FieldDataKey

    global _installed
    cipher = FieldCipher(suite=settings.crypto_suite)
    rows = session.scalars(select(FieldDataKey).order_by(FieldDataKey.id))
    for row in rows:
        if row.wrapped is None:
            cipher.shredded.add(row.key_id)
            continue
        cipher.keys[row.key_id] = _unwrap(row, master_key(settings, row.suite))
        if row.status == "active" and row.suite == cipher.suite:
            cipher.current_key_id = row.key_id
    _installed = cipher
    return cipher


def ensure_current_key(
    session: Session, actor: Actor, *, settings: Settings
) -> FieldCipher:
    """Install the cipher, first creating a data key if the suite has none.

    Raises:
        PolicyDenied: a key must be created and the actor may not create keys.
    """
    cipher = use_field_cipher(session, settings)
    if cipher.current_key_id is None:
        _create_data_key(session, actor, settings=settings)
        cipher = use_field_cipher(session, settings)
    return cipher


def _create_data_key(session: Session, actor: Actor, *, settings: Settings) -> str:
    from waggle.governance.guard import record_audit
    from waggle.governance.models import FieldDataKey

    suite = get_suite(settings.crypto_suite)
    master = master_key(settings, suite.name)
    data_key = suite.generate_secret_key()
    wrapped = suite.encrypt(
        master, data_key.material, associated_data=WRAP_LABEL + data_key.key_id.encode()
    )
    session.add(
        FieldDataKey(
            key_id=data_key.key_id,
            suite=suite.name,
            master_key_id=master.key_id,
            wrapped=wrapped.to_json(),
            status="active",
            created_at=now(),
        )
    )
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=RESOURCE,
        record_ids=[data_key.key_id],
        detail=f"data key {data_key.key_id} ({suite.name}) created",
    )
    logger.info(
        "field data key created", extra={"key_id": data_key.key_id, "suite": suite.name}
    )
    return data_key.key_id


def _unwrap(row: FieldDataKey, master: SecretKey) -> SecretKey:
    if row.master_key_id != master.key_id:
        raise InvalidInput(
            f"field data key {row.key_id}: wrapped by master key {row.master_key_id},"
            f" but the key store holds {master.key_id}"
        )
    try:
        material = open_envelope(
            row.wrapped or "",
            [master],
            associated_data=WRAP_LABEL + row.key_id.encode(),
        )
    except CryptoError as exc:
        raise InvalidInput(
            f"field data key {row.key_id}: cannot be unwrapped ({exc.message})"
        ) from exc
    return get_suite(row.suite).secret_key(material)


# Rotation and shredding ------------------------------------------------------------


@dataclass(frozen=True)
class RotationReport:
    """What a rotation did: the new key and how many values moved to it."""

    new_key_id: str
    re_encrypted: int
    unreadable: int
    retired_key_ids: tuple[str, ...]


@dataclass(frozen=True)
class ShredReport:
    """What a shredding destroyed: the key and how many values it took along."""

    key_id: str
    unreadable: int
    new_key_id: str | None


def list_field_keys(session: Session, actor: Actor) -> list[FieldDataKey]:
    """Return every data key, oldest first (no key material).

    Raises:
        PolicyDenied: the actor may not read field keys.
    """
    from waggle.governance.guard import authorize, record_audit
    from waggle.governance.models import FieldDataKey

    authorize(session, actor, "read", RESOURCE)
    keys = list(session.scalars(select(FieldDataKey).order_by(FieldDataKey.id)))
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[key.key_id for key in keys],
    )
    return keys


def rotate_field_keys(
    session: Session, actor: Actor, *, settings: Settings
) -> RotationReport:
    """Make a new data key current and re-encrypt every sealed value to it.

    Values under a shredded key stay as they are (unreadable) and are counted.

    Raises:
        PolicyDenied: the actor may not rotate field keys.
    """
    from waggle.governance.guard import authorize, record_audit
    from waggle.governance.models import FieldDataKey

    authorize(session, actor, "update", RESOURCE)
    retired = list(
        session.scalars(select(FieldDataKey).where(FieldDataKey.status == "active"))
    )
    for row in retired:
        row.status, row.retired_at = "retired", now()
    new_key_id = _create_data_key(session, actor, settings=settings)
    cipher = use_field_cipher(session, settings)

    moved = unreadable = 0
    for table, column in encrypted_columns():
        counts = _re_encrypt_column(session, cipher, table, column)
        moved, unreadable = moved + counts[0], unreadable + counts[1]
    report = RotationReport(
        new_key_id=new_key_id,
        re_encrypted=moved,
        unreadable=unreadable,
        retired_key_ids=tuple(row.key_id for row in retired),
    )
    record_audit(
        session,
        actor,
        action="rotate",
        resource=RESOURCE,
        record_ids=[new_key_id, *report.retired_key_ids],
        detail=f"new data key {new_key_id}; {moved} values re-encrypted,"
        f" {unreadable} unreadable (shredded keys)",
    )
    logger.info(
        "field keys rotated",
        extra={"key_id": new_key_id, "re_encrypted": moved, "unreadable": unreadable},
    )
    return report


def shred_key(
    session: Session, actor: Actor, key_id: str, *, settings: Settings
) -> ShredReport:
    """Destroy the data key ``key_id``: values under it become unreadable for good.

    Shredding the current key makes a new one current in the same transaction.

    Raises:
        PolicyDenied: the actor may not shred field keys.
        NotFound: no data key has that id.
        Conflict: the key was shredded already.
    """
    from waggle.governance.guard import authorize, record_audit
    from waggle.governance.models import FieldDataKey

    authorize(session, actor, "delete", RESOURCE)
    row = session.scalar(select(FieldDataKey).where(FieldDataKey.key_id == key_id))
    if row is None:
        raise NotFound(f"field data key {key_id} does not exist")
    if row.wrapped is None:
        raise Conflict(f"field data key {key_id} was shredded already")
    was_current = row.status == "active"
    row.wrapped, row.status, row.shredded_at = None, "shredded", now()
    session.flush()

    unreadable = sum(
        _count_under_key(session, table, column, key_id)
        for table, column in encrypted_columns()
    )
    new_key_id = (
        _create_data_key(session, actor, settings=settings) if was_current else None
    )
    use_field_cipher(session, settings)
    record_audit(
        session,
        actor,
        action="shred",
        resource=RESOURCE,
        record_ids=[key_id],
        detail=f"data key {key_id} ({row.suite}) destroyed;"
        f" {unreadable} sealed values are now unreadable",
    )
    logger.info(
        "field key shredded", extra={"key_id": key_id, "unreadable": unreadable}
    )
    return ShredReport(key_id=key_id, unreadable=unreadable, new_key_id=new_key_id)


def encrypted_columns() -> Iterator[tuple[Table, Column[Any]]]:
    """Yield every table column typed :class:`EncryptedText`."""
    from waggle.core.db import Base

    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                yield table, column


def _stored_envelopes(
    session: Session, table: Table, column: Column[Any]
) -> Iterator[tuple[Any, str]]:
    (primary,) = table.primary_key.columns
    raw = type_coerce(column, Text())
    rows = session.execute(select(primary, raw).where(column.is_not(None)))
    yield from ((record_id, stored) for record_id, stored in rows)


def _re_encrypt_column(
    session: Session, cipher: FieldCipher, table: Table, column: Column[Any]
) -> tuple[int, int]:
    context = column.type.context  # type: ignore[attr-defined]
    (primary,) = table.primary_key.columns
    moved = unreadable = 0
    for record_id, stored in list(_stored_envelopes(session, table, column)):
        key_id = load_encrypted_envelope(stored).key_id
        if key_id == cipher.current_key_id:
            continue
        if key_id in cipher.shredded:
            unreadable += 1
            continue
        fresh = cipher.encrypt(cipher.decrypt(stored, context=context), context=context)
        session.execute(
            update(table)
            .where(primary == record_id)
            .values({column.name: type_coerce(fresh, Text())})
        )
        moved += 1
    return moved, unreadable


def _count_under_key(
    session: Session, table: Table, column: Column[Any], key_id: str
) -> int:
    return sum(
        1
        for _record_id, stored in _stored_envelopes(session, table, column)
        if load_encrypted_envelope(stored).key_id == key_id
    )


# Sealed values of records ---------------------------------------------------------


def put_sealed_value(
    session: Session,
    actor: Actor,
    *,
    settings: Settings,
    resource: str,
    record_id: int,
    field_name: str,
    value: str,
    owner_id: int | None = None,
) -> SealedValue:
    """Store (or replace) a secret-grade field of a record, encrypted at rest.

    The actor needs ``update`` on ``resource`` and, for owned resources, the
    record's owner (``owner_id``) in scope. The audit row names the field,
    never the value.

    Raises:
        PolicyDenied: the actor may not update the record.
    """
    from waggle.governance.models import SealedValue

    _authorize_record(session, actor, "update", resource, record_id, owner_id)
    ensure_current_key(session, actor, settings=settings)
    sealed = _find_sealed(session, resource, record_id, field_name)
    if sealed is None:
        sealed = SealedValue(resource=resource, record_id=record_id, field=field_name)
        session.add(sealed)
    sealed.value = value
    session.flush()
    _audit_field(session, actor, "update", resource, record_id, field_name)
    return sealed


def get_sealed_value(
    session: Session,
    actor: Actor,
    *,
    settings: Settings,
    resource: str,
    record_id: int,
    field_name: str,
    owner_id: int | None = None,
) -> str:
    """Return the plaintext of a secret-grade field the actor may read.

    Raises:
        PolicyDenied: the actor may not read the record.
        NotFound: the record has no such sealed field.
        FieldKeyShredded: the value's data key was shredded.
    """
    _authorize_record(session, actor, "read", resource, record_id, owner_id)
    use_field_cipher(session, settings)
    sealed = _find_sealed(session, resource, record_id, field_name)
    if sealed is None:
        raise NotFound(f"{resource} {record_id} has no sealed field {field_name!r}")
    _audit_field(session, actor, "read", resource, record_id, field_name)
    if isinstance(sealed.value, ShreddedValue):
        raise FieldKeyShredded(
            f"{resource} {record_id} field {field_name!r}: its data key"
            f" {sealed.value.key_id} was shredded; the value cannot be recovered"
        )
    return sealed.value


def _find_sealed(
    session: Session, resource: str, record_id: int, field_name: str
) -> SealedValue | None:
    from waggle.governance.models import SealedValue

    # Fresh from the database: a cached row may hold a value read with old keys.
    statement = (
        select(SealedValue)
        .where(
            SealedValue.resource == resource,
            SealedValue.record_id == record_id,
            SealedValue.field == field_name,
        )
        .execution_options(populate_existing=True)
    )
    return session.scalar(statement)


def _authorize_record(
    session: Session,
    actor: Actor,
    action: str,
    resource: str,
    record_id: int,
    owner_id: int | None,
) -> None:
    from waggle.governance.guard import active_policy, authorize, ensure_in_scope

    scope = authorize(session, actor, action, resource)
    rule = active_policy().resources[resource]
    if rule.is_owned:
        ensure_in_scope(
            session,
            actor,
            scope,
            owner_id=owner_id,
            action=action,
            resource=resource,
            record_id=record_id,
        )


def _audit_field(
    session: Session,
    actor: Actor,
    action: str,
    resource: str,
    record_id: int,
    field_name: str,
) -> None:
    from waggle.governance.guard import record_audit

    record_audit(
        session,
        actor,
        action=action,
        resource=resource,
        record_ids=[record_id],
        detail=f"sealed field {field_name}",
    )
