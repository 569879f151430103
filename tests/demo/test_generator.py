"""The demo generator: deterministic, complete and plausible (no database)."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter, defaultdict
from decimal import Decimal
from types import SimpleNamespace

import pytest

from waggle.crm.models import Opportunity
from waggle.crm.pipelines import default_pipeline_definition
from waggle.crm.service import missing_fields
from waggle.demo.credit_code import check_character, is_valid, make_credit_code
from waggle.demo.deals import PipelineShape, StageInfo
from waggle.demo.generator import WINDOW_DAYS, DemoCompany, generate_company
from waggle.demo.orgchart import SALES_DEPARTMENTS

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
SCALE = 0.05
CJK = re.compile(r"[\u4e00-\u9fff]")


def default_shape() -> PipelineShape:
    stages = [
        (position, stage)
        for position, stage in enumerate(default_pipeline_definition().stages, 1)
    ]
    info = {
        stage.key: StageInfo(
            position, stage.key, stage.probability, tuple(stage.required_fields)
        )
        for position, stage in stages
    }
    return PipelineShape(
        pipeline_id=1,
        open_stages=tuple(
            info[s.key] for _p, s in stages if not (s.is_won or s.is_lost)
        ),
        won=next(info[s.key] for _p, s in stages if s.is_won),
        lost=next(info[s.key] for _p, s in stages if s.is_lost),
    )


@pytest.fixture(scope="module")
def company() -> DemoCompany:
    return generate_company(seed=7, scale=SCALE, now=NOW, pipeline=default_shape())


def test_same_seed_gives_identical_rows(company: DemoCompany) -> None:
    """Two builds with one seed, scale and anchor produce the same rows."""
    again = generate_company(seed=7, scale=SCALE, now=NOW, pipeline=default_shape())

    other = generate_company(seed=8, scale=SCALE, now=NOW, pipeline=default_shape())

    assert again.tables == company.tables
    assert other.tables["accounts"] != company.tables["accounts"]


def test_counts_per_table_follow_the_scale(company: DemoCompany) -> None:
    """The scale sets accounts and opportunities; the org chart keeps its shape."""
    counts = {table: len(rows) for table, rows in company.tables.items()}

    assert counts["accounts"] == 250
    assert counts["opportunities"] == 1000
    assert counts["regions"] == 15
    assert counts["departments"] == 11
    assert counts["products"] == 30
    assert 290 <= counts["employees"] <= 330
    assert counts["contacts"] >= 2 * counts["accounts"]
    assert counts["stage_changes"] >= 2 * counts["opportunities"]
    assert counts["line_items"] >= counts["opportunities"]
    assert counts["pool_events"] == sum(
        row["is_in_public_pool"] for row in company.tables["accounts"]
    )


def test_closed_deals_carry_their_outcome(company: DemoCompany) -> None:
    """Won deals sit in the won stage with closed_at; lost ones have a reason."""
    shape = default_shape()
    opportunities = company.tables["opportunities"]

    by_status = defaultdict(list)
    for row in opportunities:
        by_status[row["status"]].append(row)

    for row in by_status["won"]:
        assert (row["stage_id"], row["forecast_category"]) == (shape.won.id, "closed")
        assert row["closed_at"] == row["stage_entered_at"]
    for row in by_status["lost"]:
        assert (row["stage_id"], row["forecast_category"]) == (shape.lost.id, "omitted")
        assert row["closed_at"] is not None and CJK.search(row["loss_reason"])
    open_ids = {stage.id for stage in shape.open_stages}
    for row in by_status["open"]:
        assert row["stage_id"] in open_ids
        assert row["closed_at"] is None and row["loss_reason"] is None
    assert min(len(by_status[s]) for s in ("won", "lost", "open")) > 0


def test_win_rate_of_closed_deals_is_plausible(company: DemoCompany) -> None:
    """Between a fifth and a third of closed deals are won."""
    statuses = Counter(row["status"] for row in company.tables["opportunities"])

    win_rate = statuses["won"] / (statuses["won"] + statuses["lost"])

    assert 0.2 <= win_rate <= 0.35


def test_stage_history_matches_the_current_stage(company: DemoCompany) -> None:
    """Each deal's stage changes chain from creation to its current stage."""
    history = defaultdict(list)
    for change in company.tables["stage_changes"]:
        history[change["opportunity_id"]].append(change)

    for row in company.tables["opportunities"]:
        changes = history[row["id"]]
        assert changes[0]["from_stage_id"] is None
        assert changes[0]["changed_at"] == row["created_at"]
        for before, after in itertools.pairwise(changes):
            assert after["from_stage_id"] == before["to_stage_id"]
            assert after["changed_at"] > before["changed_at"]
            elapsed = after["changed_at"] - before["changed_at"]
            assert after["seconds_in_previous_stage"] == int(elapsed.total_seconds())
        assert changes[-1]["to_stage_id"] == row["stage_id"]
        assert changes[-1]["changed_at"] == row["stage_entered_at"]


def test_every_reached_stage_has_its_required_fields(company: DemoCompany) -> None:
    """Fields a stage requires are filled on every deal that entered it."""
    shape = default_shape()
    stages = {s.id: s for s in (*shape.open_stages, shape.won, shape.lost)}
    entered = defaultdict(set)
    for change in company.tables["stage_changes"]:
        entered[change["opportunity_id"]].add(change["to_stage_id"])

    missing = []
    for row in company.tables["opportunities"]:
        opportunity = Opportunity(**row)
        for stage_id in entered[row["id"]]:
            stage = SimpleNamespace(required_fields=stages[stage_id].required_fields)
            missing += missing_fields(opportunity, stage)  # type: ignore[arg-type]

    assert missing == []


def test_opportunities_belong_to_sales_people(company: DemoCompany) -> None:
    """Every owner of an opportunity works in a sales department."""
    departments = {row["id"]: row["code"] for row in company.tables["departments"]}
    department_of = {
        row["id"]: departments[row["department_id"]]
        for row in company.tables["employees"]
    }

    owners = {row["owner_id"] for row in company.tables["opportunities"]}

    assert {department_of[owner] for owner in owners} <= SALES_DEPARTMENTS


def test_amounts_are_the_sum_of_line_items(company: DemoCompany) -> None:
    """An opportunity's amount is its line items' net total, in CNY."""
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for item in company.tables["line_items"]:
        net = item["unit_price"] * item["quantity"]
        net *= 1 - Decimal(str(item["discount_percent"])) / 100
        totals[item["opportunity_id"]] += net.quantize(Decimal("0.01"))

    mismatched = [
        row["id"]
        for row in company.tables["opportunities"]
        if row["amount"] != totals[row["id"]] or row["currency"] != "CNY"
    ]

    assert mismatched == []


def test_deals_fall_in_the_two_year_window(company: DemoCompany) -> None:
    """Deals were created within the last two years and nothing is in the future."""
    first = NOW - dt.timedelta(days=WINDOW_DAYS + 1)

    created = [row["created_at"] for row in company.tables["opportunities"]]
    touched = [row["occurred_at"] for row in company.tables["activities"]]

    assert first <= min(created) and max(created) <= NOW
    assert max(touched) <= NOW


def test_public_pool_accounts_have_no_owner(company: DemoCompany) -> None:
    """Pool accounts are unowned, idle for 30 days before release, deals closed."""
    pool = {
        row["id"]: row for row in company.tables["accounts"] if row["is_in_public_pool"]
    }
    deals = [
        row for row in company.tables["opportunities"] if row["account_id"] in pool
    ]

    assert pool and deals
    for account in pool.values():
        assert account["owner_id"] is None
        idle = account["pool_entered_at"] - account["last_followed_at"]
        assert idle >= dt.timedelta(days=30)
    for row in deals:
        assert row["status"] != "open"
        assert row["closed_at"] < pool[row["account_id"]]["pool_entered_at"]


def test_accounts_are_chinese_companies_with_valid_codes(
    company: DemoCompany,
) -> None:
    """Names are Chinese company names; credit codes are valid and unique."""
    accounts = company.tables["accounts"]

    codes = [row["credit_code"] for row in accounts]
    names = [row["name"] for row in accounts]

    assert all(is_valid(code) for code in codes)
    assert len(set(codes)) == len(codes)
    assert len({row["normalized_name"] for row in accounts}) == len(names)
    assert all(
        name.endswith("公司") and name.startswith(row["city"])
        for name, row in zip(names, accounts, strict=True)
    )
    assert all(CJK.fullmatch(row["name"][:1]) for row in company.tables["employees"])


def test_check_character_matches_published_codes() -> None:
    """The GB 32100-2015 check character of real published codes comes out right."""
    published = ["9144030071526726XG", "91330100716105852F"]

    computed = [code[:17] + check_character(code[:17]) for code in published]

    assert computed == published
    assert not is_valid("9144030071526726XA")


def test_made_credit_codes_carry_the_division_code() -> None:
    """A made-up code is an enterprise's (91) in the given division."""
    import random

    code = make_credit_code(random.Random(1), "320500")

    assert code.startswith("91320500") and is_valid(code)


def test_command_help_lists_every_login(company: DemoCompany) -> None:
    """`waggle demo --help` documents each login with its password and role."""
    from waggle.demo.cli import LOGINS_HELP

    documented = [
        f"{login.username} / {login.password} / {login.role}"
        for login in company.logins
    ]

    assert [entry for entry in documented if entry not in LOGINS_HELP] == []
    assert len(company.logins) == 8
