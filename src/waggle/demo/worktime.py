"""Plausible instants for demo events: business hours in China, seasonal volume.

Every generated instant derives from one anchor (the build's "today") and a
seeded random source, so a seed always yields the same company.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import random
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

CHINA_OFFSET = dt.timedelta(hours=8)

# Relative deal volume per month: the Spring Festival dip in February, the
# National Day holiday in October, and the year-end budget rush in December.
MONTH_VOLUME = (0.9, 0.6, 1.1, 1.0, 1.0, 1.1, 0.9, 0.9, 1.1, 0.8, 1.1, 1.2)


def work_instant(rng: random.Random, day: dt.date) -> dt.datetime:
    """Return an aware UTC instant during China office hours on ``day``."""
    minutes = rng.randint(9 * 60, 18 * 60 - 1)
    local = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minutes)
    return (local - CHINA_OFFSET).replace(tzinfo=dt.UTC)


def china_date(instant: dt.datetime) -> dt.date:
    """Return the calendar date of ``instant`` in China."""
    return (instant + CHINA_OFFSET).date()


def to_weekday(rng: random.Random, day: dt.date) -> dt.date:
    """Move most weekend days to the following Monday; sales rarely work Sundays."""
    if day.weekday() >= 5 and rng.random() < 0.85:
        return day + dt.timedelta(days=7 - day.weekday())
    return day


def seasonal_day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    """Draw a day in ``[first, last]`` following :data:`MONTH_VOLUME`."""
    span = (last - first).days
    peak = max(MONTH_VOLUME)
    while True:
        day = first + dt.timedelta(days=rng.randint(0, span))
        if rng.random() * peak <= MONTH_VOLUME[day.month - 1]:
            return min(to_weekday(rng, day), last)


def log_normal(rng: random.Random, median: float, sigma: float) -> float:
    """Draw from a log-normal distribution with the given median and sigma."""
    return median * math.exp(rng.gauss(0.0, sigma))


def weighted(rng: random.Random, pairs: tuple[tuple[T, float], ...]) -> T:
    """Pick one item of ``(item, weight)`` pairs by weight."""
    items, cumulative = _cumulative(pairs)
    choice: T = rng.choices(items, cum_weights=cumulative)[0]
    return choice


@functools.lru_cache(maxsize=64)
def _cumulative(
    pairs: tuple[tuple[Any, float], ...],
) -> tuple[tuple[Any, ...], tuple[float, ...]]:
    items = tuple(item for item, _weight in pairs)
    return items, tuple(itertools.accumulate(weight for _item, weight in pairs))


def cumulative_weights(weights: Sequence[float]) -> list[float]:
    """Return running totals of ``weights``, for ``Random.choices(cum_weights=)``."""
    return list(itertools.accumulate(weights))


def quarter_of(day: dt.date) -> str:
    """Return the quota period of ``day``, e.g. ``2026-Q1``."""
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, (day.month - 1) // 3 * 3 + 1, 1)


def next_quarter_start(day: dt.date) -> dt.date:
    start = quarter_start(day)
    month = start.month + 3
    return dt.date(start.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
