"""Periodic jobs of the embedded mode (the public-pool sweep, retention, ...).

Contexts register jobs; ``waggle serve`` runs them on a background thread at
their interval. Each run gets a session factory and commits its own work, so a
failing job is logged and retried at the next interval without stopping others.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from waggle.core.clock import now

logger = logging.getLogger(__name__)

JobFunction = Callable[[sessionmaker[Session]], object]


@dataclass
class Job:
    name: str
    interval: dt.timedelta
    run: JobFunction
    next_run_at: dt.datetime | None = None


@dataclass
class JobRunner:
    """Runs registered jobs when they fall due; ``tick`` is the unit tests drive."""

    sessions: sessionmaker[Session]
    jobs: list[Job] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def add(self, name: str, interval: dt.timedelta, run: JobFunction) -> None:
        self.jobs.append(Job(name=name, interval=interval, run=run))

    def tick(self) -> list[str]:
        """Run every job that is due now; return the names of those that ran."""
        ran = []
        for job in self.jobs:
            current = now()
            if job.next_run_at is not None and current < job.next_run_at:
                continue
            job.next_run_at = current + job.interval
            self._run_one(job)
            ran.append(job.name)
        return ran

    def _run_one(self, job: Job) -> None:
        try:
            job.run(self.sessions)
        except Exception:
            logger.exception("job failed", extra={"job": job.name})
        else:
            logger.info("job ran", extra={"job": job.name})

    def start(self, *, poll_seconds: float = 30.0) -> None:
        """Run jobs on a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(poll_seconds)

        self._thread = threading.Thread(target=loop, name="waggle-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
