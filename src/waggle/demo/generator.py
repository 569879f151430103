"""Generate the whole demo company as rows, without touching a database.

The same seed, scale, anchor instant and pipeline always give the same rows:
every random draw comes from one ``random.Random(seed)`` and every date is
measured back from the anchor.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from waggle.core.errors import InvalidInput
from waggle.demo.customers import build_customers
from waggle.demo.deals import DealMaker, PipelineShape
from waggle.demo.orgchart import Login, build_org_chart

Row = dict[str, Any]

FULL_ACCOUNTS = 5_000
FULL_OPPORTUNITIES = 20_000
WINDOW_DAYS = 730
ACTOR_NAME = "demo"


@dataclass
class DemoCompany:
    """Rows per table, in the order they must be inserted, and the logins."""

    tables: dict[str, list[Row]] = field(default_factory=dict)
    logins: list[Login] = field(default_factory=list)

    def count(self, table: str) -> int:
        return len(self.tables.get(table, []))

    @property
    def total_rows(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


def generate_company(
    *, seed: int, scale: float, now: dt.datetime, pipeline: PipelineShape
) -> DemoCompany:
    """Generate the demo company's rows for ``seed`` at ``scale`` (1.0 = full size).

    Raises:
        InvalidInput: the scale is not positive, or the pipeline asks for a
            field the generator cannot fill.
    """
    if not scale > 0:
        raise InvalidInput(f"demo.scale: expected a positive number, got {scale}")
    rng = random.Random(seed)
    today = now.date()
    chart = build_org_chart(rng, today=today, window_days=WINDOW_DAYS)
    customers = build_customers(
        rng,
        chart,
        count=max(1, round(FULL_ACCOUNTS * scale)),
        today=today,
        window_days=WINDOW_DAYS,
    )
    maker = DealMaker(
        rng, chart, pipeline, now=now, window_days=WINDOW_DAYS, actor_name=ACTOR_NAME
    )
    deals = maker.make(customers, count=max(1, round(FULL_OPPORTUNITIES * scale)))
    company = DemoCompany(logins=chart.logins)
    company.tables = {
        "regions": chart.regions,
        "departments": chart.departments,
        "employees": chart.employees,
        "products": deals.products,
        "accounts": [customer.row for customer in customers],
        "contacts": [row for customer in customers for row in customer.contacts],
        "opportunities": deals.opportunities,
        "line_items": deals.line_items,
        "stage_changes": deals.stage_changes,
        "quotas": deals.quotas,
        "activities": deals.activities,
        "pool_events": deals.pool_events,
    }
    return company
