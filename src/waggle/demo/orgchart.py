"""The demo company's org chart: regions, 11 departments, about 300 people.

Sales is organised as a vice president over five regional directors; each
sub-region has two direct-sales teams and a key-account team, and each region
has a channel team. A team is a manager with a fixed number of seats; a seat
is held by one representative after another, so a rep who left hands their
accounts to a successor (the manager covers while the seat is empty).
Functional departments (presales, delivery, finance, ...) complete the chart.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from waggle.demo.names import random_name
from waggle.demo.places import REGIONS, SUB_REGIONS, TOP_REGIONS, SalesRegion

Row = dict[str, Any]

EMAIL_DOMAIN = "fengchao-demo.example"

DIRECT, KEY_ACCOUNTS, CHANNEL = "direct-sales", "key-accounts", "channel"

# (code, name): the eleven departments of the demo company.
DEPARTMENTS = (
    (DIRECT, "直销部"),
    (CHANNEL, "渠道部"),
    (KEY_ACCOUNTS, "大客户部"),
    ("presales", "售前技术部"),
    ("delivery", "交付部"),
    ("customer-success", "客户成功部"),
    ("marketing", "市场部"),
    ("sales-ops", "销售运营部"),
    ("finance", "财务部"),
    ("legal", "法务部"),
    ("it", "IT部"),
)
SALES_DEPARTMENTS = frozenset({DIRECT, KEY_ACCOUNTS, CHANNEL})

# department code → (head's title, staff title, number of staff below the head)
FUNCTIONS = (
    ("presales", "售前技术部总监", "售前工程师", 19),
    ("delivery", "交付部总监", "实施顾问", 14),
    ("customer-success", "客户成功部经理", "客户成功经理", 11),
    ("marketing", "市场部经理", "市场专员", 7),
    ("sales-ops", "销售运营总监", "销售运营专员", 5),
    ("finance", "财务总监", "财务专员", 4),
    ("legal", "法务总监", "法务专员", 2),
    ("it", "IT部经理", "IT工程师", 4),
)

# team kind → (department, manager title, rep title, seats)
TEAM_SHAPES = {
    DIRECT: (DIRECT, "销售经理", "销售代表", 6),
    KEY_ACCOUNTS: (KEY_ACCOUNTS, "大客户经理", "客户经理", 4),
    CHANNEL: (CHANNEL, "渠道经理", "渠道专员", 3),
}

TURNOVER_RATE = 0.12


@dataclass(frozen=True)
class Stint:
    """One representative's time in a seat: from hire to departure (exclusive)."""

    employee_id: int
    starts_on: dt.date
    ends_on: dt.date | None


@dataclass
class Team:
    """A manager and the seats of their representatives."""

    kind: str
    region_code: str
    manager_id: int
    seats: list[list[Stint]] = field(default_factory=list)

    def owner_on(self, seat: int, day: dt.date) -> int:
        """Return who owns the seat's customers on ``day`` (the manager if vacant)."""
        for stint in self.seats[seat]:
            if stint.starts_on <= day and (
                stint.ends_on is None or day < stint.ends_on
            ):
                return stint.employee_id
        return self.manager_id


@dataclass(frozen=True)
class Login:
    """A demo login: user name, password, role and the employee it belongs to."""

    username: str
    password: str
    role: str
    employee_external_id: str | None
    description: str


@dataclass
class OrgChart:
    regions: list[Row] = field(default_factory=list)
    departments: list[Row] = field(default_factory=list)
    employees: list[Row] = field(default_factory=list)
    teams: list[Team] = field(default_factory=list)
    region_ids: dict[str, int] = field(default_factory=dict)
    department_ids: dict[str, int] = field(default_factory=dict)
    skill: dict[int, float] = field(default_factory=dict)
    logins: list[Login] = field(default_factory=list)

    def teams_of(self, kind: str, region_code: str) -> list[Team]:
        return [
            t for t in self.teams if t.kind == kind and t.region_code == region_code
        ]


class _Hiring:
    """Adds employees with unique ids, emails and phone numbers."""

    def __init__(self, rng: random.Random, chart: OrgChart, today: dt.date):
        self.rng, self.chart, self.today = rng, chart, today
        self.emails: set[str] = set()
        self.phones: set[str] = set()

    def hire(
        self,
        *,
        title: str,
        department: str,
        region: str | None,
        manager_id: int | None,
        hired_on: dt.date,
        departed_on: dt.date | None = None,
    ) -> int:
        employee_id = len(self.chart.employees) + 1
        name = random_name(self.rng)
        status = "active" if departed_on is None else "departed"
        self.chart.employees.append(
            {
                "id": employee_id,
                "external_id": f"DEMO-E{employee_id:04d}",
                "name": name.full,
                "email": self._email(name.email_local),
                "phone": mobile_number(self.rng, self.phones),
                "title": title,
                "department_id": self.chart.department_ids[department],
                "region_id": self.chart.region_ids[region] if region else None,
                "manager_id": manager_id,
                "status": status,
                "hired_on": hired_on,
                "departed_on": departed_on,
            }
        )
        self.chart.skill[employee_id] = self.rng.uniform(-0.08, 0.08)
        return employee_id

    def veteran_hire_date(self, *, min_years: float, max_years: float) -> dt.date:
        days = self.rng.randint(int(min_years * 365), int(max_years * 365))
        return self.today - dt.timedelta(days=days)

    def _email(self, local: str) -> str:
        address, number = f"{local}@{EMAIL_DOMAIN}", 1
        while address in self.emails:
            number += 1
            address = f"{local}{number}@{EMAIL_DOMAIN}"
        self.emails.add(address)
        return address


_MOBILE_PREFIX_TEXT = (
    "130 131 132 133 135 136 137 138 139 150 151 152 153 155 156 157 158 159 "
    "166 173 176 177 180 181 182 183 185 186 187 188 189 199"
)
_MOBILE_PREFIXES = tuple(_MOBILE_PREFIX_TEXT.split())


def mobile_number(rng: random.Random, taken: set[str]) -> str:
    """Draw a mainland mobile number not yet in ``taken`` (and add it)."""
    while True:
        number = rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        if number not in taken:
            taken.add(number)
            return number


def build_org_chart(
    rng: random.Random, *, today: dt.date, window_days: int
) -> OrgChart:
    """Generate the regions, departments, employees, sales teams and logins."""
    chart = OrgChart()
    _add_regions(chart)
    _add_departments(chart)
    hiring = _Hiring(rng, chart, today)
    _add_sales(hiring, window_days)
    _add_functions(hiring)
    chart.logins = _logins(chart)
    return chart


def _add_regions(chart: OrgChart) -> None:
    for region in REGIONS:
        region_id = len(chart.regions) + 1
        chart.region_ids[region.code] = region_id
        chart.regions.append(
            {
                "id": region_id,
                "code": region.code,
                "name": region.name,
                "parent_id": chart.region_ids[region.parent] if region.parent else None,
            }
        )


def _add_departments(chart: OrgChart) -> None:
    for position, (code, name) in enumerate(DEPARTMENTS, start=1):
        chart.department_ids[code] = position
        chart.departments.append(
            {"id": position, "code": code, "name": name, "parent_id": None}
        )


def _add_sales(hiring: _Hiring, window_days: int) -> None:
    vice_president = hiring.hire(
        title="销售副总裁",
        department=DIRECT,
        region=None,
        manager_id=None,
        hired_on=hiring.veteran_hire_date(min_years=6, max_years=9),
    )
    for region in TOP_REGIONS:
        director = hiring.hire(
            title=f"{region.name[:2]}大区总监",
            department=DIRECT,
            region=region.code,
            manager_id=vice_president,
            hired_on=hiring.veteran_hire_date(min_years=4, max_years=8),
        )
        for sub_region in _sub_regions_of(region):
            _add_team(hiring, DIRECT, sub_region.code, director, window_days)
            _add_team(hiring, DIRECT, sub_region.code, director, window_days)
            _add_team(hiring, KEY_ACCOUNTS, sub_region.code, director, window_days)
        _add_team(hiring, CHANNEL, region.code, director, window_days)


def _sub_regions_of(region: SalesRegion) -> list[SalesRegion]:
    return [sub for sub in SUB_REGIONS if sub.parent == region.code]


def _add_team(
    hiring: _Hiring, kind: str, region: str, director: int, window_days: int
) -> None:
    department, manager_title, rep_title, seats = TEAM_SHAPES[kind]
    manager = hiring.hire(
        title=manager_title,
        department=department,
        region=region,
        manager_id=director,
        hired_on=hiring.veteran_hire_date(min_years=3, max_years=7),
    )
    team = Team(kind=kind, region_code=region, manager_id=manager)
    for _seat in range(seats):
        team.seats.append(
            _fill_seat(hiring, department, region, manager, rep_title, window_days)
        )
    hiring.chart.teams.append(team)


def _fill_seat(
    hiring: _Hiring,
    department: str,
    region: str,
    manager: int,
    title: str,
    window_days: int,
) -> list[Stint]:
    """Hire the seat's representative and, after a departure, their successor."""
    rng, today = hiring.rng, hiring.today
    first_hired = hiring.veteran_hire_date(
        min_years=window_days / 365 + 0.1, max_years=window_days / 365 + 5
    )
    departed = None
    if rng.random() < TURNOVER_RATE:
        departed = today - dt.timedelta(days=rng.randint(20, window_days - 60))
    first = hiring.hire(
        title=title,
        department=department,
        region=region,
        manager_id=manager,
        hired_on=first_hired,
        departed_on=departed,
    )
    stints = [Stint(first, first_hired, departed)]
    if departed is None:
        return stints
    successor_hired = departed + dt.timedelta(days=rng.randint(10, 60))
    if successor_hired >= today:
        return stints
    successor = hiring.hire(
        title=title,
        department=department,
        region=region,
        manager_id=manager,
        hired_on=successor_hired,
    )
    return [*stints, Stint(successor, successor_hired, None)]


def _add_functions(hiring: _Hiring) -> None:
    regions = [region.code for region in TOP_REGIONS]
    for department, head_title, staff_title, staff in FUNCTIONS:
        head = hiring.hire(
            title=head_title,
            department=department,
            region=None,
            manager_id=None,
            hired_on=hiring.veteran_hire_date(min_years=3, max_years=8),
        )
        regional = department in {"presales", "delivery", "customer-success"}
        for index in range(staff):
            hiring.hire(
                title=staff_title,
                department=department,
                region=regions[index % len(regions)] if regional else None,
                manager_id=head,
                hired_on=hiring.veteran_hire_date(min_years=0.3, max_years=6),
            )


def _logins(chart: OrgChart) -> list[Login]:
    """Pick real employees for the demo logins, one per role."""
    by_id = {row["id"]: row for row in chart.employees}
    east_team = chart.teams_of(DIRECT, "east-1")[0]
    rep_id = next(
        stint.employee_id
        for seat in east_team.seats
        for stint in seat
        if stint.ends_on is None
    )
    director_id = by_id[east_team.manager_id]["manager_id"]

    def head_of(department: str, *, staff: int = 0) -> str:
        members = [
            row
            for row in chart.employees
            if row["department_id"] == chart.department_ids[department]
        ]
        return str(members[staff]["external_id"])

    def external(employee_id: int) -> str:
        return str(by_id[employee_id]["external_id"])

    return [
        Login(
            "demo",
            "waggle-demo",
            "sales_ops",
            head_of("sales-ops"),
            "销售运营，看全部数据",
        ),
        Login(
            "director",
            "waggle-director",
            "director",
            external(director_id),
            "华东大区总监",
        ),
        Login(
            "manager",
            "waggle-manager",
            "manager",
            external(east_team.manager_id),
            "华东一区销售经理",
        ),
        Login("rep", "waggle-rep", "rep", external(rep_id), "华东一区销售代表"),
        Login(
            "dataowner",
            "waggle-dataowner",
            "data_owner",
            head_of("sales-ops", staff=1),
            "数据负责人",
        ),
        Login(
            "compliance", "waggle-compliance", "compliance", head_of("legal"), "合规"
        ),
        Login(
            "auditor", "waggle-auditor", "auditor", head_of("finance", staff=1), "审计"
        ),
        Login("itadmin", "waggle-itadmin", "it_admin", head_of("it"), "IT 管理员"),
    ]
