"""The opportunity timeline shows only the activities the reader may see."""

from __future__ import annotations

from tests.factories import add_account, add_opportunity
from waggle.core.db import transaction
from waggle.crm.models import Activity
from waggle.crm.service import opportunity_timeline


def test_a_rep_sees_own_activities_on_the_timeline_not_the_managers(sessions, org):
    """A manager's visit on a rep's deal is on the manager's timeline only."""
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(session, rep, "苏州工业园区精密制造有限公司")
        opportunity_id = add_opportunity(session, rep, account_id, "精密一期")
        for owner, subject in (("rep_a1", "电话跟进"), ("manager_a", "经理拜访")):
            session.add(
                Activity(
                    kind="visit",
                    subject=subject,
                    account_id=account_id,
                    opportunity_id=opportunity_id,
                    owner_id=org.employees[owner],
                )
            )

    with sessions() as session:
        seen_by_rep = opportunity_timeline(session, rep, opportunity_id)
        seen_by_manager = opportunity_timeline(
            session, org.actors["manager_a"], opportunity_id
        )

    def subjects(entries):
        return sorted(e["subject"] for e in entries if "subject" in e)

    assert subjects(seen_by_rep) == ["电话跟进"]
    assert subjects(seen_by_manager) == ["电话跟进", "经理拜访"]
