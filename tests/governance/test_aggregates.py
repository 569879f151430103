"""Aggregate-only access: k-anonymous groups and refusal of differencing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, build_org
from waggle.core.db import transaction
from waggle.crm.service import CONTACTS
from waggle.governance.aggregates import differencing_conflict
from waggle.governance.records import create_record

URL = "/api/v1/governance/aggregates"
# industry -> accounts; 零售 (4) is below k = 5.
INDUSTRIES = {"制造": 6, "金融": 5, "零售": 4}


@pytest.fixture
def org(sessions: sessionmaker[Session]) -> Org:
    org = build_org(sessions)
    ops = org.actors["ops"]
    owners = ["rep_a1", "rep_b1", "rep_w1"]
    with transaction(sessions) as session:
        number = 0
        for industry, count in INDUSTRIES.items():
            for _ in range(count):
                owner = org.employees[owners[number % 3]]
                account_id = add_account(
                    session,
                    ops,
                    f"客户{number}号",
                    industry=industry,
                    owner_id=owner,
                    province="浙江" if number == 0 else "上海",
                )
                create_record(
                    session,
                    ops,
                    CONTACTS,
                    {"account_id": account_id, "name": f"联系人{number}"},
                )
                number += 1
    return org


def _ask(client: TestClient, org: Org, username: str, **body: object) -> dict:  # type: ignore[type-arg]
    response = client.post(URL, json=body, headers=org.headers(username))
    return {"status": response.status_code, **response.json()}


def test_groups_smaller_than_k_are_suppressed(client: TestClient, org: Org) -> None:
    """Counts by industry show the groups of 5 or more and suppress the group of 4."""
    answer = _ask(
        client, org, "director_east", resource="accounts", group_by=["industry"]
    )

    assert answer["status"] == 200
    assert answer["groups"] == [
        {"key": {"industry": "制造"}, "value": 6},
        {"key": {"industry": "金融"}, "value": 5},
    ]
    assert answer["suppressed_groups"] == 1
    assert answer["min_group_size"] == 5


def test_aggregate_scope_reaches_rows_the_reader_cannot_list(
    client: TestClient, org: Org
) -> None:
    """A director counts every region's contacts by account industry, rows unseen."""
    answer = _ask(
        client,
        org,
        "director_west",
        resource="contacts",
        group_by=["account.industry"],
    )
    listed = client.get("/api/v1/contacts", headers=org.headers("director_west"))

    assert answer["groups"] == [
        {"key": {"account.industry": "制造"}, "value": 6},
        {"key": {"account.industry": "金融"}, "value": 5},
    ]
    assert len(listed.json()["items"]) == 5  # rep_w1's contacts only


def test_a_differencing_pair_of_queries_is_refused(
    client: TestClient, org: Org
) -> None:
    """After the total, the split by industry would reveal the 4 suppressed rows."""
    total = _ask(client, org, "director_east", resource="accounts")

    split = _ask(
        client, org, "director_east", resource="accounts", group_by=["industry"]
    )

    assert total["groups"] == [{"key": {}, "value": 15}]
    assert split["status"] == 403
    assert split["error"]["code"] == "aggregate_differencing"


def test_a_filter_that_differs_by_few_rows_is_refused(
    client: TestClient, org: Org
) -> None:
    """Repeating a query is fine; one that differs from it by < k rows is not."""
    first = _ask(client, org, "ops", resource="accounts", filters={"industry": "制造"})
    again = _ask(client, org, "ops", resource="accounts", filters={"industry": "制造"})
    disjoint = _ask(
        client, org, "ops", resource="accounts", filters={"industry": "金融"}
    )

    narrower = _ask(
        client,
        org,
        "ops",
        resource="accounts",
        filters={"industry": "制造", "province": "上海"},
    )

    assert [first["status"], again["status"], disjoint["status"]] == [200, 200, 200]
    assert narrower["status"] == 403  # 6 rows - 5 rows: the one in 浙江


def test_only_granted_roles_and_dimensions_may_be_asked(
    client: TestClient, org: Org
) -> None:
    """A rep may not aggregate; a dimension or measure not offered is invalid."""
    by_rep = _ask(client, org, "rep_a1", resource="accounts")
    by_name = _ask(client, org, "ops", resource="accounts", group_by=["name"])
    by_sum = _ask(client, org, "ops", resource="accounts", measure="sum:latitude")

    assert by_rep["status"] == 403
    assert by_name["status"] == 422
    assert by_sum["status"] == 422


def test_differencing_conflict_detects_small_differences() -> None:
    """Nested or overlapping groups differing by 1..k-1 rows conflict; equal do not."""
    everyone = frozenset(range(10))
    cases = [
        ([everyone], [everyone]),
        ([frozenset(range(9))], [everyone]),
        ([frozenset(range(5)), frozenset(range(5, 8))], [everyone]),
        ([frozenset(range(5))], [frozenset(range(5, 10))]),
    ]

    found = [differencing_conflict(new, old, k=5) for new, old in cases]

    assert found == [False, True, True, False]
