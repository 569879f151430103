"""Periodic jobs run when due, survive a failing neighbour, and wait their interval."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker

from waggle.core.clock import FixedClock
from waggle.core.jobs import JobRunner


def test_due_jobs_run_once_per_interval(
    fixed_clock: FixedClock,
) -> None:
    """A job runs at the first tick, then not again until its interval has passed."""
    calls: list[str] = []
    runner = JobRunner(sessionmaker())
    runner.add("hourly", dt.timedelta(hours=1), lambda s: calls.append("hourly"))

    first = runner.tick()
    fixed_clock.advance(minutes=59)
    early = runner.tick()
    fixed_clock.advance(minutes=1)
    due = runner.tick()

    assert (first, early, due) == (["hourly"], [], ["hourly"])
    assert calls == ["hourly", "hourly"]


def test_a_failing_job_does_not_stop_the_others(
    fixed_clock: FixedClock,
) -> None:
    """An exception in one job is logged and the next job still runs."""
    calls: list[str] = []

    def broken(_: sessionmaker[Session]) -> None:
        raise RuntimeError("boom")

    runner = JobRunner(sessionmaker())
    runner.add("broken", dt.timedelta(hours=1), broken)
    runner.add("fine", dt.timedelta(hours=1), lambda s: calls.append("fine"))

    ran = runner.tick()

    assert ran == ["broken", "fine"]
    assert calls == ["fine"]
