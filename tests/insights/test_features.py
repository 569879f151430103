"""Behaviour features: exact values on constructed events, and no future leakage."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session

from tests.insights import (
    AS_OF,
    add_account,
    add_contact,
    add_deal,
    add_employee,
    add_event,
    add_stage_change,
    add_tracker_hit,
    days,
    hours,
    stage_id,
)
from waggle.crm.models import Opportunity
from waggle.insights.features import (
    Features,
    compute_features,
    feature_levels,
    response_medians,
)


def _build_scene(session: Session) -> Opportunity:
    """An open deal with known behaviour, and a top rep's won deal as the norm."""
    rep, top_rep = add_employee(session, "rep"), add_employee(session, "top")
    account = add_account(session)
    c1, c2, c3, c4 = (
        add_contact(session, account),
        add_contact(session, account, "decision_maker"),
        add_contact(session, account, "user"),
        add_contact(session, account),
    )
    won = add_deal(
        session,
        owner_id=top_rep,
        account_id=account,
        created_at=AS_OF - days(80),
        status="won",
        closed_at=AS_OF - days(5),
    )
    add_stage_change(
        session,
        won,
        from_stage="discovery",
        to_stage="solution",
        at=AS_OF - days(30),
        seconds=days(5).total_seconds(),
    )
    for n in range(8):
        add_event(session, won, "call", AS_OF - days(6 + 3 * n), contact_id=c1)

    deal = add_deal(
        session,
        owner_id=rep,
        account_id=account,
        created_at=AS_OF - days(60),
        stage="discovery",
        source="展会",
        manual_probability=65,
    )
    add_stage_change(
        session, deal, from_stage=None, to_stage="lead", at=AS_OF - days(60)
    )
    add_stage_change(
        session,
        deal,
        from_stage="lead",
        to_stage="discovery",
        at=AS_OF - days(10),
        seconds=days(50).total_seconds(),
    )
    talk = AS_OF - days(3)
    add_event(session, deal, "call", AS_OF - days(40), contact_id=c4)
    add_event(session, deal, "call", AS_OF - days(20), contact_id=c2)
    add_event(session, deal, "chat_message", talk, speaker="rep", contact_id=c1)
    add_event(
        session,
        deal,
        "chat_message",
        talk + hours(2),
        speaker="customer",
        contact_id=c1,
    )
    add_event(session, deal, "email_sent", talk + hours(3), contact_id=c1)
    add_event(session, deal, "email_received", talk + hours(9), contact_id=c1)
    add_event(session, deal, "call", AS_OF - days(2), contact_id=c3)
    add_event(session, deal, "meeting_held", AS_OF - days(50), contact_id=c1)
    add_event(session, deal, "field_visit", AS_OF - days(100), contact_id=c1)
    for pages, dwell in ((3, 100), (5, 150)):
        add_event(
            session,
            deal,
            "material_opened",
            AS_OF - days(5),
            contact_id=c1,
            attributes={"pages_viewed": pages, "dwell_seconds": dwell},
        )
    add_tracker_hit(session, deal, "objection", AS_OF - days(4))
    add_tracker_hit(session, deal, "objection", AS_OF - days(3))
    add_tracker_hit(session, deal, "objection", AS_OF - days(3), is_negated=True)
    add_tracker_hit(session, deal, "competitor", AS_OF - days(3))
    add_tracker_hit(session, deal, "pricing", AS_OF - days(3))
    return deal


def test_features_of_constructed_events_have_exact_values(session):
    """Every feature of a deal with known events comes out at its worked-out value."""
    deal = _build_scene(session)

    found = compute_features(session, [deal.id], as_of=AS_OF)[deal.id]

    assert found == Features(
        opportunity_id=deal.id,
        reference_at=AS_OF,
        touches_28d=4,
        touches_per_week=1.0,
        top_rep_touch_norm=2.0,
        touch_ratio=0.5,
        days_since_interaction=2.0,
        customer_response_hours=4.0,
        rep_response_hours=1.0,
        contacts_28d=3,
        contacts_90d=4,
        is_decision_maker_engaged=True,
        stage_id=stage_id(session, "discovery"),
        days_in_stage=10.0,
        stage_norm_days=5.0,
        stage_velocity=2.0,
        objection_hits=2,
        competitor_mentions=1,
        pricing_mentions=1,
        materials_opened=2,
        material_pages=8,
        material_dwell_seconds=250,
        meetings=1,
        visits=0,
        amount=Decimal("300000.00"),
        source="展会",
        forecast_category="pipeline",
    )


def test_levels_of_the_constructed_deal_follow_the_documented_thresholds(session):
    """The constructed deal falls into the levels the module's table names."""
    deal = _build_scene(session)
    found = compute_features(session, [deal.id], as_of=AS_OF)[deal.id]

    levels = feature_levels(found)

    assert levels == {
        "touch_ratio": "below",
        "recency": "recent",
        "customer_response": "fast",
        "rep_response": "fast",
        "contacts": "multi",
        "decision_maker": "yes",
        "stage_velocity": "slow",
        "objections": "some",
        "competitors": "some",
        "pricing": "yes",
        "materials": "read",
        "meetings": "one",
        "visits": "none",
        "amount": "medium",
        "source": "展会",
        "forecast_category": "pipeline",
    }


def test_nothing_after_the_as_of_instant_changes_the_features(session):
    """Events, stage moves and deals won after ``as_of`` change no feature."""
    deal = _build_scene(session)
    before = compute_features(session, [deal.id], as_of=AS_OF)[deal.id]
    later = AS_OF + hours(1)
    add_event(session, deal, "call", later, contact_id=None)
    add_event(session, deal, "chat_message", later, speaker="customer")
    add_event(session, deal, "material_opened", later, attributes={"dwell_seconds": 9})
    add_tracker_hit(session, deal, "objection", later)
    add_stage_change(
        session, deal, from_stage="discovery", to_stage="solution", at=later, seconds=1
    )
    rival = add_deal(
        session,
        owner_id=add_employee(session, "newcomer"),
        account_id=deal.account_id,
        created_at=AS_OF - days(20),
        status="won",
        closed_at=later,
        amount="9000000",
    )
    for n in range(20):
        add_event(session, rival, "call", AS_OF - days(n))

    after = compute_features(session, [deal.id], as_of=AS_OF)[deal.id]

    assert after == before


def test_a_closed_deal_is_seen_just_before_it_closed(session):
    """A deal closed before ``as_of`` ignores what happened at and after its close."""
    rep, account = add_employee(session, "rep"), add_account(session)
    closed_at = AS_OF - days(10)
    deal = add_deal(
        session,
        owner_id=rep,
        account_id=account,
        created_at=AS_OF - days(40),
        status="lost",
        closed_at=closed_at,
    )
    add_event(session, deal, "call", closed_at - days(3))
    add_event(session, deal, "call", closed_at)
    add_event(session, deal, "call", closed_at + days(1))

    found = compute_features(session, [deal.id], as_of=AS_OF)[deal.id]

    just_before = days(3) - dt.timedelta(microseconds=1)
    assert found.touches_28d == 1
    assert found.days_since_interaction == just_before.total_seconds() / 86_400
    assert found.reference_at == closed_at - dt.timedelta(microseconds=1)


def test_many_deals_are_computed_in_one_call(session):
    """Features for many deals come back together, each with its own counts."""
    rep, account = add_employee(session, "rep"), add_account(session)
    deals = [
        add_deal(session, owner_id=rep, account_id=account, created_at=AS_OF - days(30))
        for _ in range(5)
    ]
    for index, deal in enumerate(deals):
        for n in range(index):
            add_event(session, deal, "call", AS_OF - days(1 + n))

    found = compute_features(session, [deal.id for deal in deals], as_of=AS_OF)

    assert [found[deal.id].touches_28d for deal in deals] == [0, 1, 2, 3, 4]


def test_response_medians_measure_from_the_first_message_of_a_run():
    """Waits run from the first unanswered message to the other side's answer."""
    turns = [
        (AS_OF, "rep"),
        (AS_OF + hours(1), "rep"),
        (AS_OF + hours(5), "customer"),
        (AS_OF + hours(7), "rep"),
    ]

    medians = response_medians(turns)

    assert medians == (5.0, 2.0)
