"""HTTP routes of the channels context: the signed-in user's own inbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from waggle.apikit import ActorDep, SessionDep
from waggle.channels import inbox

TAG = "channels"


class NotificationRead(BaseModel):
    """One notification as the inbox shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    link: str | None
    locale: str
    source: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None


class InboxRead(BaseModel):
    """The caller's notifications, newest first, and how many are unread."""

    items: list[NotificationRead]
    unread: int


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/inbox", tags=[TAG])

    @routes.get("", response_model=InboxRead)
    def list_(
        session: SessionDep,
        actor: ActorDep,
        include_read: bool = False,
        limit: int = 50,
    ) -> Any:
        """List the caller's own notifications (unread only unless include_read)."""
        items = inbox.list_inbox(session, actor, include_read=include_read, limit=limit)
        return {"items": items, "unread": inbox.count_unread(session, actor)}

    @routes.post("/{notification_id}/read", response_model=NotificationRead)
    def read(notification_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """Mark one of the caller's own notifications read."""
        return inbox.mark_read(session, actor, notification_id)

    return [routes]
