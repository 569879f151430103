"""Scheduled and incremental rescoring, and the score-changed notices."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights import AS_OF, add_account, add_deal, add_event, days
from waggle.core.db import transaction
from waggle.crm.models import Opportunity
from waggle.insights.jobs import (
    ScoreChanged,
    full_rescore,
    incremental_rescore,
    subscribe_score_changes,
)
from waggle.insights.models import OpportunityScore
from waggle.signals.stream import StoredEvent


def _open_deals(sessions: sessionmaker[Session], org: Org, count: int) -> list[int]:
    with transaction(sessions) as session:
        account = add_account(session)
        return [
            add_deal(
                session,
                owner_id=org.employees["rep_a1"],
                account_id=account,
                created_at=AS_OF - days(10),
            ).id
            for _ in range(count)
        ]


def _event(opportunity_id: int) -> StoredEvent:
    return StoredEvent(
        id=1,
        source="test",
        source_id="e1",
        event_type="call",
        channel="phone",
        occurred_at=AS_OF,
        actor_id=None,
        contact_id=None,
        account_id=None,
        opportunity_id=opportunity_id,
        speaker=None,
        attributes={},
    )


def test_the_full_rescore_announces_new_scores_once(
    sessions: sessionmaker[Session], org: Org, fixed_clock
):
    """The first run announces every new score; an unchanged second run none."""
    ids = _open_deals(sessions, org, 3)
    heard: list[Sequence[ScoreChanged]] = []
    unsubscribe = subscribe_score_changes(heard.append)

    try:
        first = full_rescore(sessions)
        second = full_rescore(sessions)
    finally:
        unsubscribe()

    assert (first, second) == (3, 3)
    assert len(heard) == 1
    assert [change.opportunity_id for change in heard[0]] == ids
    assert {change.previous_health for change in heard[0]} == {None}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(OpportunityScore)) == 6


def test_an_event_rescores_only_its_opportunity(
    sessions: sessionmaker[Session], org: Org, fixed_clock
):
    """The stream subscriber rescores the one deal an event names."""
    first, second = _open_deals(sessions, org, 2)
    with transaction(sessions) as session:
        deal = session.get_one(Opportunity, first)
        add_event(session, deal, "call", AS_OF - days(1))

    incremental_rescore(sessions)([_event(first), _event(first)])

    with sessions() as session:
        scored = session.scalars(select(OpportunityScore.opportunity_id)).all()
    assert scored == [first]
    assert second not in scored


def test_the_daily_customer_health_job_stores_one_latest_snapshot_per_account(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Run twice, the job keeps both snapshots and marks only the newest latest."""
    from waggle.insights.forecast_models import CustomerHealthScore
    from waggle.insights.jobs import customer_health_job

    _open_deals(sessions, org, 2)

    first = customer_health_job(sessions)
    second = customer_health_job(sessions)

    with transaction(sessions) as session:
        stored = session.scalar(select(func.count(CustomerHealthScore.id)))
        latest = session.scalar(
            select(func.count(CustomerHealthScore.id)).where(
                CustomerHealthScore.is_latest.is_(True)
            )
        )
    assert (first, second, stored, latest) == (1, 1, 2, 1)
