"""Insights tables: model versions (the registry) and opportunity scores.

A model version holds everything needed to reproduce its predictions (the
naive-Bayes counts, the bucketing it expects, its calibration check) in
``parameters``; every stored score names the version that produced it, so a
figure shown last month can still be traced to the model behind it.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime


class ModelKind(enum.StrEnum):
    """What a model version is: the trained win model or the stage fallback."""

    WIN_NAIVE_BAYES = "win_naive_bayes"
    WIN_LIGHTGBM = "win_lightgbm"
    STAGE_DEFAULT = "stage_default"


WIN_KINDS = (ModelKind.WIN_NAIVE_BAYES, ModelKind.WIN_LIGHTGBM)


class ModelStatus(enum.StrEnum):
    """Where a version stands; only an approved promotion makes a champion."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    RETIRED = "retired"


class ModelVersion(Base):
    """One trained (or rule-based) model with the facts of its training."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    version: Mapped[str] = mapped_column(String(80), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    trained_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    cutoff: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    won_count: Mapped[int] = mapped_column(Integer, default=0)
    lost_count: Mapped[int] = mapped_column(Integer, default=0)
    parameters: Mapped[dict[str, object]] = mapped_column(JsonText, default=dict)
    status: Mapped[str] = mapped_column(String(12), default=ModelStatus.CHALLENGER)
    approved_by: Mapped[str | None] = mapped_column(String(80))
    created_by: Mapped[str] = mapped_column(String(80))

    __table_args__ = (Index("ix_model_versions_kind_status", "kind", "status"),)


class OpportunityScore(Base):
    """One scoring of one opportunity; ``is_latest`` marks the current one.

    ``manual_probability`` is the rep's own figure at scoring time, copied
    beside the model's and never changed by it.
    """

    __tablename__ = "opportunity_scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    probability: Mapped[float] = mapped_column(Float)
    health: Mapped[int] = mapped_column(Integer)
    manual_probability: Mapped[int | None] = mapped_column(Integer)
    factors: Mapped[list[dict[str, object]]] = mapped_column(JsonText, default=list)
    levels: Mapped[dict[str, str]] = mapped_column(JsonText, default=dict)
    note: Mapped[str | None] = mapped_column(String(300))
    as_of: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    computed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("ix_opportunity_scores_latest", "opportunity_id", "is_latest"),
        Index("ix_opportunity_scores_model", "model_version_id"),
    )


class PromotionStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


class ModelPromotion(Base):
    """A request to make a challenger the champion, and the decision on it.

    Sales ops ask (``requested_by``); a director decides (``decided_by``),
    never the same person.
    """

    __tablename__ = "model_promotions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(12), default=PromotionStatus.REQUESTED)
    reason: Mapped[str | None] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(80))
    requested_by_user_id: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    decision_note: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_model_promotions_version", "model_version_id"),)


class ModelReport(Base):
    """The champion/challenger comparison of one challenger: figures and HTML."""

    __tablename__ = "model_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id"), unique=True
    )
    champion_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id")
    )
    cutoff: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    holdout_until: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    figures: Mapped[dict[str, object]] = mapped_column(JsonText, default=dict)
    html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
