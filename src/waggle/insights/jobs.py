"""Keeping scores fresh: the scheduled full rescore and the incremental one.

:func:`full_rescore` recomputes every open opportunity with the champion (a
periodic job); :func:`incremental_rescore` returns the event-stream
subscriber that rescores only the opportunities a chunk of behaviour events
concerns. Both run as the insights scorer, through the governed service, and
both announce the scores whose health moved as :class:`ScoreChanged` notices
to whoever subscribed with :func:`subscribe_score_changes`, after their
transaction committed (a listener never sees a score that was rolled back).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.insights.health import JOB_ACTOR
from waggle.insights.models import OpportunityScore
from waggle.signals.stream import StoredEvent, Subscriber

logger = logging.getLogger(__name__)

CHUNK = 900


@dataclass(frozen=True, slots=True)
class ScoreChanged:
    """An opportunity whose health moved, with the version that scored it."""

    opportunity_id: int
    previous_health: int | None
    health: int
    probability: float
    model_version_id: int


ScoreListener = Callable[[Sequence[ScoreChanged]], None]

_listeners: list[ScoreListener] = []
_lock = threading.Lock()


def subscribe_score_changes(listener: ScoreListener) -> Callable[[], None]:
    """Call ``listener`` with each batch of changed scores; return the unsubscribe."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish_score_changes(changes: Sequence[ScoreChanged]) -> None:
    """Hand ``changes`` to every listener; a failing listener stops no other."""
    if not changes:
        return
    with _lock:
        current = list(_listeners)
    for listener in current:
        try:
            listener(changes)
        except Exception:
            logger.exception(
                "score listener failed", extra={"listener": repr(listener)}
            )


def full_rescore(sessions: sessionmaker[Session]) -> int:
    """Rescore every open opportunity; return how many were scored (a periodic job)."""
    changes, count = _rescore(sessions, None)
    publish_score_changes(changes)
    logger.info(
        "opportunities rescored",
        extra={"opportunities": count, "changed": len(changes)},
    )
    return count


def incremental_rescore(sessions: sessionmaker[Session]) -> Subscriber:
    """Return the stream subscriber that rescores the open deals events concern."""

    def subscriber(events: Sequence[StoredEvent]) -> None:
        ids = sorted({e.opportunity_id for e in events if e.opportunity_id})
        if not ids:
            return
        changes, _count = _rescore(sessions, ids)
        publish_score_changes(changes)

    return subscriber


def _rescore(
    sessions: sessionmaker[Session], ids: list[int] | None
) -> tuple[list[ScoreChanged], int]:
    # Imported here: the service builds on the modules this one sits beside.
    from waggle.insights.service import score_opportunities

    with transaction(sessions) as session:
        previous = latest_health(session, ids)
        stored = score_opportunities(
            session, system_actor(JOB_ACTOR), ids, open_only=True
        )
        changes = changed_scores(previous, stored)
    return changes, len(stored)


def latest_health(session: Session, ids: Sequence[int] | None) -> dict[int, int]:
    """Return the current stored health by opportunity (``None``: all of them)."""
    query = select(OpportunityScore.opportunity_id, OpportunityScore.health).where(
        OpportunityScore.is_latest.is_(True)
    )
    if ids is None:
        return {key: health for key, health in session.execute(query)}
    found: dict[int, int] = {}
    for start in range(0, len(ids), CHUNK):
        part = list(ids[start : start + CHUNK])
        rows = session.execute(query.where(OpportunityScore.opportunity_id.in_(part)))
        found.update({key: health for key, health in rows})
    return found


def changed_scores(
    previous: dict[int, int], stored: Sequence[OpportunityScore]
) -> list[ScoreChanged]:
    """Return the scores whose health differs from before (or that are new)."""
    return [
        ScoreChanged(
            opportunity_id=score.opportunity_id,
            previous_health=previous.get(score.opportunity_id),
            health=score.health,
            probability=score.probability,
            model_version_id=score.model_version_id,
        )
        for score in stored
        if previous.get(score.opportunity_id) != score.health
    ]


__all__ = [
    "ScoreChanged",
    "ScoreListener",
    "changed_scores",
    "full_rescore",
    "incremental_rescore",
    "latest_health",
    "publish_score_changes",
    "subscribe_score_changes",
]


def customer_health_job(sessions: sessionmaker[Session]) -> int:
    """Store a fresh customer-health snapshot of every account (a daily job)."""
    from waggle.insights.customer_health import store_customer_health

    with sessions.begin() as session:
        return store_customer_health(session, system_actor("customer-health"))
