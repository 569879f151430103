"""HTTP routes of lineage: provenance of figures, drill-down and replay."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Return this module's routers for the application."""
    return []
