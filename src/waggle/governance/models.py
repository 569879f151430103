"""Governance tables: the audit log (hash chaining comes with the audit chain)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime


class AuditEntry(Base):
    """One audited action: who, in which role, did what to which records; the result."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
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
