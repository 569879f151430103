"""Governance tables: the hash-chained audit log, its head and signed checkpoints."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime


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
