"""The demo company's customers: accounts (客户), their contacts and the public pool.

Each account is served by one seat of one team, chosen by where it is and how
big it is: groups and large companies by the sub-region's key-account team, a
share of small ones by the region's channel team, the rest by a direct team.
About one account in ten sits in the public pool (公海) with no owner.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from waggle.crm.dedupe import normalize_company_name, normalize_phone
from waggle.demo.catalog import (
    CONTACT_TITLES,
    GROUP_LEGAL_FORM,
    INDUSTRIES,
    INDUSTRY_WEIGHTS,
    LEGAL_FORMS,
    SIZE_WEIGHTS,
    SIZES,
    TOP_LEVEL_DOMAINS,
    TRADE_NAME_CHARACTERS,
    AccountSize,
    Industry,
)
from waggle.demo.credit_code import make_credit_code
from waggle.demo.names import random_name
from waggle.demo.orgchart import (
    CHANNEL,
    DIRECT,
    KEY_ACCOUNTS,
    OrgChart,
    Team,
    mobile_number,
)
from waggle.demo.places import (
    CITIES,
    DISTRICTS,
    MUNICIPALITIES,
    ROADS,
    City,
    province_full_name,
    sub_region_of,
)
from waggle.demo.worktime import cumulative_weights, weighted, work_instant

Row = dict[str, Any]

PUBLIC_POOL_SHARE = 0.1
POOL_IDLE_DAYS = 30
_CITY_WEIGHTS = cumulative_weights([city.weight for city in CITIES])
_SIZE_WEIGHTS = cumulative_weights(SIZE_WEIGHTS)
_INDUSTRY_WEIGHTS = cumulative_weights(INDUSTRY_WEIGHTS)


@dataclass
class Customer:
    """An account being generated, with what the deal generator needs to know."""

    row: Row
    size: AccountSize
    industry: Industry
    trade_name: str
    team: Team
    seat: int
    contacts: list[Row] = field(default_factory=list)
    decision_makers: list[int] = field(default_factory=list)
    pool_entered_on: dt.date | None = None

    @property
    def id(self) -> int:
        return int(self.row["id"])


class _Unique:
    """Remembers names, domains, phones and codes already given out."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.domains: set[str] = set()
        self.phones: set[str] = set()
        self.codes: set[str] = set()
        self.mobiles: set[str] = set()


def build_customers(
    rng: random.Random, chart: OrgChart, *, count: int, today: dt.date, window_days: int
) -> list[Customer]:
    """Generate ``count`` accounts with their contacts."""
    unique = _Unique()
    customers = []
    contact_ids = itertools.count(1)
    for account_id in range(1, count + 1):
        customer = _account(rng, chart, unique, account_id, today, window_days)
        _add_contacts(rng, customer, unique, contact_ids)
        customers.append(customer)
    return customers


def _account(
    rng: random.Random,
    chart: OrgChart,
    unique: _Unique,
    account_id: int,
    today: dt.date,
    window_days: int,
) -> Customer:
    city = rng.choices(CITIES, cum_weights=_CITY_WEIGHTS)[0]
    size = rng.choices(SIZES, cum_weights=_SIZE_WEIGHTS)[0]
    industry = rng.choices(INDUSTRIES, cum_weights=_INDUSTRY_WEIGHTS)[0]
    name, trade_name, pinyin = _company_name(rng, unique, city, size, industry)
    team = _team_for(rng, chart, city, size)
    seat = rng.randrange(len(team.seats))
    created_on = today - dt.timedelta(
        days=rng.randint(window_days // 3, window_days * 3)
    )
    phone = _landline(rng, unique, city)
    row: Row = {
        "id": account_id,
        "external_id": f"DEMO-A{account_id:05d}",
        "name": name,
        "normalized_name": normalize_company_name(name),
        "industry": industry.name,
        "region_id": chart.region_ids[sub_region_of(city.province).code],
        "size": size.name,
        "province": city.province,
        "city": city.name,
        "address": _address(rng, city),
        "latitude": round(city.latitude + rng.uniform(-0.12, 0.12), 5),
        "longitude": round(city.longitude + rng.uniform(-0.15, 0.15), 5),
        "owner_id": team.owner_on(seat, today),
        "credit_code": _credit_code(rng, unique, city),
        "phone": phone,
        "phone_key": normalize_phone(phone),
        "email_domain": _domain(rng, unique, pinyin, industry),
        "is_in_public_pool": False,
        "pool_entered_at": None,
        "last_followed_at": None,
        "merged_into_id": None,
        "created_at": work_instant(rng, created_on),
    }
    row["website"] = "https://www." + row["email_domain"]
    customer = Customer(row, size, industry, trade_name, team, seat)
    if rng.random() < PUBLIC_POOL_SHARE:
        _release_to_pool(rng, customer, today, window_days)
    return customer


def _company_name(
    rng: random.Random,
    unique: _Unique,
    city: City,
    size: AccountSize,
    industry: Industry,
) -> tuple[str, str, str]:
    """Return a new company name, its trade name (字号) and the trade name's pinyin."""
    while True:
        first, second = rng.sample(TRADE_NAME_CHARACTERS, 2)
        trade_name, pinyin = first[0] + second[0], first[1] + second[1]
        business = rng.choice(industry.business_words)
        if size.name == "集团企业" and rng.random() < 0.6:
            legal_form = GROUP_LEGAL_FORM
        else:
            legal_form = weighted(rng, LEGAL_FORMS)
        name = f"{city.name}{trade_name}{business}{legal_form}"
        key = normalize_company_name(name)
        if key not in unique.names:
            unique.names.add(key)
            return name, trade_name, pinyin


def _team_for(
    rng: random.Random, chart: OrgChart, city: City, size: AccountSize
) -> Team:
    sub_region = sub_region_of(city.province)
    if size.name in {"大型企业", "集团企业"}:
        return chart.teams_of(KEY_ACCOUNTS, sub_region.code)[0]
    if size.name == "小微企业" and rng.random() < 0.35:
        return chart.teams_of(CHANNEL, str(sub_region.parent))[0]
    return rng.choice(chart.teams_of(DIRECT, sub_region.code))


def _address(rng: random.Random, city: City) -> str:
    province = (
        "" if city.province in MUNICIPALITIES else province_full_name(city.province)
    )
    return (
        f"{province}{city.name}市{rng.choice(DISTRICTS)}{rng.choice(ROADS)}"
        f"{rng.randint(1, 999)}号"
    )


def _landline(rng: random.Random, unique: _Unique, city: City) -> str:
    while True:
        number = f"{city.area_code}-{rng.randint(2, 8)}{rng.randrange(10**7):07d}"
        if number not in unique.phones:
            unique.phones.add(number)
            return number


def _credit_code(rng: random.Random, unique: _Unique, city: City) -> str:
    while True:
        code = make_credit_code(rng, city.division_code)
        if code not in unique.codes:
            unique.codes.add(code)
            return code


def _domain(
    rng: random.Random, unique: _Unique, pinyin: str, industry: Industry
) -> str:
    base = pinyin if rng.random() < 0.5 else f"{pinyin}-{industry.domain_hint}"
    domain, number = base + rng.choice(TOP_LEVEL_DOMAINS), 1
    while domain in unique.domains:
        number += 1
        domain = f"{base}{number}" + rng.choice(TOP_LEVEL_DOMAINS)
    unique.domains.add(domain)
    return domain


def _release_to_pool(
    rng: random.Random, customer: Customer, today: dt.date, window_days: int
) -> None:
    """Put the account in the public pool: unfollowed for a while, then released."""
    entered_on = today - dt.timedelta(days=rng.randint(5, window_days - 30))
    created_on = entered_on - dt.timedelta(days=rng.randint(60, window_days))
    customer.pool_entered_on = entered_on
    customer.row.update(
        {
            "owner_id": None,
            "is_in_public_pool": True,
            "pool_entered_at": work_instant(rng, entered_on),
            "created_at": min(
                customer.row["created_at"], work_instant(rng, created_on)
            ),
        }
    )


def _add_contacts(
    rng: random.Random,
    customer: Customer,
    unique: _Unique,
    contact_ids: Iterator[int],
) -> None:
    roles = [
        "decision_maker",
        *rng.sample(
            ["influencer", "technical", "procurement", "finance", "user"],
            k=min(5, 1 + rng.randint(0, 1) + int(customer.size.deal_weight)),
        ),
    ]
    for role in roles:
        contact_id = next(contact_ids)
        name = random_name(rng)
        customer.contacts.append(
            {
                "id": contact_id,
                "external_id": f"DEMO-C{contact_id:06d}",
                "account_id": customer.id,
                "name": name.full,
                "title": rng.choice(CONTACT_TITLES[role]),
                "decision_role": role,
                "phone": mobile_number(rng, unique.mobiles),
                "email": f"{name.email_local}@{customer.row['email_domain']}",
                "wechat_id": f"wxid_{name.surname_pinyin}{rng.randrange(10**6):06d}",
                "owner_id": customer.row["owner_id"],
                "created_at": customer.row["created_at"],
                "updated_at": customer.row["created_at"],
            }
        )
        if role == "decision_maker":
            customer.decision_makers.append(contact_id)
