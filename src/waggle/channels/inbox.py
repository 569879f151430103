"""The in-app inbox: a channel that writes rows, and the owner's queries on them.

An inbox is personal: whatever a role's row scope (a manager sees the team's
accounts), a user lists and marks read only the notifications addressed to
their own employee.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.channels.base import DeliveryReceipt, Message
from waggle.channels.errors import MessageInvalid
from waggle.channels.models import Notification
from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.core.errors import NotFound
from waggle.governance import authorize, ensure_in_scope, record_audit

RESOURCE = "notifications"
MAX_LIST = 200

SessionSource = Session | sessionmaker[Session]


@contextmanager
def unit_of_work(source: SessionSource) -> Iterator[Session]:
    """Yield the caller's session (flushed, not committed) or a new transaction."""
    if isinstance(source, Session):
        yield source
        source.flush()
        return
    with transaction(source) as session:
        yield session


class InboxChannel:
    """Delivers a message as a row in the recipient employee's inbox."""

    name = "inbox"

    def __init__(self, sessions: SessionSource):
        self.sessions = sessions

    def recipient_label(self, message: Message) -> str:
        return f"employee:{message.employee_id}"

    def send(self, message: Message) -> DeliveryReceipt:
        """Store the notification; the receipt's message id is the row id.

        Raises:
            MessageInvalid: the message names no employee.
        """
        if message.employee_id is None:
            raise MessageInvalid("inbox message.employee_id: expected an employee id")
        with unit_of_work(self.sessions) as session:
            notification = Notification(
                employee_id=message.employee_id,
                title=message.title,
                body=message.body,
                link=message.link_url,
                locale=message.locale,
                dedup_key=message.dedup_key,
                source=message.source,
            )
            session.add(notification)
            session.flush()
            notification_id = notification.id
        return DeliveryReceipt(
            self.name, self.recipient_label(message), str(notification_id)
        )


def list_inbox(
    session: Session, actor: Actor, *, include_read: bool = False, limit: int = 50
) -> list[Notification]:
    """Return the actor's own notifications, newest first (unread only by default).

    Raises:
        PolicyDenied: the actor's roles may not read notifications.
    """
    authorize(session, actor, "read", RESOURCE)
    if actor.employee_id is None:
        return []
    statement = select(Notification).where(
        Notification.employee_id == actor.employee_id
    )
    if not include_read:
        statement = statement.where(Notification.read_at.is_(None))
    statement = statement.order_by(
        Notification.created_at.desc(), Notification.id.desc()
    ).limit(max(1, min(limit, MAX_LIST)))
    items = list(session.scalars(statement))
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[item.id for item in items],
    )
    return items


def count_unread(session: Session, actor: Actor) -> int:
    """Return how many of the actor's own notifications are unread.

    Raises:
        PolicyDenied: the actor's roles may not read notifications.
    """
    authorize(session, actor, "read", RESOURCE)
    if actor.employee_id is None:
        return 0
    statement = select(func.count(Notification.id)).where(
        Notification.employee_id == actor.employee_id,
        Notification.read_at.is_(None),
    )
    return int(session.scalar(statement) or 0)


def mark_read(session: Session, actor: Actor, notification_id: int) -> Notification:
    """Mark one of the actor's own notifications read (again: no change).

    Raises:
        NotFound: no notification has that id.
        PolicyDenied: it belongs to another employee's inbox.
    """
    authorize(session, actor, "update", RESOURCE)
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise NotFound(f"notification {notification_id} does not exist")
    ensure_in_scope(
        session,
        actor,
        "own",
        owner_id=notification.employee_id,
        action="update",
        resource=RESOURCE,
        record_id=notification_id,
    )
    if notification.read_at is None:
        notification.read_at = now()
        session.flush()
    record_audit(
        session,
        actor,
        action="update",
        resource=RESOURCE,
        record_ids=[notification_id],
        detail="read_at",
    )
    return notification
