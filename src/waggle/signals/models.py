"""Signals tables: behaviour events, raw records, quarantine, batches, sync state.

Every record a connector receives is kept verbatim once (``signal_raw_records``,
by digest); the events made from it point back to it, and a record that could
not be read waits in ``signal_quarantine`` with its reason until it is replayed.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime


class MatchStatus(enum.StrEnum):
    """How far the matcher got: employee, contact, account and opportunity."""

    MATCHED = "matched"  # actor and account known (opportunity too when one fits)
    PARTIAL = "partial"  # the actor is known, the customer side is not
    UNMATCHED = "unmatched"  # no employee could be found


class QuarantineStatus(enum.StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class BatchStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class RawRecord(Base):
    """One record exactly as a connector received it, stored once per digest."""

    __tablename__ = "signal_raw_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    locator: Mapped[str] = mapped_column(String(300), default="")
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("signal_batches.id"))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (UniqueConstraint("connector", "digest"),)


class BehaviourEvent(Base):
    """Something a person did, captured automatically or logged by hand."""

    __tablename__ = "behaviour_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("opportunities.id"))
    speaker: Mapped[str | None] = mapped_column(String(10))
    is_automatic: Mapped[bool] = mapped_column(Boolean, default=True)
    thread_ref: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, object]] = mapped_column(JsonText, default=dict)
    sender_ref: Mapped[str | None] = mapped_column(String(200))
    recipient_refs: Mapped[list[str]] = mapped_column(JsonText, default=list)
    account_ref: Mapped[str | None] = mapped_column(String(200))
    opportunity_ref: Mapped[str | None] = mapped_column(String(200))
    match_status: Mapped[str] = mapped_column(String(12))
    match_note: Mapped[str | None] = mapped_column(String(300))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("behaviour_events.id"))
    raw_id: Mapped[int | None] = mapped_column(ForeignKey("signal_raw_records.id"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("signal_batches.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (
        UniqueConstraint("source", "source_id"),
        Index("ix_behaviour_events_opportunity", "opportunity_id", "occurred_at"),
        Index("ix_behaviour_events_account", "account_id", "occurred_at"),
        Index("ix_behaviour_events_actor", "actor_id", "occurred_at"),
        Index("ix_behaviour_events_match", "match_status"),
    )


class QuarantinedRecord(Base):
    """A raw record no connector could turn into events, with the reason why."""

    __tablename__ = "signal_quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(40))
    source_name: Mapped[str | None] = mapped_column(String(80))
    raw_id: Mapped[int] = mapped_column(ForeignKey("signal_raw_records.id"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("signal_batches.id"))
    reason_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12), default=QuarantineStatus.OPEN)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("raw_id"),
        Index("ix_signal_quarantine_status", "status", "connector"),
    )


class IngestBatch(Base):
    """One run of records through the pipeline; its counts always reconcile.

    ``received = accepted + quarantined + duplicates``, where a duplicate is a
    record whose events (or whose quarantine entry) Waggle already holds.
    """

    __tablename__ = "signal_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(40))
    source_name: Mapped[str | None] = mapped_column(String(80))
    label: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(12), default=BatchStatus.RUNNING)
    received: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    events_stored: Mapped[int] = mapped_column(Integer, default=0)
    started_by: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(String(500))


class SignalSource(Base):
    """A configured connection (one IMAP mailbox, one WeCom corp) and its sync state."""

    __tablename__ = "signal_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    connector: Mapped[str] = mapped_column(String(40))
    config: Mapped[dict[str, object]] = mapped_column(JsonText, default=dict)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    newest_event_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    received_total: Mapped[int] = mapped_column(Integer, default=0)
    quarantined_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class IdentityLink(Base):
    """Ties a platform identity (a WeCom user id, a group chat) to Waggle records.

    A person link names an employee or a contact; a room link may name the
    account or the opportunity a group chat is about (the explicit mapping that
    beats the matcher's guess).
    """

    __tablename__ = "identity_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(200))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("opportunities.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (UniqueConstraint("platform", "external_id"),)


class MaterialKind(enum.StrEnum):
    """What a tracked material is, for filters and for the event's attributes."""

    DECK = "deck"
    CASE_STUDY = "case_study"
    WHITEPAPER = "whitepaper"
    PRICE_SHEET = "price_sheet"


class Material(Base):
    """A deck, case study or sheet reps share with customers through tracked links.

    The pages are plain text (a little markdown: headings, bullets, paragraphs)
    kept in the row and rendered escaped on the viewer page, so an installation
    needs no file store and no converter.
    """

    __tablename__ = "materials"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    industry: Mapped[str | None] = mapped_column(String(80))
    product: Mapped[str | None] = mapped_column(String(120))
    stage_key: Mapped[str | None] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(10), default="zh-CN")
    page_count: Mapped[int] = mapped_column(Integer)
    pages: Mapped[list[str]] = mapped_column(JsonText, default=list)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class TrackedLink(Base):
    """One shareable address (``/t/<token>``) of a material, owned by an employee.

    The owner is the employee the views are attributed to (the event's actor)
    and whose row scope decides who may read the views.
    """

    __tablename__ = "tracked_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("opportunities.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("employees.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    is_revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class MaterialView(Base):
    """One viewer's reading session of a tracked link, with dwell per page.

    ``viewer_hash`` is the SHA-256 of the random per-browser key kept in a
    cookie, so several readers of a forwarded link are told apart without
    storing the key itself. ``pages`` maps page numbers (as strings, JSON keys)
    to seconds.
    """

    __tablename__ = "material_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("tracked_links.id"))
    viewer_hash: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    pages: Mapped[dict[str, int]] = mapped_column(JsonText, default=dict)
    max_page: Mapped[int] = mapped_column(Integer, default=0)
    total_dwell_seconds: Mapped[int] = mapped_column(Integer, default=0)
    beacon_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_material_views_viewer", "link_id", "viewer_hash", "last_seen_at"),
    )
