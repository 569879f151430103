"""The in-process event stream of the embedded mode.

After each committed chunk the pipeline publishes the events it stored, in
the order it stored them; rules and scores subscribe here. A subscriber that
raises is logged and does not stop the others, nor undo the ingestion: the
events are already safe in the database and can be re-read from it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A behaviour event as subscribers see it, after matching and storage."""

    id: int
    source: str
    source_id: str
    event_type: str
    channel: str
    occurred_at: Any
    actor_id: int | None
    contact_id: int | None
    account_id: int | None
    opportunity_id: int | None
    speaker: str | None
    attributes: dict[str, Any]
    parent_id: int | None = None


Subscriber = Callable[[Sequence[StoredEvent]], None]

_subscribers: list[Subscriber] = []
_lock = threading.Lock()


def subscribe(subscriber: Subscriber) -> Callable[[], None]:
    """Call ``subscriber`` with every stored chunk; return the unsubscribe function."""
    with _lock:
        _subscribers.append(subscriber)

    def unsubscribe() -> None:
        with _lock:
            if subscriber in _subscribers:
                _subscribers.remove(subscriber)

    return unsubscribe


def publish(events: Sequence[StoredEvent]) -> None:
    """Hand ``events`` to every subscriber, in subscription order."""
    if not events:
        return
    with _lock:
        current = list(_subscribers)
    for subscriber in current:
        try:
            subscriber(events)
        except Exception:
            logger.exception(
                "event subscriber failed", extra={"subscriber": repr(subscriber)}
            )


__all__ = ["StoredEvent", "Subscriber", "publish", "subscribe"]
