"""Products on an opportunity: prices, discounts and who may change them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.core.db import transaction


@pytest.fixture
def opportunity_id(sessions: sessionmaker[Session], org: Org) -> int:
    with transaction(sessions) as session:
        actor = org.actors["rep_a1"]
        account_id = add_account(session, actor, "青岛海尔智能家电有限公司")
        return add_opportunity(session, actor, account_id, "智能工厂二期")


def test_line_item_total_applies_quantity_and_discount(
    client: TestClient, org: Org, opportunity_id: int
) -> None:
    """A line at list price 3,999.00 × 3 with 10% off totals 10,797.30."""
    product = client.post(
        "/api/v1/products",
        json={"sku": "GW-1", "name": "边缘网关", "unit_price": "3999.00"},
        headers=org.headers("ops"),
    ).json()
    url = f"/api/v1/opportunities/{opportunity_id}/line-items"

    added = client.post(
        url,
        json={"product_id": product["id"], "quantity": 3, "discount_percent": 10},
        headers=org.headers("rep_a1"),
    )
    listed = client.get(url, headers=org.headers("rep_a1")).json()

    assert added.status_code == 201, added.text
    assert added.json()["unit_price"] == "3999.00"
    assert [item["total"] for item in listed] == ["10797.30"]


def test_other_reps_cannot_add_or_remove_lines(
    client: TestClient, org: Org, opportunity_id: int
) -> None:
    """Changing a colleague's opportunity's products is denied."""
    product = client.post(
        "/api/v1/products",
        json={"sku": "GW-2", "name": "传感器", "unit_price": "99.00"},
        headers=org.headers("ops"),
    ).json()
    url = f"/api/v1/opportunities/{opportunity_id}/line-items"
    line = client.post(
        url, json={"product_id": product["id"]}, headers=org.headers("rep_a1")
    ).json()

    add = client.post(
        url, json={"product_id": product["id"]}, headers=org.headers("rep_a2")
    )
    remove = client.delete(f"{url}/{line['id']}", headers=org.headers("rep_a2"))
    removed_by_owner = client.delete(
        f"{url}/{line['id']}", headers=org.headers("rep_a1")
    )

    assert [add.status_code, remove.status_code] == [403, 403]
    assert removed_by_owner.status_code == 204
    assert client.get(url, headers=org.headers("rep_a1")).json() == []
