"""HTTP routes of forecasts, customer health and manager views."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Return this module's routers for the application."""
    return []
