"""Web pages: the governance pages (catalogue, policies, approvals, audit log)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
