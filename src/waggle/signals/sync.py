"""Pulling configured sources: cursors, retries with backoff, sync status.

A source (one row of ``signal_sources``) names a connector and its settings.
:func:`sync_source` asks the connector's pull side for the records after the
stored cursor, runs them through the pipeline and only then stores the new
cursor, so a crash re-reads records instead of skipping them. A failure is
retried a few times with exponential backoff inside the call; when it still
fails, the source records the error and is not tried again before
``next_attempt_at``, which backs off further with every consecutive failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.core.errors import UpstreamFailure
from waggle.signals.events import PullSource, RawRecord
from waggle.signals.ingest import BatchReport, Pipeline, ingest_batch
from waggle.signals.models import BehaviourEvent, SignalSource
from waggle.signals.service import source_named

logger = logging.getLogger(__name__)

PullFactory = Callable[[SignalSource], PullSource]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing fetch is tried again."""

    attempts: int = 3
    first_delay_seconds: float = 1.0
    factor: float = 2.0
    max_delay_seconds: float = 60.0
    # Between runs: a source that failed n times in a row waits
    # min(base * factor^(n-1), max) before the next run may try it.
    cooldown_seconds: float = 60.0
    max_cooldown_seconds: float = 3600.0

    def delay(self, attempt: int) -> float:
        """Return the pause before retry ``attempt`` (1 = the first retry)."""
        value = self.first_delay_seconds * self.factor ** (attempt - 1)
        return float(min(value, self.max_delay_seconds))

    def cooldown(self, failures: int) -> dt.timedelta:
        value = self.cooldown_seconds * self.factor ** max(failures - 1, 0)
        return dt.timedelta(seconds=min(value, self.max_cooldown_seconds))


@dataclass(frozen=True)
class SyncResult:
    source: str
    report: BatchReport | None
    cursor: str | None
    error: str | None = None


def fetch_with_retries(
    source: PullSource,
    cursor: str | None,
    *,
    limit: int,
    policy: RetryPolicy,
    sleep: Sleep = time.sleep,
) -> tuple[list[RawRecord], str | None]:
    """Fetch once, retrying an ``UpstreamFailure`` as ``policy`` says.

    Raises:
        UpstreamFailure: the last attempt failed too.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return source.fetch(cursor, limit=limit)
        except UpstreamFailure as error:
            if attempt == policy.attempts:
                raise
            logger.warning(
                "fetch failed, retrying",
                extra={"source": source.name, "attempt": attempt, "error": str(error)},
            )
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable: the loop returns or raises")


def sync_source(
    sessions: sessionmaker[Session],
    actor: Actor,
    name: str,
    *,
    pull: PullSource,
    pipeline: Pipeline,
    limit: int = 500,
    policy: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
) -> SyncResult:
    """Fetch what follows the stored cursor of source ``name`` and ingest it.

    Errors are recorded on the source, not raised: the caller (a periodic job,
    the CLI) reads them in the result and in the sync status.
    """
    policy = policy or RetryPolicy()
    cursor = _start_attempt(sessions, name)
    try:
        records, next_cursor = fetch_with_retries(
            pull, cursor, limit=limit, policy=policy, sleep=sleep
        )
    except UpstreamFailure as error:
        _record_failure(sessions, name, error, policy)
        return SyncResult(name, None, cursor, error=error.message)
    report = ingest_batch(sessions, actor, pipeline, records, label=f"sync {name}")
    _record_success(sessions, name, next_cursor, report)
    return SyncResult(name, report, next_cursor)


def _start_attempt(sessions: sessionmaker[Session], name: str) -> str | None:
    with transaction(sessions) as session:
        source = source_named(session, name)
        source.last_attempt_at = now()
        return source.cursor


def _record_failure(
    sessions: sessionmaker[Session],
    name: str,
    error: UpstreamFailure,
    policy: RetryPolicy,
) -> None:
    with transaction(sessions) as session:
        source = source_named(session, name)
        source.error_count += 1
        source.consecutive_failures += 1
        source.last_error = error.message[:500]
        source.last_error_at = now()
        source.next_attempt_at = now() + policy.cooldown(source.consecutive_failures)
    logger.error(
        "source sync failed",
        extra={"source": name, "error": error.message, "code": error.code},
    )


def _record_success(
    sessions: sessionmaker[Session],
    name: str,
    cursor: str | None,
    report: BatchReport,
) -> None:
    with transaction(sessions) as session:
        source = source_named(session, name)
        source.cursor = cursor
        source.last_success_at = now()
        source.consecutive_failures = 0
        source.next_attempt_at = None
        source.received_total += report.received
        source.quarantined_total += report.quarantined
        source.newest_event_at = _newest_event(session, report.batch_id) or (
            source.newest_event_at
        )


def _newest_event(session: Session, batch_id: int) -> dt.datetime | None:
    newest: dt.datetime | None = session.scalar(
        select(func.max(BehaviourEvent.occurred_at)).where(
            BehaviourEvent.batch_id == batch_id
        )
    )
    return newest


def is_due(source: SignalSource, at: dt.datetime) -> bool:
    """Whether a periodic run may try ``source`` at ``at`` (enabled, not cooling)."""
    if not source.is_enabled:
        return False
    return source.next_attempt_at is None or source.next_attempt_at <= at


__all__ = [
    "RetryPolicy",
    "SyncResult",
    "fetch_with_retries",
    "is_due",
    "sync_source",
]
