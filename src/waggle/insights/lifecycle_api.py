"""HTTP routes of the model lifecycle: challengers, comparison reports, promotion."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Return this module's routers for the application."""
    return []
