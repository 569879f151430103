"""The demo company's deals: opportunities with stage history, line items,
logged activities, quotas and public-pool releases.

An opportunity walks the pipeline's open stages in order. At the end of each
stage it advances with a stage-specific chance (nudged by its owner's skill)
or is lost there; whatever has not been decided by today is still open.
Stage durations are log-normal and grow with the customer's size, so big
deals take longer. Amounts are the sum of the line items, whose targets are
log-normal around the customer's typical deal size. A stage's required fields
are filled for every stage the deal has reached, as the stage gate demands.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from waggle.core.errors import InvalidInput
from waggle.demo.catalog import (
    ACTIVITY_BODIES,
    ACTIVITY_SUBJECTS,
    LOSS_REASONS,
    PAIN_POINTS,
    PRODUCTS,
    PROJECT_NAMES,
    SOURCES,
)
from waggle.demo.customers import POOL_IDLE_DAYS, Customer
from waggle.demo.orgchart import CHANNEL, OrgChart
from waggle.demo.quotas import quota_rows
from waggle.demo.worktime import (
    china_date,
    cumulative_weights,
    log_normal,
    seasonal_day,
    to_weekday,
    weighted,
    work_instant,
)

Row = dict[str, Any]

# Chance to advance past each open stage, and the median days spent in it,
# for the five open stages of the default pipeline (other pipelines spread
# the same overall win rate evenly).
ADVANCE_CHANCE = (0.74, 0.72, 0.76, 0.80, 0.86)
MEDIAN_STAGE_DAYS = (6.0, 12.0, 18.0, 16.0, 9.0)
SIZE_PACE = {"小微企业": 0.7, "中型企业": 1.0, "大型企业": 1.4, "集团企业": 1.8}
STALL_CHANCE = 0.08
DEAL_SIGMA = 0.75
ACTIVITY_KINDS = (
    ("call", 30),
    ("meeting", 15),
    ("visit", 15),
    ("email", 20),
    ("note", 10),
    ("task", 10),
)
FOLLOW_UP_KINDS = (("call", 5), ("visit", 3), ("email", 2))
SHELVED = "项目被客户无限期搁置"
POOL_RELEASE_REASON = f"超过{POOL_IDLE_DAYS}天未跟进，自动退回公海"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class StageInfo:
    """What the generator needs of one pipeline stage."""

    id: int
    key: str
    probability: int
    required_fields: tuple[str, ...]


@dataclass(frozen=True)
class PipelineShape:
    """The pipeline opportunities walk: its open stages in order, won and lost."""

    pipeline_id: int
    open_stages: tuple[StageInfo, ...]
    won: StageInfo
    lost: StageInfo

    def advance_chance(self, index: int) -> float:
        if len(self.open_stages) == len(ADVANCE_CHANCE):
            return ADVANCE_CHANCE[index]
        overall = 0.28
        return float(overall ** (1 / len(self.open_stages)))

    def median_days(self, index: int) -> float:
        return MEDIAN_STAGE_DAYS[min(index, len(MEDIAN_STAGE_DAYS) - 1)]


@dataclass
class Deals:
    """Rows of the deal tables, in insertion order."""

    products: list[Row] = field(default_factory=list)
    opportunities: list[Row] = field(default_factory=list)
    line_items: list[Row] = field(default_factory=list)
    stage_changes: list[Row] = field(default_factory=list)
    activities: list[Row] = field(default_factory=list)
    quotas: list[Row] = field(default_factory=list)
    pool_events: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class _Walk:
    """The stages one opportunity entered (stage, instant), and how it ended."""

    entries: list[tuple[StageInfo, dt.datetime]]
    status: str
    is_shelved: bool = False

    @property
    def end(self) -> dt.datetime:
        return self.entries[-1][1]


class DealMaker:
    """Generates every deal table for a list of customers."""

    def __init__(
        self,
        rng: random.Random,
        chart: OrgChart,
        pipeline: PipelineShape,
        *,
        now: dt.datetime,
        window_days: int,
        actor_name: str,
    ):
        self.rng, self.chart, self.pipeline = rng, chart, pipeline
        self.now, self.today = now, china_date(now)
        self.window_start = self.today - dt.timedelta(days=window_days)
        self.actor_name = actor_name
        self.deals = Deals()
        self._ids: dict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
        self._names: dict[int, set[str]] = defaultdict(set)
        self._by_price: list[Row] = []
        self._prices: list[float] = []

    def make(self, customers: list[Customer], *, count: int) -> Deals:
        """Generate ``count`` opportunities and every table that hangs off them."""
        self._products()
        weights = cumulative_weights(
            [
                c.size.deal_weight * (0.4 if c.pool_entered_on else 1.0)
                for c in customers
            ]
        )
        made, attempts = 0, 0
        while made < count and attempts < 50 * count:
            customer = self.rng.choices(customers, cum_weights=weights)[0]
            made += self._opportunity(customer)
            attempts += 1
        for customer in customers:
            self._follow_up(customer)
        self._quotas()
        return self.deals

    def _next_id(self, table: str) -> int:
        return next(self._ids[table])

    # Products and line items ---------------------------------------------

    def _products(self) -> None:
        for product in PRODUCTS:
            self.deals.products.append(
                {
                    "id": self._next_id("products"),
                    "external_id": product.sku,
                    "sku": product.sku,
                    "name": product.name,
                    "category": product.category,
                    "unit_price": product.unit_price,
                    "currency": "CNY",
                    "is_active": True,
                }
            )
        self._by_price = sorted(self.deals.products, key=lambda p: p["unit_price"])
        self._prices = [float(p["unit_price"]) for p in self._by_price]

    def _line_items(self, opportunity_id: int, target: float) -> Decimal:
        """Add the opportunity's line items around ``target``; return their total."""
        affordable = self._by_price[: bisect.bisect_right(self._prices, target)]
        affordable = affordable or self._by_price[:1]
        count = min(len(affordable), self.rng.choice((1, 1, 2, 2, 3, 4)))
        chosen = self.rng.sample(affordable, count)
        shares = [self.rng.uniform(0.5, 1.5) for _ in chosen]
        total = Decimal(0)
        for product, share in zip(chosen, shares, strict=True):
            budget = target * share / sum(shares)
            quantity = max(1, round(budget / float(product["unit_price"])))
            discount = self.rng.choice(
                (0.0, 0.0, 5.0, 5.0, 8.0, 10.0, 12.0, 15.0, 20.0)
            )
            self.deals.line_items.append(
                {
                    "id": self._next_id("line_items"),
                    "opportunity_id": opportunity_id,
                    "product_id": product["id"],
                    "quantity": quantity,
                    "unit_price": product["unit_price"],
                    "discount_percent": discount,
                }
            )
            net = product["unit_price"] * quantity * (1 - Decimal(str(discount)) / 100)
            total += net.quantize(CENT, rounding=ROUND_HALF_UP)
        return total

    # Opportunities ---------------------------------------------------------

    def _opportunity(self, customer: Customer) -> int:
        """Add one opportunity on ``customer``; return 0 if it has no room for one."""
        horizon = self.now
        if customer.pool_entered_on is not None:
            horizon = work_instant(
                self.rng,
                customer.pool_entered_on - dt.timedelta(days=POOL_IDLE_DAYS + 1),
            )
        first = max(self.window_start, china_date(customer.row["created_at"]))
        last = china_date(horizon) - dt.timedelta(days=1)
        if first > last:
            return 0
        created_at = work_instant(self.rng, seasonal_day(self.rng, first, last))
        walk = self._walk(customer, created_at, horizon)
        owner = customer.team.owner_on(
            customer.seat, china_date(walk.end if walk.status != "open" else self.now)
        )
        opportunity_id = self._next_id("opportunities")
        target = customer.size.median_deal * log_normal(self.rng, 1.0, DEAL_SIGMA)
        row = self._opportunity_row(customer, opportunity_id, owner, walk)
        row["amount"] = self._line_items(opportunity_id, target)
        self._fill_required(row, customer, walk)
        self.deals.opportunities.append(row)
        self._stage_changes(opportunity_id, walk)
        self._deal_activities(customer, row, walk)
        return 1

    def _walk(
        self, customer: Customer, created_at: dt.datetime, horizon: dt.datetime
    ) -> _Walk:
        stages = self.pipeline.open_stages
        pace = SIZE_PACE.get(customer.size.name, 1.0)
        skill = self.chart.skill.get(
            customer.team.owner_on(customer.seat, china_date(created_at)), 0.0
        )
        entries = [(stages[0], created_at)]
        for index, _stage in enumerate(stages):
            entered = entries[-1][1]
            days = log_normal(self.rng, self.pipeline.median_days(index) * pace, 0.55)
            if self.rng.random() < STALL_CHANCE:
                days *= self.rng.uniform(3.0, 6.0)
            if self.rng.random() >= self.pipeline.advance_chance(index) + skill:
                days *= self.rng.uniform(0.4, 1.0)
                decided = self._later(entered, days)
                if decided >= horizon:
                    break
                entries.append((self.pipeline.lost, decided))
                return _Walk(entries, "lost")
            decided = self._later(entered, days)
            if decided >= horizon:
                break
            following = (
                stages[index + 1] if index + 1 < len(stages) else self.pipeline.won
            )
            entries.append((following, decided))
        else:
            return _Walk(entries, "won")
        if horizon < self.now:
            # The customer went quiet and was released to the pool: shelved.
            last_entry = entries[-1][1] + dt.timedelta(hours=1)
            entries.append((self.pipeline.lost, max(horizon, last_entry)))
            return _Walk(entries, "lost", is_shelved=True)
        return _Walk(entries, "open")

    def _later(self, start: dt.datetime, days: float) -> dt.datetime:
        """Return an office-hours instant about ``days`` after ``start``."""
        day = to_weekday(self.rng, china_date(start + dt.timedelta(days=days)))
        instant = work_instant(self.rng, day)
        return instant if instant > start else start + dt.timedelta(hours=1)

    def _opportunity_row(
        self, customer: Customer, opportunity_id: int, owner: int, walk: _Walk
    ) -> Row:
        stage, entered = walk.entries[-1]
        created_at = walk.entries[0][1]
        closed = walk.status != "open"
        return {
            "id": opportunity_id,
            "external_id": f"DEMO-O{opportunity_id:06d}",
            "name": self._deal_name(customer, created_at),
            "account_id": customer.id,
            "pipeline_id": self.pipeline.pipeline_id,
            "stage_id": stage.id,
            "currency": "CNY",
            "expected_close_on": self._expected_close(customer, walk),
            "owner_id": owner,
            "source": "渠道伙伴"
            if customer.team.kind == CHANNEL
            else weighted(self.rng, SOURCES),
            "status": walk.status,
            "loss_reason": None,
            "forecast_category": self._forecast_category(walk),
            "manual_probability": self._manual_probability(stage, closed),
            "customer_pain_points": None,
            "decision_maker_contact_id": None,
            "budget_confirmed": False,
            "stage_entered_at": entered,
            "closed_at": entered if closed else None,
            "created_at": created_at,
            "updated_at": entered,
        }

    def _deal_name(self, customer: Customer, created_at: dt.datetime) -> str:
        project = self.rng.choice(PROJECT_NAMES)
        base = f"{customer.trade_name}{project}"
        taken = self._names[customer.id]
        name, phase = base, 1
        while name in taken:
            phase += 1
            name = f"{base}（{created_at.year}年第{phase}期）"
        taken.add(name)
        return name

    def _expected_close(self, customer: Customer, walk: _Walk) -> dt.date | None:
        pace = SIZE_PACE.get(customer.size.name, 1.0)
        cycle = sum(
            self.pipeline.median_days(i) for i in range(len(self.pipeline.open_stages))
        )
        planned = china_date(walk.entries[0][1]) + dt.timedelta(
            days=round(cycle * pace * self.rng.uniform(0.8, 1.4))
        )
        if walk.status == "won":
            return china_date(walk.end) + dt.timedelta(days=self.rng.randint(-20, 10))
        if walk.status == "lost":
            return planned
        return planned if self.rng.random() < 0.6 else None

    def _forecast_category(self, walk: _Walk) -> str:
        stage = walk.entries[-1][0]
        if walk.status == "won":
            return "closed"
        if walk.status == "lost":
            return "omitted"
        if stage.probability < 30:
            return "pipeline"
        if stage.probability < 50:
            return weighted(self.rng, (("pipeline", 6), ("best_case", 4)))
        if stage.probability < 70:
            return weighted(self.rng, (("best_case", 6), ("commit", 4)))
        return weighted(self.rng, (("commit", 85), ("best_case", 15)))

    def _manual_probability(self, stage: StageInfo, closed: bool) -> int | None:
        if closed or self.rng.random() >= 0.08:
            return None
        return max(0, min(100, stage.probability + self.rng.choice((-10, -5, 5, 10))))

    def _fill_required(self, row: Row, customer: Customer, walk: _Walk) -> None:
        """Fill every field a reached stage requires; a few more on early deals."""
        if self.rng.random() < 0.4:
            row["customer_pain_points"] = self.rng.choice(PAIN_POINTS)
        for stage, _entered in walk.entries:
            for name in stage.required_fields:
                self._fill(row, name, customer, walk)

    def _fill(self, row: Row, name: str, customer: Customer, walk: _Walk) -> None:
        if name == "customer_pain_points" and not row[name]:
            row[name] = "；".join(self.rng.sample(PAIN_POINTS, 2))
        elif name == "decision_maker_contact_id" and not row[name]:
            row[name] = self.rng.choice(customer.decision_makers)
        elif name == "budget_confirmed":
            row[name] = True
        elif name == "expected_close_on" and row[name] is None:
            row[name] = china_date(walk.end) + dt.timedelta(
                days=self.rng.randint(14, 60)
            )
        elif name == "loss_reason" and not row[name]:
            shelved = walk.is_shelved
            row[name] = SHELVED if shelved else weighted(self.rng, LOSS_REASONS)
        elif row.get(name) in (None, "", False, Decimal(0)):
            raise InvalidInput(
                f"demo: pipeline stage field {name!r} is required but the demo "
                "generator cannot fill it; use the default pipeline"
            )

    def _stage_changes(self, opportunity_id: int, walk: _Walk) -> None:
        previous: tuple[StageInfo, dt.datetime] | None = None
        for stage, entered in walk.entries:
            self.deals.stage_changes.append(
                {
                    "id": self._next_id("stage_changes"),
                    "opportunity_id": opportunity_id,
                    "from_stage_id": previous[0].id if previous else None,
                    "to_stage_id": stage.id,
                    "changed_at": entered,
                    "seconds_in_previous_stage": int(
                        (entered - previous[1]).total_seconds()
                    )
                    if previous
                    else None,
                    "changed_by": self.actor_name,
                }
            )
            previous = (stage, entered)

    # Activities, follow-ups, pool ----------------------------------------

    def _deal_activities(self, customer: Customer, row: Row, walk: _Walk) -> None:
        reached = len(walk.entries)
        start, end = walk.entries[0][1], walk.end if walk.status != "open" else self.now
        span = (china_date(end) - china_date(start)).days
        for _ in range(self.rng.randint(0, min(3, reached))):
            day = china_date(start) + dt.timedelta(days=self.rng.randint(0, span))
            instant = work_instant(self.rng, to_weekday(self.rng, day))
            occurred = min(max(instant, start), end)
            self._activity(
                customer, occurred, opportunity_id=row["id"], kinds=ACTIVITY_KINDS
            )

    def _activity(
        self,
        customer: Customer,
        occurred: dt.datetime,
        *,
        opportunity_id: int | None,
        kinds: tuple[tuple[str, int], ...],
    ) -> None:
        kind = weighted(self.rng, kinds)
        contact = self.rng.choice(customer.contacts)
        self.deals.activities.append(
            {
                "id": self._next_id("activities"),
                "external_id": None,
                "kind": kind,
                "subject": self.rng.choice(ACTIVITY_SUBJECTS[kind]),
                "body": self.rng.choice(ACTIVITY_BODIES)
                if self.rng.random() < 0.6
                else None,
                "account_id": customer.id,
                "opportunity_id": opportunity_id,
                "contact_id": contact["id"],
                "owner_id": customer.team.owner_on(customer.seat, china_date(occurred)),
                "occurred_at": occurred,
                "created_at": occurred,
            }
        )
        followed = customer.row["last_followed_at"]
        if followed is None or followed < occurred:
            customer.row["last_followed_at"] = occurred

    def _follow_up(self, customer: Customer) -> None:
        """Log the latest follow-up; pool accounts get their release instead."""
        if customer.pool_entered_on is not None:
            self._release(customer)
        else:
            recent = self.rng.random() < 0.85
            days = self.rng.randint(0, 24) if recent else self.rng.randint(25, 45)
            day = self.today - dt.timedelta(days=days)
            occurred = min(work_instant(self.rng, day), self.now)
            self._activity(
                customer, occurred, opportunity_id=None, kinds=FOLLOW_UP_KINDS
            )
        customer.row["updated_at"] = (
            customer.row["last_followed_at"] or customer.row["created_at"]
        )

    def _release(self, customer: Customer) -> None:
        entered = customer.row["pool_entered_at"]
        idle = dt.timedelta(days=POOL_IDLE_DAYS + self.rng.randint(0, 60))
        if customer.row["last_followed_at"] is None:
            customer.row["last_followed_at"] = max(
                entered - idle, customer.row["created_at"]
            )
        self.deals.pool_events.append(
            {
                "id": self._next_id("pool_events"),
                "account_id": customer.id,
                "employee_id": customer.team.owner_on(
                    customer.seat, china_date(entered) - dt.timedelta(days=1)
                ),
                "kind": "released",
                "reason": POOL_RELEASE_REASON,
                "occurred_at": entered,
            }
        )

    # Quotas ------------------------------------------------------------------

    def _quotas(self) -> None:
        self.deals.quotas = quota_rows(
            self.rng,
            self.chart,
            self.deals.opportunities,
            first_day=self.window_start,
            today=self.today,
        )
