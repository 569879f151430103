"""Rules tables: the rules themselves, engine state, firings and their actions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime


class RuleRecord(Base):
    """A rule as saved: its definition in the rule language and its revision."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    definition: Mapped[dict[str, object]] = mapped_column(JsonText)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_template: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime, default=now, onupdate=now
    )


class RuleStateRow(Base):
    """The engine's state for one rule and key (window, run, deadline...)."""

    __tablename__ = "rule_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_key: Mapped[str] = mapped_column(String(80))
    key_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, object]] = mapped_column(JsonText)
    deadline: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("rule_key", "key_id"),
        Index("ix_rule_state_deadline", "deadline"),
    )


class EngineCursor(Base):
    """How far the engine has read the event stream, and its event time."""

    __tablename__ = "rule_engine_cursors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    watermark: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class RuleFiring(Base):
    """One firing, with the facts that caused it; stored once per fingerprint."""

    __tablename__ = "rule_firings"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_key: Mapped[str] = mapped_column(String(80), index=True)
    rule_version: Mapped[str] = mapped_column(String(16))
    per: Mapped[str] = mapped_column(String(12))
    key_id: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(200), unique=True)
    fired_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(12))
    arm: Mapped[str | None] = mapped_column(String(10))
    trigger_event_id: Mapped[int | None] = mapped_column(Integer)
    opportunity_id: Mapped[int | None] = mapped_column(
        ForeignKey("opportunities.id"), index=True
    )
    account_id: Mapped[int | None] = mapped_column(Integer)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    facts: Mapped[list[dict[str, object]]] = mapped_column(JsonText)
    explanation: Mapped[dict[str, str]] = mapped_column(JsonText)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)


class RuleAction(Base):
    """An action a firing asked for, executed (or deferred) after commit."""

    __tablename__ = "rule_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    firing_id: Mapped[int] = mapped_column(ForeignKey("rule_firings.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, object]] = mapped_column(JsonText)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, object] | None] = mapped_column(JsonText)
    last_error: Mapped[str | None] = mapped_column(String(500))
    done_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("firing_id", "position"),
        Index("ix_rule_actions_due", "status", "not_before"),
    )
