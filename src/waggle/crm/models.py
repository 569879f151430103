"""CRM tables: accounts, contacts, pipelines, opportunities and what hangs off them."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, Money, UtcDateTime


class DecisionRole(enum.StrEnum):
    """A contact's part in the customer's buying decision (决策链角色)."""

    DECISION_MAKER = "decision_maker"
    INFLUENCER = "influencer"
    USER = "user"
    PROCUREMENT = "procurement"
    FINANCE = "finance"
    TECHNICAL = "technical"


class OpportunityStatus(enum.StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ForecastCategory(enum.StrEnum):
    PIPELINE = "pipeline"
    BEST_CASE = "best_case"
    COMMIT = "commit"
    CLOSED = "closed"
    OMITTED = "omitted"


class ActivityKind(enum.StrEnum):
    CALL = "call"
    MEETING = "meeting"
    VISIT = "visit"
    EMAIL = "email"
    NOTE = "note"
    TASK = "task"


class Account(Base):
    """A customer company (客户)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    normalized_name: Mapped[str] = mapped_column(String(200), index=True)
    industry: Mapped[str | None] = mapped_column(String(60))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    size: Mapped[str | None] = mapped_column(String(20))
    province: Mapped[str | None] = mapped_column(String(40))
    city: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(300))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"), index=True)
    credit_code: Mapped[str | None] = mapped_column(String(18), index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    phone_key: Mapped[str | None] = mapped_column(String(40), index=True)
    email_domain: Mapped[str | None] = mapped_column(String(120), index=True)
    website: Mapped[str | None] = mapped_column(String(200))
    is_in_public_pool: Mapped[bool] = mapped_column(Boolean, default=False)
    pool_entered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_followed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, default=now, onupdate=now
    )

    __table_args__ = (
        Index("ix_accounts_public_pool", "is_in_public_pool", "pool_entered_at"),
    )


class Contact(Base):
    """A person at a customer (联系人) with their role in the decision chain."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str | None] = mapped_column(String(120))
    decision_role: Mapped[str | None] = mapped_column(String(30))
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(200), index=True)
    wechat_id: Mapped[str | None] = mapped_column(String(80))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, default=now, onupdate=now
    )


class Pipeline(Base):
    """A sales process: an ordered list of stages (销售流程)."""

    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    stages: Mapped[list[PipelineStage]] = relationship(
        order_by="PipelineStage.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class PipelineStage(Base):
    """One stage of a pipeline with its default probability and required fields."""

    __tablename__ = "pipeline_stages"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    key: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer)
    probability: Mapped[int] = mapped_column(Integer)
    required_fields: Mapped[list[str]] = mapped_column(JsonText, default=list)
    is_won: Mapped[bool] = mapped_column(Boolean, default=False)
    is_lost: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("pipeline_id", "key"),)


class Opportunity(Base):
    """A deal (商机) moving through a pipeline."""

    __tablename__ = "opportunities"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("pipeline_stages.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    expected_close_on: Mapped[dt.date | None] = mapped_column(Date)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default=OpportunityStatus.OPEN)
    loss_reason: Mapped[str | None] = mapped_column(String(200))
    forecast_category: Mapped[str] = mapped_column(
        String(20), default=ForecastCategory.PIPELINE
    )
    manual_probability: Mapped[int | None] = mapped_column(Integer)
    customer_pain_points: Mapped[str | None] = mapped_column(Text)
    decision_maker_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id")
    )
    budget_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    stage_entered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, default=now, onupdate=now
    )

    __table_args__ = (
        Index("ix_opportunities_status_close", "status", "expected_close_on"),
    )


class StageChange(Base):
    """One move of an opportunity between stages, with time spent in the old one."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(
        ForeignKey("opportunities.id"), index=True
    )
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_stages.id"))
    to_stage_id: Mapped[int] = mapped_column(ForeignKey("pipeline_stages.id"))
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    seconds_in_previous_stage: Mapped[int | None] = mapped_column(Integer)
    changed_by: Mapped[str | None] = mapped_column(String(80))


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)
    sku: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(60))
    unit_price: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class LineItem(Base):
    """A product on an opportunity, with quantity, price and discount."""

    __tablename__ = "line_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(
        ForeignKey("opportunities.id"), index=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    discount_percent: Mapped[float] = mapped_column(Float, default=0.0)


class Quota(Base):
    """A sales target for one employee over one period (配额)."""

    __tablename__ = "quotas"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(80), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("employees.id"), index=True)
    period: Mapped[str] = mapped_column(String(10))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")

    __table_args__ = (UniqueConstraint("owner_id", "period"),)


class Activity(Base):
    """A manually logged activity or note (跟进记录)."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), index=True
    )
    opportunity_id: Mapped[int | None] = mapped_column(
        ForeignKey("opportunities.id"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class PoolEvent(Base):
    """An account entering or leaving the public pool (公海), and why."""

    __tablename__ = "pool_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)

    __table_args__ = (
        Index("ix_pool_events_employee_kind", "employee_id", "kind", "occurred_at"),
    )


class MergeRecord(Base):
    """A duplicate folded into a survivor, with the loser's fields kept for history."""

    __tablename__ = "merge_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(40))
    survivor_id: Mapped[int] = mapped_column(Integer, index=True)
    merged_id: Mapped[int] = mapped_column(Integer, index=True)
    merged_snapshot: Mapped[dict[str, object]] = mapped_column(JsonText)
    merged_by: Mapped[str] = mapped_column(String(80))
    merged_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class ImportRun(Base):
    """One import of one file, with counts that reconcile."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(300))
    encoding: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    imported_by: Mapped[str] = mapped_column(String(80))
    file_format: Mapped[str] = mapped_column(String(10), default="csv")
    columns: Mapped[list[str]] = mapped_column(JsonText, default=list)
    mapping: Mapped[dict[str, object] | None] = mapped_column(JsonText)
    replay_of_id: Mapped[int | None] = mapped_column(ForeignKey("import_runs.id"))


class ImportReject(Base):
    """A row an import refused, kept whole with the reason so it can be replayed."""

    __tablename__ = "import_rejects"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("import_runs.id"), index=True)
    row_number: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(80))
    code: Mapped[str] = mapped_column(String(40), default="invalid")
    reason: Mapped[str] = mapped_column(String(300))
    raw: Mapped[dict[str, object]] = mapped_column(JsonText)
    replayed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
