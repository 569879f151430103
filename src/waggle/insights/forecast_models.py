"""Tables of forecasts and customer health.

A customer-health snapshot keeps one account's risk as computed at one
instant with the thresholds file then in force (``thresholds``), its signals
and its worded reasons, so a dashboard reads the last run instead of
recomputing 37 signals for every account, and a figure shown last week can
still be explained. ``is_latest`` marks the account's current snapshot.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from waggle.core.clock import now
from waggle.core.db import Base, JsonText, UtcDateTime


class CustomerHealthScore(Base):
    """One account's customer health (risk 0-100) as of one instant."""

    __tablename__ = "customer_health_scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    risk: Mapped[int] = mapped_column(Integer)
    health: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[dict[str, object]]] = mapped_column(JsonText, default=list)
    signals: Mapped[dict[str, object]] = mapped_column(JsonText, default=dict)
    thresholds: Mapped[str] = mapped_column(String(300))
    as_of: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    computed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=now)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("ix_customer_health_scores_latest", "account_id", "is_latest"),
        Index("ix_customer_health_scores_owner", "owner_id", "is_latest"),
    )
