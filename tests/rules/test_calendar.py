"""Tests of the business-time calendar behind rule deadlines."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.rules.calendar import (
    HOLIDAY_YEARS,
    OFFICE_HOURS_WITH_LUNCH,
    BusinessCalendar,
    BusinessMode,
    UnsupportedHolidayYear,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
HOURS = dt.timedelta(hours=1)
DAYS = dt.timedelta(days=1)


def shanghai(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


@dataclasses.dataclass(frozen=True)
class CountingCalendar(BusinessCalendar):
    """A calendar that records every day it looks up, to count the steps taken."""

    looked_up: list[dt.date] = dataclasses.field(default_factory=list, compare=False)

    def is_working_day(self, day: dt.date) -> bool:
        self.looked_up.append(day)
        return super().is_working_day(day)


def test_add_within_one_working_day_stays_on_that_day() -> None:
    """Three business hours from Wednesday 10:00 end at 13:00 the same day."""
    calendar = BusinessCalendar()

    deadline = calendar.add(shanghai(2025, 3, 12, 10), 3 * HOURS)

    assert deadline == utc(2025, 3, 12, 5)
    assert deadline.tzinfo is UTC


def test_add_skips_the_weekend() -> None:
    """Four business hours from Friday 16:00 end on Monday at 11:00."""
    calendar = BusinessCalendar()

    deadline = calendar.add(shanghai(2025, 3, 14, 16), 4 * HOURS)

    assert deadline == utc(2025, 3, 17, 3)


def test_time_running_out_at_closing_lands_on_the_next_opening() -> None:
    """Business time used up exactly at 18:00 Friday falls due Monday 09:00."""
    calendar = BusinessCalendar()

    deadline = calendar.add(shanghai(2025, 3, 14, 17), 1 * HOURS)

    assert deadline == utc(2025, 3, 17, 1)


def test_add_across_spring_festival_2025_counts_the_make_up_workdays() -> None:
    """47 business hours from Friday 24 Jan 2025 17:00 end Saturday 8 Feb 10:00."""
    calendar = BusinessCalendar()
    holidays = days_between(dt.date(2025, 1, 28), dt.date(2025, 2, 4))
    assert not any(calendar.is_working_day(day) for day in holidays)
    assert calendar.is_working_day(dt.date(2025, 1, 26))  # 调休 Sunday
    assert calendar.is_working_day(dt.date(2025, 2, 8))  # 调休 Saturday
    assert not calendar.is_working_day(dt.date(2025, 1, 25))
    assert calendar.is_working_day(dt.date(2025, 1, 27))

    # Fri 1h, Sun 26th 9h, Mon 27th 9h, then 5, 6 and 7 Feb 27h: 46h by Friday's
    # close, so the 47th hour is Saturday's first.
    deadline = calendar.add(shanghai(2025, 1, 24, 17), 47 * HOURS)

    assert deadline == utc(2025, 2, 8, 2)


def test_business_days_across_spring_festival_2025_keep_the_wall_time() -> None:
    """Three business days from Friday 24 Jan 2025 10:00 are Wednesday 5 Feb 10:00."""
    calendar = BusinessCalendar(mode=BusinessMode.BUSINESS_DAYS)
    assert calendar.is_working_day(dt.date(2025, 1, 26))
    assert not calendar.is_working_day(dt.date(2025, 2, 4))

    deadline = calendar.add(shanghai(2025, 1, 24, 10), 3 * DAYS)

    assert deadline == utc(2025, 2, 5, 2)


def test_72_business_hours_before_national_day_2025_land_after_the_holiday() -> None:
    """72 business hours from Friday 26 Sep 2025 17:00 end Tuesday 14 Oct 17:00."""
    calendar = BusinessCalendar()
    holidays = days_between(dt.date(2025, 10, 1), dt.date(2025, 10, 8))
    assert not any(calendar.is_working_day(day) for day in holidays)
    assert calendar.is_working_day(dt.date(2025, 9, 28))  # 调休 Sunday
    assert calendar.is_working_day(dt.date(2025, 10, 11))  # 调休 Saturday
    assert not calendar.is_working_day(dt.date(2025, 9, 27))
    assert not calendar.is_working_day(dt.date(2025, 10, 12))

    # Fri 1h; 28, 29, 30 Sep 27h; 9, 10, 11 Oct 27h; Mon 13th 9h; Tue 14th 8h.
    deadline = calendar.add(shanghai(2025, 9, 26, 17), 72 * HOURS)

    assert deadline == utc(2025, 10, 14, 9)


def test_lunch_break_is_not_business_time() -> None:
    """Two business hours from 11:00 run to 12:00 and resume 13:30 to end 14:30."""
    calendar = BusinessCalendar(working_hours=OFFICE_HOURS_WITH_LUNCH)

    deadline = calendar.add(shanghai(2025, 3, 12, 11), 2 * HOURS)
    spent = calendar.elapsed(shanghai(2025, 3, 12, 11), shanghai(2025, 3, 12, 14))

    assert deadline == utc(2025, 3, 12, 6, 30)
    assert spent == dt.timedelta(hours=1, minutes=30)


def test_start_during_lunch_counts_from_the_afternoon_opening() -> None:
    """Thirty business minutes from 12:15 end at 14:00."""
    calendar = BusinessCalendar(working_hours=OFFICE_HOURS_WITH_LUNCH)

    deadline = calendar.add(shanghai(2025, 3, 12, 12, 15), dt.timedelta(minutes=30))

    assert deadline == utc(2025, 3, 12, 6)


def test_start_outside_hours_counts_from_the_next_opening() -> None:
    """A start on Saturday evening or at 07:30 counts from the next 09:00."""
    calendar = BusinessCalendar()

    from_weekend = calendar.add(shanghai(2025, 3, 15, 20), 1 * HOURS)
    from_early = calendar.add(shanghai(2025, 3, 17, 7, 30), dt.timedelta(minutes=30))
    zero = calendar.add(shanghai(2025, 3, 15, 20), dt.timedelta(0))

    assert from_weekend == utc(2025, 3, 17, 2)
    assert from_early == utc(2025, 3, 17, 1, 30)
    assert zero == utc(2025, 3, 17, 1)


def test_company_holiday_and_workday_override_the_public_calendar() -> None:
    """An extra holiday on Monday is skipped and an extra Saturday is worked."""
    calendar = BusinessCalendar(
        extra_holidays=frozenset({dt.date(2025, 3, 17)}),
        extra_workdays=frozenset({dt.date(2025, 3, 22)}),
    )

    over_holiday = calendar.add(shanghai(2025, 3, 14, 17), 11 * HOURS)
    into_saturday = calendar.add(shanghai(2025, 3, 21, 17), 2 * HOURS)

    assert over_holiday == utc(2025, 3, 19, 2)
    assert into_saturday == utc(2025, 3, 22, 2)


def test_utc_input_is_read_against_shanghai_working_hours() -> None:
    """10:00Z on a Friday is 18:00 in Shanghai, so one hour ends Monday 10:00 there."""
    calendar = BusinessCalendar()

    morning = calendar.add(utc(2025, 3, 12, 1), 1 * HOURS)
    after_close = calendar.add(utc(2025, 3, 14, 10), 1 * HOURS)

    assert morning == utc(2025, 3, 12, 2)
    assert after_close == utc(2025, 3, 17, 2)
    assert not calendar.is_working_time(utc(2025, 3, 14, 10))
    assert calendar.is_working_time(utc(2025, 3, 14, 9, 59))


def test_other_time_zone_follows_its_daylight_saving_change() -> None:
    """Two hours from Friday 17:00 in Berlin end Monday 10:00 summer time."""
    calendar = BusinessCalendar(time_zone="Europe/Berlin", chinese_holidays=False)

    deadline = calendar.add(utc(2025, 3, 28, 16), 2 * HOURS)

    assert deadline == utc(2025, 3, 31, 8)


def test_elapsed_counts_only_working_time() -> None:
    """From Friday 17:00 to Monday 10:00 two business hours pass."""
    calendar = BusinessCalendar()

    spent = calendar.elapsed(shanghai(2025, 3, 14, 17), shanghai(2025, 3, 17, 10))

    assert spent == 2 * HOURS


def test_elapsed_business_days_counts_whole_days_reached() -> None:
    """From Friday 10:00, Tuesday 09:59 is one business day on and 10:00 two."""
    calendar = BusinessCalendar(mode=BusinessMode.BUSINESS_DAYS)
    start = shanghai(2025, 3, 14, 10)

    before = calendar.elapsed(start, shanghai(2025, 3, 18, 9, 59))
    at = calendar.elapsed(start, shanghai(2025, 3, 18, 10))

    assert before == 1 * DAYS
    assert at == 2 * DAYS


def test_next_opening_and_working_time() -> None:
    """Working time is half-open: 09:00 is open, 18:00 is closed until Monday."""
    calendar = BusinessCalendar()

    at_close = calendar.next_opening(shanghai(2025, 3, 14, 18))
    inside = calendar.next_opening(shanghai(2025, 3, 14, 11, 5))

    assert at_close == utc(2025, 3, 17, 1)
    assert inside == utc(2025, 3, 14, 3, 5)
    assert calendar.is_working_time(shanghai(2025, 3, 17, 9))
    assert not calendar.is_working_time(shanghai(2025, 3, 14, 18))
    assert not calendar.is_working_time(shanghai(2025, 10, 2, 10))


def test_ten_thousand_business_hours_take_one_step_per_day() -> None:
    """10,000 business hours (1,111 days and an hour) look up each day once."""
    calendar = CountingCalendar(chinese_holidays=False)
    start = shanghai(2025, 1, 6, 9)

    deadline = calendar.add(start, 10_000 * HOURS)

    assert deadline == utc(2029, 4, 10, 2)
    assert len(calendar.looked_up) == 1556
    assert calendar.elapsed(start, deadline) == 10_000 * HOURS


@settings(max_examples=150)
@given(
    start=st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2025, 12, 31)),
    amount=st.timedeltas(dt.timedelta(0), dt.timedelta(hours=400)),
)
def test_elapsed_measures_what_add_added(
    start: dt.datetime, amount: dt.timedelta
) -> None:
    """Business time elapsed from a start to its deadline equals the amount added."""
    calendar = BusinessCalendar(working_hours=OFFICE_HOURS_WITH_LUNCH)
    aware_start = start.replace(tzinfo=UTC)

    deadline = calendar.add(aware_start, amount)

    assert calendar.elapsed(aware_start, deadline) == amount
    assert calendar.is_working_time(deadline)


@settings(max_examples=150)
@given(
    start=st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2025, 12, 31)),
    offset=st.timedeltas(dt.timedelta(0), dt.timedelta(days=60)),
)
def test_add_of_elapsed_returns_a_working_end(
    start: dt.datetime, offset: dt.timedelta
) -> None:
    """Adding the business time elapsed up to a working instant reaches it exactly."""
    calendar = BusinessCalendar(working_hours=OFFICE_HOURS_WITH_LUNCH)
    aware_start = start.replace(tzinfo=UTC)
    end = calendar.next_opening(aware_start + offset)

    spent = calendar.elapsed(aware_start, end)

    assert calendar.add(aware_start, spent) == end


@given(
    start=st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2025, 12, 31)),
    days=st.integers(0, 60),
)
def test_business_days_elapsed_inverts_add(start: dt.datetime, days: int) -> None:
    """Whole business days elapsed up to a business-day deadline are the days added."""
    calendar = BusinessCalendar(mode=BusinessMode.BUSINESS_DAYS)
    aware_start = start.replace(tzinfo=UTC)

    deadline = calendar.add(aware_start, days * DAYS)

    assert calendar.elapsed(aware_start, deadline) == days * DAYS


@given(
    start=st.datetimes(
        dt.datetime(1990, 1, 1), dt.datetime(2090, 1, 1), timezones=st.just(SHANGHAI)
    ),
    amount=st.timedeltas(dt.timedelta(0), dt.timedelta(days=4000)),
)
def test_calendar_mode_is_plain_timedelta_addition(
    start: dt.datetime, amount: dt.timedelta
) -> None:
    """In calendar mode a deadline is the start plus the amount, in any year."""
    calendar = BusinessCalendar(mode=BusinessMode.CALENDAR)

    deadline = calendar.add(start, amount)

    # Added in UTC: China kept summer time until 1991, and aware arithmetic in a
    # zone adds wall-clock time, which is not the elapsed time a deadline means.
    assert deadline == start.astimezone(UTC) + amount
    assert calendar.elapsed(start, deadline) == amount


def test_deadline_past_the_holiday_data_names_the_missing_year() -> None:
    """A deadline that needs the year after the shipped data raises naming it."""
    first, last = HOLIDAY_YEARS
    calendar = BusinessCalendar()
    start = shanghai(last, 12, 31, 17)
    assert last >= 2026
    assert calendar.is_working_day(dt.date(last, 12, 31))

    within = calendar.add(start, dt.timedelta(minutes=30))
    with pytest.raises(UnsupportedHolidayYear, match=f"year {last + 1}") as raised:
        calendar.add(start, 2 * HOURS)
    with pytest.raises(UnsupportedHolidayYear, match=f"year {first - 1}"):
        calendar.is_working_time(shanghai(first - 1, 12, 31, 10))

    assert within == utc(last, 12, 31, 9, 30)
    assert isinstance(raised.value, InvalidInput)
    assert raised.value.details["year"] == last + 1


def test_lenient_calendar_falls_back_to_monday_to_friday() -> None:
    """With strict_holidays off, a year without data works Monday to Friday."""
    _first, last = HOLIDAY_YEARS
    calendar = BusinessCalendar(strict_holidays=False)
    next_year = [dt.date(last + 1, 1, day) for day in range(1, 8)]
    first_weekday = next(day for day in next_year if day.weekday() < 5)

    deadline = calendar.add(shanghai(last, 12, 31, 17), 2 * HOURS)

    assert deadline == shanghai(
        first_weekday.year, first_weekday.month, first_weekday.day, 10
    )


def test_invalid_arguments_are_rejected() -> None:
    """Naive instants, negative or fractional amounts and reversed spans fail."""
    calendar = BusinessCalendar()
    days = BusinessCalendar(mode=BusinessMode.BUSINESS_DAYS)

    with pytest.raises(InvalidInput, match="timezone-aware"):
        calendar.add(dt.datetime(2025, 3, 12, 10), HOURS)
    with pytest.raises(InvalidInput, match="negative"):
        calendar.add(shanghai(2025, 3, 12, 10), -HOURS)
    with pytest.raises(InvalidInput, match="whole days"):
        days.add(shanghai(2025, 3, 12, 10), 36 * HOURS)
    with pytest.raises(InvalidInput, match="precedes"):
        calendar.elapsed(shanghai(2025, 3, 12, 10), shanghai(2025, 3, 12, 9))


def test_invalid_configurations_are_rejected() -> None:
    """Overlapping, inverted or empty hours, clashing dates and unknown zones fail."""
    both = dt.date(2025, 3, 17)

    with pytest.raises(InvalidInput, match="overlaps"):
        BusinessCalendar(
            working_hours=((dt.time(9), dt.time(13)), (dt.time(12), dt.time(18)))
        )
    with pytest.raises(InvalidInput, match="open before"):
        BusinessCalendar(working_hours=((dt.time(18), dt.time(9)),))
    with pytest.raises(InvalidInput, match="at least one"):
        BusinessCalendar(working_hours=())
    with pytest.raises(InvalidInput, match="2025-03-17"):
        BusinessCalendar(
            extra_holidays=frozenset({both}), extra_workdays=frozenset({both})
        )
    with pytest.raises(InvalidInput, match="time_zone"):
        BusinessCalendar(time_zone="Mars/Olympus")
