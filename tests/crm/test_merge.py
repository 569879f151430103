"""Merging duplicate accounts (合并客户): what moves, what is kept, who may merge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from waggle.core.db import transaction
from waggle.core.errors import Conflict, InvalidInput
from waggle.crm.credit_code import check_character
from waggle.crm.merge import account_duplicates, merge_accounts, merge_history
from waggle.crm.models import Account, Activity, Contact, MergeRecord, Opportunity
from waggle.crm.public_pool import release_account
from waggle.crm.service import ACTIVITIES, CONTACTS, create_account
from waggle.governance.models import AuditEntry
from waggle.governance.records import create_record

CODE = "91310115MA1K4ABC1" + check_character("91310115MA1K4ABC1")
OTHER_CODE = "91330106MA27XY401" + check_character("91330106MA27XY401")


@dataclass(frozen=True)
class Pair:
    """rep_a1's survivor and rep_a2's duplicate, with what hangs off the duplicate."""

    survivor: int
    merged: int
    contact: int
    opportunity: int
    activity: int


@pytest.fixture
def org(sessions: sessionmaker[Session]) -> Org:
    return build_org(sessions)


def _duplicate(session: Session, org: Org, name: str, owner: str, **values: Any) -> int:
    """Create an account that duplicates another one, as sales_ops may."""
    values = {"name": name, "owner_id": org.employees[owner], **values}
    return create_account(session, org.actors["ops"], values, allow_duplicate=True).id


@pytest.fixture
def pair(sessions: sessionmaker[Session], org: Org) -> Pair:
    rep_a2 = org.actors["rep_a2"]
    with transaction(sessions) as session:
        survivor = add_account(
            session, org.actors["rep_a1"], "上海星河机械有限公司", industry="制造业"
        )
        merged = _duplicate(
            session,
            org,
            "星河机械（上海）有限公司",
            "rep_a2",
            industry="装备",
            phone="021-61234567",
            credit_code=CODE,
            website="https://xinghe.example.cn",
        )
        contact = create_record(
            session, rep_a2, CONTACTS, {"account_id": merged, "name": "王芳"}
        ).id
        opportunity = add_opportunity(session, rep_a2, merged, "二期产线改造")
        activity = create_record(
            session,
            rep_a2,
            ACTIVITIES,
            {"account_id": merged, "kind": "visit", "subject": "拜访张总"},
        ).id
    return Pair(survivor, merged, contact, opportunity, activity)


def _merge(
    client: TestClient, org: Org, username: str, survivor: int, merged: int, **body: Any
) -> Any:
    return client.post(
        f"/api/v1/accounts/{survivor}/merge",
        json={"merged_id": merged, **body},
        headers=org.headers(username),
    )


def test_merging_moves_contacts_deals_and_activities_to_the_survivor(
    client: TestClient, sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """Every row of the merged account now points at the survivor."""
    response = _merge(client, org, "manager_a", pair.survivor, pair.merged)

    assert response.status_code == 200
    with sessions() as session:
        contact = session.get_one(Contact, pair.contact)
        opportunity = session.get_one(Opportunity, pair.opportunity)
        activity = session.get_one(Activity, pair.activity)
        assert (contact.account_id, contact.owner_id) == (
            pair.survivor,
            org.employees["rep_a1"],
        )
        assert (opportunity.account_id, opportunity.owner_id) == (
            pair.survivor,
            org.employees["rep_a2"],
        )
        assert activity.account_id == pair.survivor


def test_the_merge_record_keeps_the_merged_accounts_snapshot(
    client: TestClient, org: Org, pair: Pair
) -> None:
    """The MergeRecord holds the merged fields, the filled blanks and moved ids."""
    response = _merge(client, org, "manager_a", pair.survivor, pair.merged)

    record = response.json()["record"]
    snapshot = record["merged_snapshot"]
    assert (record["survivor_id"], record["merged_id"], record["merged_by"]) == (
        pair.survivor,
        pair.merged,
        "manager_a",
    )
    assert {
        key: snapshot["fields"][key]
        for key in ("id", "name", "owner_id", "credit_code", "industry", "phone")
    } == {
        "id": pair.merged,
        "name": "星河机械（上海）有限公司",
        "owner_id": org.employees["rep_a2"],
        "credit_code": CODE,
        "industry": "装备",
        "phone": "021-61234567",
    }
    assert snapshot["filled"] == [
        "credit_code",
        "phone",
        "phone_key",
        "website",
    ]
    assert snapshot["moved"] == {
        "contacts": [pair.contact],
        "opportunities": [pair.opportunity],
        "activities": [pair.activity],
        "pool_events": [],
        "merged_accounts": [],
    }
    assert snapshot["forced"] is False


def test_the_survivor_keeps_its_values_and_fills_its_blanks(
    client: TestClient, org: Org, pair: Pair
) -> None:
    """The survivor's industry stays; its empty phone and code take the other's."""
    response = _merge(client, org, "manager_a", pair.survivor, pair.merged)

    survivor = response.json()["survivor"]
    assert {
        key: survivor[key]
        for key in ("name", "industry", "credit_code", "phone", "website", "owner_id")
    } == {
        "name": "上海星河机械有限公司",
        "industry": "制造业",
        "credit_code": CODE,
        "phone": "021-61234567",
        "website": "https://xinghe.example.cn",
        "owner_id": org.employees["rep_a1"],
    }


def test_the_merged_account_is_marked_and_leaves_lists_and_duplicate_checks(
    client: TestClient, sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """merged_into_id points at the survivor; lists and duplicates skip it."""
    _merge(client, org, "manager_a", pair.survivor, pair.merged)

    read = client.get(f"/api/v1/accounts/{pair.merged}", headers=org.headers("ops"))
    listed = client.get("/api/v1/accounts", headers=org.headers("ops"))
    duplicates = client.get(
        f"/api/v1/accounts/{pair.survivor}/duplicates", headers=org.headers("ops")
    )

    assert (read.status_code, read.json()["merged_into_id"]) == (200, pair.survivor)
    assert [item["id"] for item in listed.json()["items"]] == [pair.survivor]
    assert duplicates.json() == []


def test_merge_history_shows_the_merge_from_both_sides(
    client: TestClient, org: Org, pair: Pair
) -> None:
    """GET merge-history of the survivor and of the merged account lists the record."""
    record = _merge(client, org, "manager_a", pair.survivor, pair.merged).json()
    headers = org.headers("manager_a")

    of_survivor = client.get(
        f"/api/v1/accounts/{pair.survivor}/merge-history", headers=headers
    )
    of_merged = client.get(
        f"/api/v1/accounts/{pair.merged}/merge-history", headers=headers
    )

    assert [entry["id"] for entry in of_survivor.json()] == [record["record"]["id"]]
    assert of_merged.json() == of_survivor.json()
    assert of_merged.json()[0]["merged_snapshot"]["fields"]["name"] == (
        "星河机械（上海）有限公司"
    )


def test_merge_history_and_merge_leave_audit_rows(
    sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """A merge writes a merge audit row; reading the history writes a read row."""
    manager = org.actors["manager_a"]
    with transaction(sessions) as session:
        record_id = merge_accounts(session, manager, pair.survivor, pair.merged).id
    with transaction(sessions) as session:
        history = [record.id for record in merge_history(session, manager, pair.merged)]

    with sessions() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.resource.in_(["accounts", "merge_records"]))
            .where(AuditEntry.action.in_(["merge", "read"]))
            .order_by(AuditEntry.id)
        ).all()
    assert history == [record_id]
    assert [
        (r.username, r.action, r.resource, r.record_ids, r.detail) for r in rows
    ] == [
        (
            "manager_a",
            "merge",
            "accounts",
            [str(pair.survivor), str(pair.merged)],
            f"account {pair.merged} into {pair.survivor}: moved 1 contacts, "
            "1 opportunities, 1 activities, 0 pool_events, 0 merged_accounts",
        ),
        ("manager_a", "read", "merge_records", [str(record_id)], None),
    ]


def test_a_merged_account_refuses_new_opportunities(
    client: TestClient, org: Org, pair: Pair
) -> None:
    """An opportunity on a merged-away account is 409 account_merged."""
    _merge(client, org, "manager_a", pair.survivor, pair.merged)

    response = client.post(
        "/api/v1/opportunities",
        json={"account_id": pair.merged, "name": "三期扩容"},
        headers=org.headers("rep_a2"),
    )

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "account_merged",
        "message": f"opportunities.account_id: account {pair.merged} was merged "
        f"into account {pair.survivor}; use that one",
        "details": {"survivor_id": pair.survivor},
    }


def test_merging_twice_is_refused(client: TestClient, org: Org, pair: Pair) -> None:
    """A second merge of the same account is 409 already_merged."""
    _merge(client, org, "manager_a", pair.survivor, pair.merged)

    again = _merge(client, org, "manager_a", pair.survivor, pair.merged)

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_merged"
    assert again.json()["error"]["details"] == {"survivor_id": pair.survivor}


def test_a_rep_may_not_merge_and_the_denial_is_audited(
    client: TestClient, sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """rep_a1 lacks delete on accounts: 403 and a denied audit row; nothing moves."""
    response = _merge(client, org, "rep_a1", pair.survivor, pair.merged)

    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "policy_denied",
    )
    with sessions() as session:
        denials = session.scalars(
            select(AuditEntry).where(AuditEntry.result == "denied")
        ).all()
        merged = session.get_one(Account, pair.merged)
        records = session.scalars(select(MergeRecord)).all()
    assert [(d.username, d.action, d.resource, d.detail) for d in denials] == [
        ("rep_a1", "delete", "accounts", "rep_a1 may not delete accounts")
    ]
    assert (merged.merged_into_id, records) == (None, [])


def test_a_manager_may_not_merge_outside_the_team(
    client: TestClient, sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """manager_b may not fold anything into rep_a1's account: 403, audited."""
    response = _merge(client, org, "manager_b", pair.survivor, pair.merged)

    assert response.status_code == 403
    with sessions() as session:
        denial = session.scalars(
            select(AuditEntry).where(AuditEntry.result == "denied")
        ).one()
    assert (denial.username, denial.action, denial.record_ids, denial.detail) == (
        "manager_b",
        "merge into",
        [str(pair.survivor)],
        f"accounts {pair.survivor} is outside what manager_b may merge into",
    )


def test_different_credit_codes_need_force(
    sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """Accounts with different credit codes merge only when forced, and it shows."""
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        session.get_one(Account, pair.survivor).credit_code = OTHER_CODE

    with transaction(sessions) as session, pytest.raises(Conflict) as refused:
        merge_accounts(session, ops, pair.survivor, pair.merged)
    with transaction(sessions) as session:
        forced = merge_accounts(session, ops, pair.survivor, pair.merged, force=True)

    assert refused.value.code == "credit_code_mismatch"
    assert forced.merged_snapshot["forced"] is True
    with sessions() as session:
        assert session.get_one(Account, pair.survivor).credit_code == OTHER_CODE


def test_an_account_cannot_be_merged_into_itself(
    sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """Naming the same id twice is InvalidInput."""
    with transaction(sessions) as session, pytest.raises(InvalidInput) as refused:
        merge_accounts(session, org.actors["ops"], pair.survivor, pair.survivor)

    assert refused.value.message == (
        f"account {pair.survivor}: merged_id must name another account"
    )


def test_merging_into_a_pool_account_hands_contacts_to_the_pool(
    sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """With an ownerless survivor, the merged owner's contacts become ownerless."""
    with transaction(sessions) as session:
        release_account(session, org.actors["rep_a1"], pair.survivor, reason="无需求")

    with transaction(sessions) as session:
        merge_accounts(session, org.actors["ops"], pair.survivor, pair.merged)

    with sessions() as session:
        contact = session.get_one(Contact, pair.contact)
        survivor = session.get_one(Account, pair.survivor)
        assert (contact.account_id, contact.owner_id) == (pair.survivor, None)
        assert (survivor.owner_id, survivor.is_in_public_pool) == (None, True)


def test_accounts_merged_earlier_follow_to_the_new_survivor(
    sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """An account merged into the merged one now points at the final survivor."""
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        earliest = _duplicate(session, org, "星河机械", "rep_a2")
        merge_accounts(session, ops, pair.merged, earliest)

    with transaction(sessions) as session:
        record = merge_accounts(session, ops, pair.survivor, pair.merged)
        moved = record.merged_snapshot["moved"]

    with sessions() as session:
        assert session.get_one(Account, earliest).merged_into_id == pair.survivor
    assert moved["merged_accounts"] == [earliest]  # type: ignore[index]


def test_account_duplicates_lists_merge_candidates(
    sessions: sessionmaker[Session], org: Org, pair: Pair
) -> None:
    """Before the merge each account lists the other as its duplicate."""
    with transaction(sessions) as session:
        matches = account_duplicates(session, org.actors["manager_a"], pair.survivor)

    assert [(m.account_id, m.matched_on, m.owner_name) for m in matches] == [
        (pair.merged, ("name",), "rep_a2")
    ]
