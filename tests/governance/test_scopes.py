"""Row scopes: reps see their own rows, managers the team, directors the region."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from waggle.core.db import transaction


@pytest.fixture
def org(sessions: sessionmaker[Session]) -> Org:
    org = build_org(sessions)
    with transaction(sessions) as session:
        for owner in ("rep_a1", "rep_a2", "rep_b1", "rep_w1", "manager_a"):
            actor = org.actors[owner]
            account_id = add_account(session, actor, f"{owner}的客户有限公司")
            add_opportunity(session, actor, account_id, f"{owner}的商机")
    return org


def _visible_names(client: TestClient, org: Org, username: str) -> set[str]:
    response = client.get("/api/v1/opportunities", headers=org.headers(username))
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("rep_a1", {"rep_a1的商机"}),
        ("manager_a", {"rep_a1的商机", "rep_a2的商机", "manager_a的商机"}),
        ("manager_b", {"rep_b1的商机"}),
        (
            "director_east",
            {"rep_a1的商机", "rep_a2的商机", "rep_b1的商机", "manager_a的商机"},
        ),
        ("director_west", {"rep_w1的商机"}),
        (
            "ops",
            {
                "rep_a1的商机",
                "rep_a2的商机",
                "rep_b1的商机",
                "rep_w1的商机",
                "manager_a的商机",
            },
        ),
        ("admin", None),
    ],
)
def test_list_shows_exactly_the_rows_in_scope(
    client: TestClient, org: Org, username: str, expected: set[str] | None
) -> None:
    """Each role's list holds exactly the opportunities its scope allows."""
    response = client.get("/api/v1/opportunities", headers=org.headers(username))

    if expected is None:
        assert response.status_code == 403
    else:
        assert {item["name"] for item in response.json()["items"]} == expected


def test_reading_another_reps_record_is_denied(client: TestClient, org: Org) -> None:
    """A rep asking for a colleague's opportunity by id gets 403, not the record."""
    colleague = client.get(
        "/api/v1/opportunities",
        headers=org.headers("manager_a"),
        params={"q": "rep_a2"},
    ).json()["items"][0]

    response = client.get(
        f"/api/v1/opportunities/{colleague['id']}", headers=org.headers("rep_a1")
    )

    assert response.status_code == 403
    assert "rep_a2" not in response.text


def test_rep_cannot_hand_a_record_to_someone_outside_scope(
    client: TestClient, org: Org
) -> None:
    """Creating a record owned by another team's rep is refused."""
    own = client.get("/api/v1/accounts", headers=org.headers("rep_a1")).json()["items"]

    response = client.post(
        "/api/v1/opportunities",
        json={
            "name": "越权商机",
            "account_id": own[0]["id"],
            "owner_id": org.employees["rep_w1"],
        },
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 403
    assert "越权商机" not in _visible_names(client, org, "ops")
