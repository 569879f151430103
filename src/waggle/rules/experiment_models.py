"""Experiment tables: A/B tests of intervention rules and who was exposed.

An experiment runs one rule as a test: each opportunity the rule fires for is
assigned to an arm by hashing, its first exposure is logged once, and only the
treatment arm gets the rule's action.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, UtcDateTime


class ExperimentStatus(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class Experiment(Base):
    """One rule run as an A/B test, with the plan its report is judged by."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The rule's id or key as the rule engine names it; rules live in the
    # engine's tables, so this is a reference by value, not a foreign key.
    rule_ref: Mapped[str] = mapped_column(String(120), index=True)
    metric: Mapped[str] = mapped_column(String(30))
    holdout_share: Mapped[float] = mapped_column(Float)
    salt: Mapped[str] = mapped_column(String(64))
    window_days: Mapped[int] = mapped_column(Integer)
    planned_sample_size: Mapped[int] = mapped_column(Integer)
    minimum_detectable_effect: Mapped[float] = mapped_column(Float)
    confidence_level: Mapped[float] = mapped_column(Float, default=0.95)
    status: Mapped[str] = mapped_column(String(20), default=ExperimentStatus.RUNNING)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ExperimentExposure(Base):
    """The first time a rule would have acted on a unit under an experiment."""

    __tablename__ = "experiment_exposures"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id"))
    arm: Mapped[str] = mapped_column(String(10))
    rule_ref: Mapped[str] = mapped_column(String(120))
    exposed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("experiment_id", "unit_id"),
        Index("ix_experiment_exposures_arm", "experiment_id", "arm"),
    )
