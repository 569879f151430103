"""Web pages: the insights dashboards (pipeline, forecast, health, anomalies)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
