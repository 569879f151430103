"""The public customer pool (公海): rules, sweep, claim caps, release and listing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from waggle.app import create_app
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.core.errors import Conflict, InvalidInput, PolicyDenied
from waggle.core.settings import Settings
from waggle.crm.models import Account, Contact, Opportunity, PipelineStage, PoolEvent
from waggle.crm.public_pool import (
    PoolOverride,
    PoolRules,
    SweepResult,
    claim_account,
    load_pool_rules,
    mask_phone,
    release_account,
    sweep_public_pool,
)
from waggle.crm.service import ACTIVITIES, CONTACTS, OPPORTUNITIES
from waggle.governance.models import AuditEntry
from waggle.governance.records import create_record, update_record

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
RULES = PoolRules(days_without_follow_up=30)


@pytest.fixture
def org(sessions: sessionmaker[Session]) -> Org:
    return build_org(sessions)


def _account(
    sessions: sessionmaker[Session], org: Org, owner: str, name: str, **values: Any
) -> int:
    with transaction(sessions) as session:
        return add_account(session, org.actors[owner], name, **values)


def _sweep(
    sessions: sessionmaker[Session], org: Org, rules: PoolRules = RULES
) -> SweepResult:
    with transaction(sessions) as session:
        return sweep_public_pool(session, org.actors["ops"], rules=rules)


def _release(
    sessions: sessionmaker[Session], org: Org, username: str, account_id: int
) -> None:
    with transaction(sessions) as session:
        release_account(session, org.actors[username], account_id, reason="预算冻结")


def _pool_state(
    sessions: sessionmaker[Session], account_id: int
) -> tuple[int | None, bool, dt.datetime | None]:
    with sessions() as session:
        account = session.get_one(Account, account_id)
        return account.owner_id, account.is_in_public_pool, account.pool_entered_at


def _audit(
    sessions: sessionmaker[Session], action: str
) -> list[tuple[str, str, list[str], str | None]]:
    with sessions() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == action)
            .order_by(AuditEntry.id)
        )
        return [(row.username, row.result, row.record_ids, row.detail) for row in rows]


def _events(
    sessions: sessionmaker[Session], account_id: int
) -> list[tuple[str, int | None, str | None, dt.datetime]]:
    with sessions() as session:
        rows = session.scalars(
            select(PoolEvent)
            .where(PoolEvent.account_id == account_id)
            .order_by(PoolEvent.id)
        )
        return [(e.kind, e.employee_id, e.reason, e.occurred_at) for e in rows]


def _stage(sessions: sessionmaker[Session], key: str) -> int:
    with sessions() as session:
        return session.scalars(
            select(PipelineStage.id).where(PipelineStage.key == key)
        ).one()


# Rules -----------------------------------------------------------------------


def test_rules_default_to_the_settings(settings: Settings) -> None:
    """Without a file the idle period and claim cap come from the settings."""
    configured = dataclasses.replace(
        settings, public_pool_days=14, public_pool_claim_cap=3
    )

    rules = load_pool_rules(configured)

    assert rules == PoolRules(days_without_follow_up=14, claim_cap=3)


def test_a_rules_file_overrides_the_settings(
    settings: Settings, tmp_path: Path
) -> None:
    """WAGGLE_PUBLIC_POOL_FILE's values win and its overrides are kept in order."""
    path = tmp_path / "pool.yaml"
    path.write_text(
        "days_without_follow_up: 20\nclaim_cap: null\ncooling_off_days: 0\n"
        "overrides:\n"
        "  - {industry: 制造业, days_without_follow_up: 60}\n"
        "  - {industry: 制造业, region: east, days_without_follow_up: 15}\n",
        encoding="utf-8",
    )

    rules = load_pool_rules(dataclasses.replace(settings, public_pool_file=path))

    assert rules == PoolRules(
        days_without_follow_up=20,
        claim_cap=None,
        cooling_off_days=0,
        overrides=(
            PoolOverride(industry="制造业", days_without_follow_up=60),
            PoolOverride(industry="制造业", region="east", days_without_follow_up=15),
        ),
    )


@pytest.mark.parametrize(
    ("industry", "regions", "days"),
    [
        ("制造业", ("shanghai", "east"), 15),
        ("制造业", ("beijing", "north"), 60),
        ("互联网", ("shanghai", "east"), 40),
        ("互联网", ("east",), 45),
        ("零售", ("beijing", "north"), 30),
    ],
)
def test_the_most_specific_override_wins(
    industry: str, regions: tuple[str, ...], days: int
) -> None:
    """Industry and region beat industry, which beats region; nearer regions win."""
    rules = PoolRules(
        days_without_follow_up=30,
        overrides=(
            PoolOverride(region="east", days_without_follow_up=45),
            PoolOverride(region="shanghai", days_without_follow_up=40),
            PoolOverride(industry="制造业", days_without_follow_up=60),
            PoolOverride(industry="制造业", region="east", days_without_follow_up=15),
        ),
    )

    assert rules.days_for(industry, regions) == days


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("claim_cap: -1\n", "claim_cap: Input should be greater than or equal to 0"),
        (
            "overrides:\n  - {days_without_follow_up: 3}\n",
            "overrides.0: Value error, an override names an industry, a region or both",
        ),
        ("- 30\n", "expected a mapping of rule names to values"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_file_and_field(
    settings: Settings, tmp_path: Path, text: str, message: str
) -> None:
    """A broken rules file raises InvalidInput with the path and the field."""
    path = tmp_path / "pool.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(InvalidInput) as error:
        load_pool_rules(dataclasses.replace(settings, public_pool_file=path))

    assert error.value.message == f"{path}: {message}"


@pytest.mark.parametrize(
    ("phone_key", "masked"),
    [("13812345678", "138****5678"), ("02161234567", "****4567"), (None, None)],
)
def test_phones_in_the_pool_are_masked(
    phone_key: str | None, masked: str | None
) -> None:
    """Only the last four digits (and a mobile's prefix) are shown."""
    assert mask_phone(phone_key) == masked


# Sweep -------------------------------------------------------------------------


def test_an_idle_account_is_swept_and_a_followed_one_is_not(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """After 30 idle days an account returns; one followed up on day 20 stays."""
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    followed = _account(sessions, org, "rep_a1", "云帆科技有限公司")
    fixed_clock.advance(days=20)
    with transaction(sessions) as session:
        create_record(
            session,
            org.actors["rep_a1"],
            ACTIVITIES,
            {"account_id": followed, "kind": "call", "subject": "电话回访"},
        )

    fixed_clock.advance(days=10, seconds=-1)
    early = _sweep(sessions, org)
    fixed_clock.advance(seconds=1)
    due = _sweep(sessions, org)

    assert (early.returned, early.checked) == ([], 0)
    assert (due.swept_at, due.checked, due.returned, due.protected) == (
        T0 + dt.timedelta(days=30),
        1,
        [idle],
        [],
    )
    assert _pool_state(sessions, idle) == (None, True, T0 + dt.timedelta(days=30))
    assert _pool_state(sessions, followed) == (org.employees["rep_a1"], False, None)


def test_a_sweep_leaves_an_audit_row_and_a_pool_event(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """The sweep writes one audit row and one swept event naming the last owner."""
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    fixed_clock.advance(days=30)

    _sweep(sessions, org)

    assert _audit(sessions, "pool_sweep") == [
        ("ops", "ok", [str(idle)], "1 returned, 0 protected, 1 checked")
    ]
    assert _events(sessions, idle) == [
        (
            "swept",
            org.employees["rep_a1"],
            "no_follow_up: 30 days without follow-up since 2026-03-02",
            T0 + dt.timedelta(days=30),
        )
    ]


def test_a_second_sweep_changes_nothing(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """Sweeping twice returns the account once."""
    _account(sessions, org, "rep_a1", "星河机械有限公司")
    fixed_clock.advance(days=31)

    first = _sweep(sessions, org)
    second = _sweep(sessions, org)

    assert (len(first.returned), second.returned, second.checked) == (1, [], 0)


def test_a_sweep_hands_open_deals_and_contacts_to_the_pool(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """Contacts and open deals lose their owner; a won deal keeps its owner."""
    rep = org.actors["rep_a1"]
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    won_stage = _stage(sessions, "won")
    with transaction(sessions) as session:
        contact = create_record(
            session, rep, CONTACTS, {"account_id": idle, "name": "王芳"}
        ).id
        open_deal = add_opportunity(session, rep, idle, "二期产线改造")
        won_deal = add_opportunity(session, rep, idle, "一期", stage_id=won_stage)
    fixed_clock.advance(days=30)

    _sweep(sessions, org)

    with sessions() as session:
        owners = {
            "contact": session.get_one(Contact, contact).owner_id,
            "open": session.get_one(Opportunity, open_deal).owner_id,
            "won": session.get_one(Opportunity, won_deal).owner_id,
        }
        open_updated_at = session.get_one(Opportunity, open_deal).updated_at
    assert owners == {"contact": None, "open": None, "won": org.employees["rep_a1"]}
    assert open_updated_at == T0


def test_a_claim_restarts_the_idle_clock(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """An account claimed on day 40 stays until day 70 though last followed on day 0."""
    account = _account(sessions, org, "rep_a2", "星河机械有限公司")
    _release(sessions, org, "rep_a2", account)
    fixed_clock.advance(days=40)
    with transaction(sessions) as session:
        claim_account(session, org.actors["rep_a1"], account, rules=RULES)

    fixed_clock.advance(days=29)
    before = _sweep(sessions, org)
    fixed_clock.advance(days=1)
    after = _sweep(sessions, org)

    assert (before.checked, before.returned) == (1, [])
    assert after.returned == [account]
    assert _events(sessions, account)[-1][:2] == ("swept", org.employees["rep_a1"])


def test_a_deal_at_negotiation_protects_the_account(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """An open deal at 60% or more keeps a quiet account out of the pool."""
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    with transaction(sessions) as session:
        add_opportunity(
            session,
            org.actors["rep_a1"],
            idle,
            "二期产线改造",
            stage_id=_stage(sessions, "negotiation"),
            expected_close_on=dt.date(2026, 6, 30),
            budget_confirmed=True,
        )
    fixed_clock.advance(days=90)

    result = _sweep(sessions, org)

    assert (result.checked, result.returned, result.protected) == (1, [], [idle])
    assert _pool_state(sessions, idle) == (org.employees["rep_a1"], False, None)


def test_moving_a_deal_along_counts_as_follow_up(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """A deal changed on day 20 keeps the account, unless the rules say otherwise."""
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    with transaction(sessions) as session:
        deal = add_opportunity(session, org.actors["rep_a1"], idle, "二期产线改造")
    fixed_clock.advance(days=20)
    with transaction(sessions) as session:
        update_record(
            session, org.actors["rep_a1"], OPPORTUNITIES, deal, {"amount": 990000}
        )
    fixed_clock.advance(days=10)

    counted = _sweep(sessions, org)
    ignored = _sweep(
        sessions,
        org,
        PoolRules(days_without_follow_up=30, opportunity_updates_count=False),
    )

    assert (counted.checked, counted.returned) == (1, [])
    assert ignored.returned == [idle]


def test_a_region_override_lengthens_the_idle_period(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """An account in region east with a 45-day override survives day 30."""
    east = _account(
        sessions, org, "rep_a1", "星河机械有限公司", region_id=org.regions["east"]
    )
    rules = PoolRules(
        days_without_follow_up=30,
        overrides=(PoolOverride(region="east", days_without_follow_up=45),),
    )
    fixed_clock.advance(days=30)

    on_day_30 = _sweep(sessions, org, rules)
    fixed_clock.advance(days=15)
    on_day_45 = _sweep(sessions, org, rules)

    assert (on_day_30.checked, on_day_30.returned) == (1, [])
    assert on_day_45.returned == [east]


def test_a_rep_may_not_sweep(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """POST /public-pool/sweep by a rep is 403 and the denial is audited."""
    response = client.post("/api/v1/public-pool/sweep", headers=org.headers("rep_a1"))

    assert response.status_code == 403
    assert _audit(sessions, "pool_sweep") == [
        (
            "rep_a1",
            "denied",
            [],
            "rep_a1 may not sweep the public pool: that needs update rights over "
            "every account",
        )
    ]


# The application's periodic job ---------------------------------------------------


def test_the_app_job_runner_sweeps_idle_accounts(
    app: FastAPI, sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """create_app's JobRunner runs public-pool-sweep, which returns the account."""
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    fixed_clock.advance(days=30)

    first = app.state.jobs.tick()
    again = app.state.jobs.tick()

    # Other contexts register jobs of their own; only the sweep matters here.
    assert ("public-pool-sweep" in first, "public-pool-sweep" in again) == (True, False)
    assert _pool_state(sessions, idle) == (None, True, T0 + dt.timedelta(days=30))
    assert _audit(sessions, "pool_sweep") == [
        ("pool-sweep", "ok", [str(idle)], "1 returned, 0 protected, 1 checked")
    ]


@pytest.fixture
def app_with_rules_file(settings: Settings, tmp_path: Path) -> Iterator[FastAPI]:
    path = tmp_path / "pool.yaml"
    path.write_text("days_without_follow_up: 10\n", encoding="utf-8")
    application = create_app(dataclasses.replace(settings, public_pool_file=path))
    yield application
    application.state.engine.dispose()


def test_the_job_follows_the_rules_file(
    app_with_rules_file: FastAPI,
    sessions: sessionmaker[Session],
    org: Org,
    fixed_clock: FixedClock,
) -> None:
    """With days_without_follow_up: 10 in the file the job sweeps on day 10."""
    idle = _account(sessions, org, "rep_a1", "星河机械有限公司")
    fixed_clock.advance(days=10)

    ran = app_with_rules_file.state.jobs.tick()

    assert "public-pool-sweep" in ran
    assert _pool_state(sessions, idle) == (None, True, T0 + dt.timedelta(days=10))


# Claiming and releasing ------------------------------------------------------------


def test_claim_and_release_round_trip_via_the_api(
    client: TestClient,
    sessions: sessionmaker[Session],
    org: Org,
    fixed_clock: FixedClock,
) -> None:
    """rep_a1 releases, rep_a2 sees the masked entry and claims it."""
    account = _account(
        sessions,
        org,
        "rep_a1",
        "星河机械有限公司",
        phone="138-1234-5678",
        address="上海市浦东新区张江路88号",
        city="上海",
        industry="制造业",
    )

    released = client.post(
        f"/api/v1/accounts/{account}/release",
        json={"reason": "客户已转向竞品"},
        headers=org.headers("rep_a1"),
    )
    listed = client.get("/api/v1/public-pool", headers=org.headers("rep_a2"))
    claimed = client.post(
        f"/api/v1/public-pool/{account}/claim", headers=org.headers("rep_a2")
    )
    after = client.get("/api/v1/public-pool", headers=org.headers("rep_a2"))

    assert released.json() == {
        "account_id": account,
        "is_in_public_pool": True,
        "pool_entered_at": "2026-03-02T09:00:00Z",
    }
    assert listed.json() == {
        "items": [
            {
                "account_id": account,
                "name": "星河机械有限公司",
                "credit_code": None,
                "industry": "制造业",
                "size": None,
                "province": None,
                "city": "上海",
                "region_id": None,
                "website": None,
                "phone_masked": "138****5678",
                "pool_entered_at": "2026-03-02T09:00:00Z",
                "last_followed_at": "2026-03-02T09:00:00Z",
                "entered_by": "released",
                "entry_reason": "客户已转向竞品",
                "cooling_off_until": None,
            }
        ],
        "next_cursor": None,
    }
    assert claimed.status_code == 200
    assert (claimed.json()["owner_id"], claimed.json()["is_in_public_pool"]) == (
        org.employees["rep_a2"],
        False,
    )
    assert after.json() == {"items": [], "next_cursor": None}
    assert _events(sessions, account) == [
        ("released", org.employees["rep_a1"], "客户已转向竞品", T0),
        ("claimed", org.employees["rep_a2"], None, T0),
    ]
    assert _audit(sessions, "pool_claim") == [
        ("rep_a2", "ok", [str(account)], f"owner {org.employees['rep_a2']}")
    ]


def test_the_releasing_rep_cools_off_before_claiming_again(
    client: TestClient,
    sessions: sessionmaker[Session],
    org: Org,
    fixed_clock: FixedClock,
) -> None:
    """The rep who released an account may claim it back only after 7 days."""
    account = _account(sessions, org, "rep_a1", "星河机械有限公司")
    _release(sessions, org, "rep_a1", account)
    headers = org.headers("rep_a1")

    refused = client.post(f"/api/v1/public-pool/{account}/claim", headers=headers)
    listed = client.get("/api/v1/public-pool", headers=headers)
    fixed_clock.advance(days=7)
    accepted = client.post(f"/api/v1/public-pool/{account}/claim", headers=headers)

    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "claim_cooling_off",
        "message": f"account {account}: employee {org.employees['rep_a1']} gave it "
        "up recently and may claim it again from 2026-03-09T09:00:00+00:00 "
        "(cooling-off period of 7 days)",
        "details": {"until": "2026-03-09T09:00:00+00:00"},
    }
    assert listed.json()["items"][0]["cooling_off_until"] == "2026-03-09T09:00:00Z"
    assert (accepted.status_code, accepted.json()["owner_id"]) == (
        200,
        org.employees["rep_a1"],
    )


@pytest.fixture
def capped_client(settings: Settings) -> Iterator[TestClient]:
    application = create_app(dataclasses.replace(settings, public_pool_claim_cap=1))
    with TestClient(application) as test_client:
        yield test_client
    application.state.engine.dispose()


def test_the_claim_cap_is_enforced_with_a_clear_error(
    capped_client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """With a cap of 1 the second claim is 409 claim_cap_reached until one goes back."""
    first = _account(sessions, org, "rep_a2", "星河机械有限公司")
    second = _account(sessions, org, "rep_a2", "云帆科技有限公司")
    _release(sessions, org, "rep_a2", first)
    _release(sessions, org, "rep_a2", second)
    headers = org.headers("rep_a1")

    claimed = capped_client.post(f"/api/v1/public-pool/{first}/claim", headers=headers)
    refused = capped_client.post(f"/api/v1/public-pool/{second}/claim", headers=headers)
    usage = capped_client.get("/api/v1/public-pool/rules", headers=headers)
    capped_client.post(
        f"/api/v1/accounts/{first}/release", json={"reason": "不合适"}, headers=headers
    )
    after_release = capped_client.post(
        f"/api/v1/public-pool/{second}/claim", headers=headers
    )

    assert claimed.status_code == 200
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "claim_cap_reached",
        "message": f"employee {org.employees['rep_a1']} has reached the cap of 1 "
        "accounts held from the pool; release an account or wait",
        "details": {"cap": "held", "limit": 1, "current": 1},
    }
    assert usage.json()["usage"] == {
        "held_from_pool": 1,
        "claims_last_day": 1,
        "claims_last_week": 1,
    }
    assert usage.json()["rules"]["claim_cap"] == 1
    assert after_release.status_code == 200


def test_the_daily_claim_cap_resets_after_24_hours(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """daily_claim_cap: 1 refuses a second claim until a day has passed."""
    rules = PoolRules(claim_cap=None, daily_claim_cap=1, cooling_off_days=0)
    first = _account(sessions, org, "rep_a2", "星河机械有限公司")
    second = _account(sessions, org, "rep_a2", "云帆科技有限公司")
    _release(sessions, org, "rep_a2", first)
    _release(sessions, org, "rep_a2", second)
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        claim_account(session, rep, first, rules=rules)

    with transaction(sessions) as session, pytest.raises(Conflict) as refused:
        claim_account(session, rep, second, rules=rules)
    fixed_clock.advance(days=1)
    with transaction(sessions) as session:
        claimed = claim_account(session, rep, second, rules=rules).owner_id

    assert (refused.value.code, refused.value.details) == (
        "claim_cap_reached",
        {"cap": "daily", "limit": 1, "current": 1},
    )
    assert claimed == org.employees["rep_a1"]


def test_claiming_an_account_outside_the_pool_is_refused(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Claiming an owned account is 409 not_in_public_pool."""
    account = _account(sessions, org, "rep_a2", "星河机械有限公司")

    with transaction(sessions) as session, pytest.raises(Conflict) as refused:
        claim_account(session, org.actors["rep_a1"], account, rules=RULES)

    assert (refused.value.code, refused.value.message) == (
        "not_in_public_pool",
        f"account {account} is not in the public pool",
    )


def test_a_manager_assigns_pool_accounts_within_the_team_only(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """manager_a may hand a pool account to rep_a1 but not to rep_b1 (分配)."""
    first = _account(sessions, org, "rep_a2", "星河机械有限公司")
    second = _account(sessions, org, "rep_a2", "云帆科技有限公司")
    _release(sessions, org, "rep_a2", first)
    _release(sessions, org, "rep_a2", second)
    manager = org.actors["manager_a"]

    with transaction(sessions) as session:
        owner = claim_account(
            session, manager, first, rules=RULES, owner_id=org.employees["rep_a1"]
        ).owner_id
    with transaction(sessions) as session, pytest.raises(PolicyDenied) as refused:
        claim_account(
            session, manager, second, rules=RULES, owner_id=org.employees["rep_b1"]
        )

    assert owner == org.employees["rep_a1"]
    assert _events(sessions, first)[-1][:3] == (
        "claimed",
        org.employees["rep_a1"],
        "assigned by manager_a",
    )
    assert (refused.value.action, refused.value.record_ids) == (
        "assign",
        (str(second),),
    )


def test_a_rep_may_not_release_another_reps_account(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """rep_a2 releasing rep_a1's account is 403 and the account stays put."""
    account = _account(sessions, org, "rep_a1", "星河机械有限公司")

    response = client.post(
        f"/api/v1/accounts/{account}/release",
        json={"reason": "不跟了"},
        headers=org.headers("rep_a2"),
    )

    assert response.status_code == 403
    assert _pool_state(sessions, account) == (org.employees["rep_a1"], False, None)
    assert _audit(sessions, "release") == [
        (
            "rep_a2",
            "denied",
            [str(account)],
            f"accounts {account} is outside what rep_a2 may release",
        )
    ]


# What the pool shows ------------------------------------------------------------------


def test_pool_detail_stays_hidden_until_claimed(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A rep lists the pool entry but may not open the account or its contacts."""
    account = _account(
        sessions, org, "rep_a1", "星河机械有限公司", address="上海市浦东新区张江路88号"
    )
    with transaction(sessions) as session:
        create_record(
            session,
            org.actors["rep_a1"],
            CONTACTS,
            {"account_id": account, "name": "王芳", "phone": "13912345678"},
        )
    _release(sessions, org, "rep_a1", account)
    headers = org.headers("rep_a2")

    entry = client.get("/api/v1/public-pool", headers=headers).json()["items"][0]
    detail = client.get(f"/api/v1/accounts/{account}", headers=headers)
    contacts = client.get(
        "/api/v1/contacts", params={"account_id": account}, headers=headers
    )

    assert "address" not in entry
    assert entry["name"] == "星河机械有限公司"
    assert (detail.status_code, detail.json()["error"]["code"]) == (
        403,
        "policy_denied",
    )
    assert contacts.json()["items"] == []
    assert [row for row in _audit(sessions, "read") if row[1] == "denied"] == [
        (
            "rep_a2",
            "denied",
            [str(account)],
            f"accounts {account} is outside what rep_a2 may read",
        )
    ]


def test_a_role_without_pool_rights_may_not_list_it(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """it_admin is refused the pool list with 403 and an audited denial."""
    response = client.get("/api/v1/public-pool", headers=org.headers("admin"))

    assert response.status_code == 403
    with sessions() as session:
        denial = session.scalars(
            select(AuditEntry).where(AuditEntry.result == "denied")
        ).one()
    assert (denial.username, denial.action, denial.resource, denial.detail) == (
        "admin",
        "read",
        "public_pool",
        "admin may not read public_pool",
    )
