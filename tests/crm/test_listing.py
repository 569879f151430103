"""Listing: cursor pagination, filters, sorting and their error messages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from waggle.core.db import transaction

AMOUNTS = [Decimal(v) for v in ("500", "100", "300", "100", "900", "700", "300")]


@pytest.fixture
def org(sessions: sessionmaker[Session]) -> Org:
    org = build_org(sessions)
    actor = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(session, actor, "宁波海天塑机有限公司")
        for index, amount in enumerate(AMOUNTS):
            add_opportunity(session, actor, account_id, f"商机{index}", amount=amount)
    return org


def _all_pages(
    client: TestClient, org: Org, **params: object
) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get(
            "/api/v1/opportunities", params=query, headers=org.headers("rep_a1")
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


@pytest.mark.parametrize("sort", ["amount", "-amount", "name", "-id"])
def test_pages_cover_every_row_once_in_order(
    client: TestClient, org: Org, sort: str
) -> None:
    """Walking the cursor two rows at a time yields each row once, in sort order."""
    items = _all_pages(client, org, limit=2, sort=sort)

    key = sort.lstrip("-")
    values = [(Decimal(i[key]) if key == "amount" else i[key], i["id"]) for i in items]
    assert len({item["id"] for item in items}) == len(AMOUNTS) == len(items)
    assert values == sorted(values, reverse=sort.startswith("-"))


def test_filter_and_search_narrow_the_list(client: TestClient, org: Org) -> None:
    """Equality filters and the q search combine."""
    stage_id = _all_pages(client, org)[0]["stage_id"]

    items = _all_pages(client, org, stage_id=stage_id, q="商机3")

    assert [item["name"] for item in items] == ["商机3"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sort": "password"}, "cannot sort on 'password'"),
        ({"owner": "x"}, "cannot filter on 'owner'"),
        ({"owner_id": "abc"}, "opportunities.owner_id: expected an integer"),
        ({"cursor": "not-a-cursor"}, "the cursor is damaged"),
    ],
)
def test_bad_list_parameters_get_a_clear_error(
    client: TestClient, org: Org, params: dict[str, str], message: str
) -> None:
    """Unknown sort keys, filters, mistyped values and broken cursors answer 422."""
    response = client.get(
        "/api/v1/opportunities", params=params, headers=org.headers("rep_a1")
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert message in response.json()["error"]["message"]


def test_bulk_create_is_all_or_nothing(client: TestClient, org: Org) -> None:
    """A bulk request with one bad item creates nothing and names the item."""
    account_id = _all_pages(client, org)[0]["account_id"]
    good = {"name": "批量一", "account_id": account_id}
    bad = {"name": "批量二", "account_id": 999999}

    response = client.post(
        "/api/v1/opportunities/bulk", json=[good, bad], headers=org.headers("rep_a1")
    )
    names = {item["name"] for item in _all_pages(client, org)}

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("item 1:")
    assert "批量一" not in names
