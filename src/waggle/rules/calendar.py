"""Business time for rule deadlines: working hours, weekends, Chinese holidays.

A :class:`BusinessCalendar` turns "72 business hours" or "3 business days" into
an instant, and measures how much business time lies between two instants. It
skips weekends and Chinese public holidays and counts the make-up workdays
(调休) on which a Saturday or Sunday is worked, using the ``chinesecalendar``
package; company-specific holidays and workdays override both.

Conventions:

- Working intervals are half-open, ``[opening, closing)``: 09:00 is working
  time, 18:00 is not. The same intervals apply to every working day, in the
  calendar's time zone, and each ends on the day it starts (no night shifts).
- A deadline is the earliest *working* instant by which the business time has
  run out. Business time that runs out exactly at a closing lands on the next
  opening: one business hour from Friday 17:00 is Monday 09:00, not Friday
  18:00, so timers fire when people are at work and ``add`` inverts ``elapsed``.
  A rule is breached when ``instant >= deadline``.
- A start outside working time counts from the next opening.
- ``business_days`` deadlines fall N working days after the (normalised) start
  at the same local wall time, not at the end of the day.
- ``chinesecalendar`` ships holiday data for a fixed range of years
  (:data:`HOLIDAY_YEARS`). Outside it, a strict calendar raises
  :class:`UnsupportedHolidayYear`; with ``strict_holidays=False`` it falls back
  to Monday to Friday (plus the company's extra dates).

All instants taken must be timezone-aware; all instants returned are aware UTC.
No method loops minute by minute: ``add`` and ``elapsed`` step one working
interval (or one day) at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import zoneinfo
from collections.abc import Iterable, Iterator

import chinese_calendar  # type: ignore[import-untyped]

from waggle.core.clock import UTC
from waggle.core.errors import InvalidInput

Interval = tuple[dt.time, dt.time]

OFFICE_HOURS: tuple[Interval, ...] = ((dt.time(9), dt.time(18)),)
"""09:00-18:00 without a break: nine business hours a day."""

OFFICE_HOURS_WITH_LUNCH: tuple[Interval, ...] = (
    (dt.time(9), dt.time(12)),
    (dt.time(13, 30), dt.time(18)),
)
"""09:00-18:00 less a 12:00-13:30 lunch break: seven and a half hours a day."""

HOLIDAY_YEARS: tuple[int, int] = (
    min(chinese_calendar.constants.holidays).year,
    max(chinese_calendar.constants.holidays).year,
)
"""First and last year (inclusive) the installed ``chinesecalendar`` knows."""

_ONE_DAY = dt.timedelta(days=1)
# A calendar whose extra holidays close a whole year is a configuration error;
# the cap keeps a search for the next working day from running forever.
_MAX_IDLE_DAYS = 366


class BusinessMode(enum.StrEnum):
    """How :meth:`BusinessCalendar.add` and ``elapsed`` read an amount of time."""

    CALENDAR = "calendar"
    BUSINESS_DAYS = "business_days"
    BUSINESS_HOURS = "business_hours"


class UnsupportedHolidayYear(InvalidInput):
    """The Chinese holiday data has no entry for the year a date falls in."""

    code = "unsupported_holiday_year"


@functools.lru_cache(maxsize=16384)
def _is_china_workday(day: dt.date) -> bool:
    # The library scans its whole table on every call; caching keeps long
    # deadlines cheap.
    return bool(chinese_calendar.is_workday(day))


@dataclasses.dataclass(frozen=True)
class BusinessCalendar:
    """A working-time calendar; immutable, so one instance can serve every rule.

    ``working_hours`` lists the working intervals of a day in local time,
    sorted and not overlapping. ``extra_holidays`` and ``extra_workdays`` are
    company dates that override weekends and Chinese holidays; a date cannot be
    both. Use :func:`dataclasses.replace` to derive a calendar with another mode.

    Raises:
        InvalidInput: an unknown time zone, empty, unsorted or overlapping
            working hours, or a date that is both an extra holiday and an extra
            workday.
    """

    time_zone: str = "Asia/Shanghai"
    working_hours: tuple[Interval, ...] = OFFICE_HOURS
    mode: BusinessMode = BusinessMode.BUSINESS_HOURS
    chinese_holidays: bool = True
    strict_holidays: bool = True
    extra_holidays: frozenset[dt.date] = frozenset()
    extra_workdays: frozenset[dt.date] = frozenset()
    _zone: zoneinfo.ZoneInfo = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _load_zone(self.time_zone))
        object.__setattr__(self, "working_hours", tuple(self.working_hours))
        object.__setattr__(self, "extra_holidays", frozenset(self.extra_holidays))
        object.__setattr__(self, "extra_workdays", frozenset(self.extra_workdays))
        _check_working_hours(self.working_hours)
        clash = self.extra_holidays & self.extra_workdays
        if clash:
            raise InvalidInput(
                "business calendar: extra_holidays and extra_workdays both name "
                f"{min(clash).isoformat()}; a date can be only one of them",
                field="extra_workdays",
            )

    def add(self, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
        """Return the deadline ``amount`` of the calendar's mode after ``start``.

        ``calendar`` adds plain elapsed time; ``business_hours`` counts only
        working time; ``business_days`` needs a whole number of days and keeps
        the local wall time of the (normalised) start.

        Raises:
            InvalidInput: ``start`` is naive, ``amount`` is negative, or a
                ``business_days`` amount is not a whole number of days.
            UnsupportedHolidayYear: the deadline needs holiday data the
                installed ``chinesecalendar`` lacks (strict calendars only).
        """
        start = _aware_utc(start, field="start")
        if amount < dt.timedelta(0):
            raise InvalidInput(
                f"business calendar: amount must not be negative, got {amount}",
                field="amount",
            )
        if self.mode is BusinessMode.CALENDAR:
            return start + amount
        if self.mode is BusinessMode.BUSINESS_DAYS:
            return self._add_days(start, _whole_days(amount))
        return self._add_hours(start, amount)

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Return the time of the calendar's mode between ``start`` and ``end``.

        ``business_hours`` returns the working time inside ``[start, end)``, so
        ``add(start, elapsed(start, end)) == end`` whenever ``end`` is working
        time. ``business_days`` returns the largest whole number of days ``n``
        with ``add(start, n days) <= end``.

        Raises:
            InvalidInput: an instant is naive or ``end`` precedes ``start``.
            UnsupportedHolidayYear: the span needs missing holiday data.
        """
        start = _aware_utc(start, field="start")
        end = _aware_utc(end, field="end")
        if end < start:
            raise InvalidInput(
                f"business calendar: end {end.isoformat()} precedes start "
                f"{start.isoformat()}",
                field="end",
            )
        if self.mode is BusinessMode.CALENDAR:
            return end - start
        if self.mode is BusinessMode.BUSINESS_DAYS:
            return self._elapsed_days(start, end)
        return self._elapsed_hours(start, end)

    def is_working_time(self, instant: dt.datetime) -> bool:
        """Tell whether ``instant`` falls inside a working interval (any mode).

        Raises:
            InvalidInput: ``instant`` is naive.
            UnsupportedHolidayYear: its day needs missing holiday data.
        """
        instant = _aware_utc(instant, field="instant")
        day = instant.astimezone(self._zone).date()
        return any(
            opening <= instant < closing for opening, closing in self._intervals_on(day)
        )

    def next_opening(self, instant: dt.datetime) -> dt.datetime:
        """Return ``instant`` if it is working time, else the next opening.

        Raises:
            InvalidInput: ``instant`` is naive, or no working day follows
                within a year.
            UnsupportedHolidayYear: the search needs missing holiday data.
        """
        instant = _aware_utc(instant, field="instant")
        intervals = self._intervals_from(instant)
        while True:
            opening, closing = next(intervals)
            if instant < closing:
                return max(opening, instant)

    def is_working_day(self, day: dt.date) -> bool:
        """Tell whether ``day`` is worked: extra dates first, then the holidays.

        Raises:
            UnsupportedHolidayYear: ``day`` lies outside :data:`HOLIDAY_YEARS`
                and the calendar is strict.
        """
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        if not self.chinese_holidays:
            return day.weekday() < 5
        first, last = HOLIDAY_YEARS
        if first <= day.year <= last:
            return _is_china_workday(day)
        if self.strict_holidays:
            raise UnsupportedHolidayYear(
                f"business calendar: no Chinese holiday data for year {day.year} "
                f"(installed chinesecalendar covers {first}-{last}); upgrade it "
                "or build the calendar with strict_holidays=False",
                field="date",
                year=day.year,
                first_year=first,
                last_year=last,
            )
        return day.weekday() < 5

    def _add_hours(self, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
        remaining = amount
        intervals = self._intervals_from(start)
        while True:
            opening, closing = next(intervals)
            if closing <= start:
                continue
            begin = max(opening, start)
            available = closing - begin
            # Strictly less: time that runs out at a closing moves on to the
            # next opening (see the module docstring).
            if remaining < available:
                return begin + remaining
            remaining -= available

    def _elapsed_hours(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        total = dt.timedelta(0)
        day = start.astimezone(self._zone).date()
        last_day = end.astimezone(self._zone).date()
        while day <= last_day:
            for opening, closing in self._intervals_on(day):
                low, high = max(opening, start), min(closing, end)
                if high > low:
                    total += high - low
            day += _ONE_DAY
        return total

    def _add_days(self, start: dt.datetime, days: int) -> dt.datetime:
        local = self.next_opening(start).astimezone(self._zone)
        day = local.date()
        while days:
            day = self._next_working_day(day)
            days -= 1
        return self._at_wall_time(day, local.time())

    def _elapsed_days(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        origin = self.next_opening(start).astimezone(self._zone)
        last_day = end.astimezone(self._zone).date()
        count, day = 0, origin.date()
        while day < last_day:
            day += _ONE_DAY
            if self.is_working_day(day):
                count += 1
        # The last working day only counts once its wall time has been reached.
        if (
            count
            and self.is_working_day(last_day)
            and self._at_wall_time(last_day, origin.time()) > end
        ):
            count -= 1
        return dt.timedelta(days=count)

    def _next_working_day(self, day: dt.date) -> dt.date:
        for _ in range(_MAX_IDLE_DAYS):
            day += _ONE_DAY
            if self.is_working_day(day):
                return day
        raise InvalidInput(
            f"business calendar: no working day within {_MAX_IDLE_DAYS} days "
            f"after {day.isoformat()}; check extra_holidays",
            field="extra_holidays",
        )

    def _intervals_from(
        self, instant: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Yield UTC working intervals day by day from the local day of ``instant``."""
        day = instant.astimezone(self._zone).date()
        if not self.is_working_day(day):
            day = self._next_working_day(day)
        while True:
            yield from self._day_intervals(day)
            day = self._next_working_day(day)

    def _intervals_on(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        return self._day_intervals(day) if self.is_working_day(day) else []

    def _day_intervals(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        return [
            (self._at_wall_time(day, opening), self._at_wall_time(day, closing))
            for opening, closing in self.working_hours
        ]

    def _at_wall_time(self, day: dt.date, wall: dt.time) -> dt.datetime:
        local = dt.datetime.combine(day, wall, self._zone)
        return local.astimezone(UTC)


def _load_zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"business calendar: time_zone {name!r} is not an IANA time zone",
            field="time_zone",
        ) from exc


def _check_working_hours(intervals: Iterable[Interval]) -> None:
    previous_closing: dt.time | None = None
    for opening, closing in intervals:
        if opening.tzinfo is not None or closing.tzinfo is not None:
            raise InvalidInput(
                "business calendar: working_hours take naive local times",
                field="working_hours",
            )
        if not opening < closing:
            raise InvalidInput(
                f"business calendar: working interval {opening}-{closing} must "
                "open before it closes on the same day",
                field="working_hours",
            )
        if previous_closing is not None and opening < previous_closing:
            raise InvalidInput(
                f"business calendar: working interval {opening}-{closing} "
                "overlaps or precedes the one before; list them in order",
                field="working_hours",
            )
        previous_closing = closing
    if previous_closing is None:
        raise InvalidInput(
            "business calendar: working_hours needs at least one interval",
            field="working_hours",
        )


def _aware_utc(value: dt.datetime, *, field: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"business calendar: {field} must be a timezone-aware datetime, "
            f"got naive {value.isoformat()}",
            field=field,
        )
    return value.astimezone(UTC)


def _whole_days(amount: dt.timedelta) -> int:
    if amount % _ONE_DAY:
        raise InvalidInput(
            f"business calendar: business_days amounts are whole days, got {amount}",
            field="amount",
        )
    return amount.days


__all__ = [
    "HOLIDAY_YEARS",
    "OFFICE_HOURS",
    "OFFICE_HOURS_WITH_LUNCH",
    "BusinessCalendar",
    "BusinessMode",
    "UnsupportedHolidayYear",
]
