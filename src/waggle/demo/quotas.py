"""Quarterly quotas (配额) for the demo's sales people.

A rep's quota is set a little above what reps of their kind of team actually
won per quarter, so attainment spreads around 80-100%. A manager's quota is
the sum of their team's, a director's the sum of their managers'.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

from waggle.crm.service import period_bounds
from waggle.demo.orgchart import OrgChart, Team
from waggle.demo.worktime import next_quarter_start, quarter_of, quarter_start

Row = dict[str, Any]

MINIMUM_QUOTA = Decimal(50_000)


def quota_rows(
    rng: random.Random,
    chart: OrgChart,
    opportunities: list[Row],
    *,
    first_day: dt.date,
    today: dt.date,
) -> list[Row]:
    """Return quota rows of reps, managers and directors for every quarter so far."""
    quarters = _quarters(first_day, today)
    typical = _typical_quarterly_win(chart, opportunities, quarters)
    per_owner: dict[tuple[int, str], Decimal] = {}
    managers_of: dict[int, int] = {}
    for team in chart.teams:
        for quarter in quarters:
            for employee_id in _seated_in(team, quarter):
                amount = _round_quota(
                    float(typical[team.kind]) * rng.uniform(1.0, 1.35)
                )
                per_owner[(employee_id, quarter)] = amount
                _add(per_owner, team.manager_id, quarter, amount)
        managers_of[team.manager_id] = _manager_of(chart, team.manager_id)
    for (owner, quarter), amount in list(per_owner.items()):
        if owner in managers_of:
            _add(per_owner, managers_of[owner], quarter, amount)
    return [
        _row(index, owner, quarter, amount)
        for index, ((owner, quarter), amount) in enumerate(per_owner.items(), start=1)
    ]


def _quarters(first_day: dt.date, today: dt.date) -> list[str]:
    quarters, day = [], quarter_start(first_day)
    while day <= today:
        quarters.append(quarter_of(day))
        day = next_quarter_start(day)
    return quarters


def _seated_in(team: Team, quarter: str) -> list[int]:
    """Return the reps who held one of the team's seats during ``quarter``."""
    starts, ends = period_bounds(quarter)
    return [
        stint.employee_id
        for seat in team.seats
        for stint in seat
        if stint.starts_on <= ends and (stint.ends_on is None or stint.ends_on > starts)
    ]


def _typical_quarterly_win(
    chart: OrgChart, opportunities: list[Row], quarters: list[str]
) -> dict[str, Decimal]:
    kind_of: dict[int, str] = {}
    rep_quarters: dict[str, int] = defaultdict(int)
    for team in chart.teams:
        kind_of[team.manager_id] = team.kind
        for quarter in quarters:
            for employee_id in _seated_in(team, quarter):
                kind_of[employee_id] = team.kind
                rep_quarters[team.kind] += 1
    won: dict[str, Decimal] = defaultdict(Decimal)
    for row in opportunities:
        if row["status"] == "won" and row["owner_id"] in kind_of:
            won[kind_of[row["owner_id"]]] += row["amount"]
    return {
        team.kind: won[team.kind] / max(1, rep_quarters[team.kind])
        for team in chart.teams
    }


def _round_quota(value: float) -> Decimal:
    rounded = Decimal(int(round(value, -4)))
    return max(MINIMUM_QUOTA, rounded)


def _add(
    totals: dict[tuple[int, str], Decimal], owner: int, quarter: str, amount: Decimal
) -> None:
    totals[(owner, quarter)] = totals.get((owner, quarter), Decimal(0)) + amount


def _manager_of(chart: OrgChart, employee_id: int) -> int:
    row = chart.employees[employee_id - 1]
    return int(row["manager_id"])


def _row(index: int, owner: int, quarter: str, amount: Decimal) -> Row:
    starts_on, ends_on = period_bounds(quarter)
    return {
        "id": index,
        "external_id": f"QUOTA-{owner}-{quarter}",
        "owner_id": owner,
        "period": quarter,
        "starts_on": starts_on,
        "ends_on": ends_on,
        "amount": amount.quantize(Decimal("0.01")),
        "currency": "CNY",
    }
