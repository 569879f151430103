"""Web pages: the lineage pages (provenance of figures, drill-down)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
