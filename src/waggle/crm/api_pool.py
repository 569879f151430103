"""HTTP routes of this part of the CRM (filled in by its owner)."""

from fastapi import APIRouter


def router() -> APIRouter:
    return APIRouter()
