"""Manager views: planted anomalies are found with their reason; region gaps split."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights import AS_OF, add_account, add_deal, add_employee, add_event, days
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput
from waggle.crm.models import Account
from waggle.insights.manager import (
    compare_regions,
    decompose_gap,
    find_anomalies,
    robust_scores,
)

OPS = system_actor("test-manager")


def test_robust_scores_use_the_median_absolute_deviation():
    """Scores are 0.6745 (x - median) / MAD; without spread nobody departs."""
    scores = robust_scores({1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 100.0})

    assert {k: round(v, 4) for k, v in scores.items()} == {
        1: -1.349,
        2: -0.6745,
        3: 0.0,
        4: 0.6745,
        5: 65.4265,
    }
    assert robust_scores({1: 5.0, 2: 5.0, 3: 5.0}) == {}


def _seed_reps(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Five reps touching their deals 10-14 times in 28 days, and one who never does."""
    ids: dict[str, int] = {}
    with transaction(sessions) as session:
        account = add_account(session)
        for index, touches in enumerate((10, 11, 12, 13, 14, 0)):
            name = "沉默的销售" if touches == 0 else f"rep{index}"
            owner = add_employee(session, name)
            ids[name] = owner
            deals = [
                add_deal(
                    session,
                    owner_id=owner,
                    account_id=account,
                    created_at=AS_OF - days(10),
                )
                for _ in range(2)
            ]
            for number, deal in enumerate(deals):
                deal.name = f"{name}-{number}"
            for touch in range(touches):
                add_event(session, deals[touch % 2], "call", AS_OF - days(2))
            ids[f"{name}-deals"] = deals[0].id
    return ids


def test_a_planted_rep_and_their_deals_are_found_with_the_reason(sessions):
    """The rep who never touches their deals departs from peers, and says why."""
    _seed_reps(sessions)

    with transaction(sessions) as session:
        found = find_anomalies(session, OPS, as_of=AS_OF)

    assert [(a.kind, a.name, a.metric, a.value, a.median, a.z) for a in found] == [
        ("rep", "沉默的销售", "touches_per_open_deal", 0.0, 5.75, -5.1712),
        ("deal", "沉默的销售-0", "touches_28d", 0.0, 6.0, -4.047),
        ("deal", "沉默的销售-1", "touches_28d", 0.0, 6.0, -4.047),
    ]
    assert found[0].reason == {
        "zh-CN": "每个在途商机近28天触达次数为0，同类中位数5.75（稳健z值-5.2）",
        "en": (
            "touches per open deal in 28 days is 0 against a peer median of 5.75 "
            "(robust z -5.2)"
        ),
    }


def test_a_higher_threshold_lists_fewer_departures(sessions):
    """With the threshold at 5 only the rep remains; a threshold of 0 is refused."""
    _seed_reps(sessions)

    with transaction(sessions) as session:
        found = find_anomalies(session, OPS, as_of=AS_OF, threshold=5)
    with transaction(sessions) as session, pytest.raises(InvalidInput):
        find_anomalies(session, OPS, as_of=AS_OF, threshold=0)

    assert [(a.kind, a.name) for a in found] == [("rep", "沉默的销售")]


def _seed_regions(sessions: sessionmaker[Session], org: Org) -> None:
    """East wins 3 of 6 (mostly referrals), west 1 of 4 (mostly web leads)."""
    plan = {
        ("rep_a1", "制造业"): [("referral", "won")] * 3
        + [("referral", "lost")]
        + [("web", "lost")] * 2,
        ("rep_w1", "软件"): [("referral", "won")] + [("web", "lost")] * 3,
    }
    with transaction(sessions) as session:
        for (owner, industry), deals in plan.items():
            account = add_account(session)
            session.get_one(Account, account).industry = industry
            for source, status in deals:
                add_deal(
                    session,
                    owner_id=org.employees[owner],
                    account_id=account,
                    created_at=AS_OF - days(100),
                    status=status,
                    closed_at=AS_OF - days(20),
                    source=source,
                )


def test_region_gap_splits_into_mix_and_rate_that_sum_exactly(sessions, org):
    """Per factor, mix plus rate effects equal the win-rate gap, as fractions."""
    _seed_regions(sessions, org)

    with transaction(sessions) as session:
        comparison = compare_regions(session, OPS, as_of=AS_OF)

    assert comparison is not None
    assert (comparison.region_a, comparison.region_b) == ("east", "west")
    assert comparison.gap == Fraction(1, 4)
    for factor in comparison.factors:
        assert factor.mix + factor.rate == comparison.gap
    by_factor = {factor.factor: factor for factor in comparison.factors}
    assert (by_factor["source"].mix, by_factor["source"].rate) == (
        Fraction(35, 96),
        Fraction(-11, 96),
    )
    assert (by_factor["industry"].mix, by_factor["industry"].rate) == (
        Fraction(1, 4),
        Fraction(0),
    )
    assert by_factor["source"].summary()["zh-CN"] == (
        "按线索来源: 结构差异贡献+36.5个百分点，线索来源内转化率差异贡献-11.5个百分点"
    )


def test_region_comparison_follows_the_row_scope(sessions, org):
    """A manager sees one region only: there is nothing to compare."""
    _seed_regions(sessions, org)

    with transaction(sessions) as session:
        comparison = compare_regions(session, org.actors["manager_a"], as_of=AS_OF)
    with transaction(sessions) as session, pytest.raises(InvalidInput, match="north"):
        compare_regions(session, OPS, "east", "north", as_of=AS_OF)

    assert comparison is None


def _rate(deals: list[tuple[str, bool]]) -> Fraction:
    return Fraction(sum(won for _s, won in deals), len(deals)) if deals else Fraction(0)


@given(
    st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=30),
    st.lists(st.tuples(st.sampled_from("bcde"), st.booleans()), max_size=30),
)
def test_mix_and_rate_effects_always_sum_to_the_gap(deals_a, deals_b):
    """Whatever the segments and outcomes, mix plus rate is exactly the gap."""
    gap = decompose_gap("source", deals_a, deals_b)

    assert gap.mix + gap.rate == _rate(deals_a) - _rate(deals_b)
