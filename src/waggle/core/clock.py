"""Time as Waggle sees it: always timezone-aware UTC, replaceable in tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

UTC = dt.UTC

_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731


def now() -> dt.datetime:
    """Return the current instant as an aware UTC datetime."""
    return _now()


def today() -> dt.date:
    """Return today's date in UTC."""
    return now().date()


def set_clock(source: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests pass a fixed one); ``None`` restores the real clock."""
    global _now
    _now = source if source is not None else (lambda: dt.datetime.now(UTC))


class FixedClock:
    """A clock that stands still until moved; for tests and simulations."""

    def __init__(self, start: dt.datetime):
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.current = start.astimezone(UTC)

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> dt.datetime:
        self.current += dt.timedelta(**delta)
        return self.current


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as aware UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
