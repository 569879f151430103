"""Governance tables: the hash-chained audit log, its head and signed checkpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime
from waggle.governance.field_crypto import EncryptedText


class AuditEntry(Base):
    """One audited action: who, in which role, did what to which records; the result.

    ``seq`` orders the chain without gaps; ``entry_hash`` covers the row's
    fields and ``prev_hash``, the hash of the entry before it. Both are set
    when the transaction commits (see :mod:`waggle.governance.chain`).
    """

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(80))
    roles: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    resource: Mapped[str] = mapped_column(String(60))
    record_ids: Mapped[list[str]] = mapped_column(JsonText, default=list)
    result: Mapped[str] = mapped_column(String(20))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_audit_entries_resource_action", "resource", "action"),
        Index("ix_audit_entries_occurred_at", "occurred_at"),
    )


class AuditChainHead(Base):
    """The single row that serialises appends to the chain and names its end.

    Appending transactions update it first, which takes the write lock on
    SQLite and the row lock on PostgreSQL, so two commits never claim the
    same sequence numbers.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(16))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditCheckpoint(Base):
    """A signed Merkle root over the entries ``seq_from`` to ``seq_to``."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq_from: Mapped[int] = mapped_column(BigInteger)
    seq_to: Mapped[int] = mapped_column(BigInteger, unique=True)
    merkle_root: Mapped[str] = mapped_column(String(64))
    head_hash: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(16))
    signed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    key_fingerprint: Mapped[str] = mapped_column(String(120))
    signature: Mapped[str] = mapped_column(Text)


class RetentionTombstone(Base):
    """What one retention rule did to one record: never the content it removed.

    ``removed`` names the fields emptied (``text``, ``attributes.subject``,
    ``payload``); a read-only rule removes nothing and says why in ``detail``.
    One row per rule and record makes the sweep idempotent.
    """

    __tablename__ = "retention_tombstones"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    rule_id: Mapped[str] = mapped_column(String(60))
    resource: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(20))
    removed: Mapped[list[str]] = mapped_column(JsonText, default=list)
    detail: Mapped[str | None] = mapped_column(String(300))
    applied_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (UniqueConstraint("rule_id", "resource", "record_id"),)


class FieldDataKey(Base):
    """A data key of field encryption, wrapped by the instance's master key.

    Shredding clears ``wrapped``: every value sealed under the key is then
    unreadable for good (crypto-shredding). ``status`` is active (new writes),
    retired (decrypt only) or shredded.
    """

    __tablename__ = "field_data_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    suite: Mapped[str] = mapped_column(String(8))
    master_key_id: Mapped[str] = mapped_column(String(32))
    wrapped: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    shredded_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SealedValue(Base):
    """A secret-grade field value of some record, encrypted at rest.

    ``resource`` and ``record_id`` name the record (``accounts`` 12), ``field``
    the field (``bank_account``); ``value`` holds an envelope, never plaintext.
    """

    __tablename__ = "sealed_values"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[int] = mapped_column(BigInteger)
    field: Mapped[str] = mapped_column(String(60))
    value: Mapped[str] = mapped_column(EncryptedText("sealed_values.value"))
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, default=now, onupdate=now
    )

    __table_args__ = (UniqueConstraint("resource", "record_id", "field"),)


class CatalogueOverride(Base):
    """The data owner's change to one field's classification (wins over the file)."""

    __tablename__ = "catalogue_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(80))
    column_name: Mapped[str] = mapped_column(String(80))
    level: Mapped[str] = mapped_column(String(20))
    grade: Mapped[str] = mapped_column(String(20))
    is_personal: Mapped[bool] = mapped_column(default=False)
    is_sensitive_personal: Mapped[bool] = mapped_column(default=False)
    mask_format: Mapped[str] = mapped_column(String(20), default="text")
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (UniqueConstraint("table_name", "column_name"),)


class AggregateQuery(Base):
    """One answered aggregate query and its provenance.

    ``groups`` holds the row ids behind each released group, for the
    differencing check of the user's later queries and for replay; nothing
    that shows a query's provenance may hand them to a viewer who could not
    read those rows. ``result`` is the released answer (``key``, ``value``),
    ``values_digest`` the hash of the contributing values at ``asked_at``;
    ``chain_seq`` and ``checkpoint_id`` place the query on the audit chain and
    ``edit_seq`` on the field edit history. ``provenance_digest`` covers every
    column but the id, and the audit row written with the query names both.
    """

    __tablename__ = "aggregate_queries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(80))
    resource: Mapped[str] = mapped_column(String(60))
    measure: Mapped[str] = mapped_column(String(60))
    filters: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    group_by: Mapped[list[str]] = mapped_column(JsonText, default=list)
    roles: Mapped[list[str]] = mapped_column(JsonText, default=list)
    scope: Mapped[str] = mapped_column(String(20), default="all")
    min_group_size: Mapped[int] = mapped_column(Integer, default=5)
    policy_version: Mapped[str] = mapped_column(String(200), default="")
    policy_digest: Mapped[str] = mapped_column(String(64), default="")
    chain_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    chain_hash: Mapped[str] = mapped_column(String(64), default="")
    checkpoint_id: Mapped[int | None] = mapped_column(Integer)
    # The newest field edit when the query was answered: edits after it are
    # undone to see the values as they were.
    edit_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    groups: Mapped[list[list[int]]] = mapped_column(JsonText, default=list)
    result: Mapped[list[dict[str, Any]]] = mapped_column(JsonText, default=list)
    suppressed_groups: Mapped[int] = mapped_column(Integer, default=0)
    values_digest: Mapped[str] = mapped_column(String(64), default="")
    provenance_digest: Mapped[str] = mapped_column(String(64), default="")
    asked_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (
        Index("ix_aggregate_queries_user_resource", "username", "resource", "id"),
    )


class ExportRequest(Base):
    """One request to export a resource's rows as a signed package.

    It stays ``pending`` until a compliance officer approves it (the package
    is then built and signed by both) or rejects it with a reason. The
    requester's user id and name are kept as they were when asked.
    """

    __tablename__ = "export_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource: Mapped[str] = mapped_column(String(60))
    purpose: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    requested_by_id: Mapped[int | None] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(80))
    requested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    decided_by_id: Mapped[int | None] = mapped_column(Integer)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    package_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    package_file: Mapped[str | None] = mapped_column(String(200))
    row_count: Mapped[int | None] = mapped_column(Integer)
    checksums_sm3: Mapped[str | None] = mapped_column(String(64))
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_export_requests_status", "status"),)
