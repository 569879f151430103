"""The shared contract every REST resource honours.

Create, read, list, update, delete, a policy denial, and the audit rows each
of these leaves behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from waggle.governance.models import AuditEntry


@dataclass(frozen=True)
class Contract:
    resource: str
    writer: str  # a user allowed to create, update and delete
    outsider: str  # a user the policy refuses to create for
    payload: Callable[[TestClient, Org], dict[str, Any]]
    change: dict[str, Any]


def _account(client: TestClient, org: Org, name: str = "上海星河机械有限公司") -> int:
    response = client.post(
        "/api/v1/accounts", json={"name": name}, headers=org.headers("manager_a")
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


CONTRACTS = [
    Contract(
        "accounts",
        "manager_a",
        "admin",
        lambda c, o: {"name": "杭州云帆科技股份有限公司", "city": "杭州"},
        {"industry": "制造业"},
    ),
    Contract(
        "contacts",
        "manager_a",
        "admin",
        lambda c, o: {
            "account_id": _account(c, o),
            "name": "王芳",
            "decision_role": "decision_maker",
            "email": "wang@xinghe.cn",
        },
        {"title": "采购总监"},
    ),
    Contract(
        "opportunities",
        "manager_a",
        "admin",
        lambda c, o: {
            "account_id": _account(c, o),
            "name": "二期产线改造",
            "amount": "1250000.50",
        },
        {"amount": "990000.00"},
    ),
    Contract(
        "products",
        "ops",
        "rep_a1",
        lambda c, o: {"sku": "WG-100", "name": "数据采集网关", "unit_price": "3999.00"},
        {"unit_price": "3599.00"},
    ),
    Contract(
        "quotas",
        "ops",
        "rep_a1",
        lambda c, o: {
            "owner_id": o.employees["rep_a1"],
            "period": "2026-Q2",
            "amount": "3000000",
        },
        {"amount": "3200000.00"},
    ),
    Contract(
        "activities",
        "manager_a",
        "admin",
        lambda c, o: {
            "account_id": _account(c, o),
            "kind": "visit",
            "subject": "拜访客户，确认需求",
        },
        {"body": "客户关注交付周期"},
    ),
    Contract(
        "regions",
        "admin",
        "rep_a1",
        lambda c, o: {"code": "north", "name": "华北大区"},
        {"name": "华北区"},
    ),
    Contract(
        "departments",
        "admin",
        "rep_a1",
        lambda c, o: {"code": "presales", "name": "售前部"},
        {"name": "售前技术部"},
    ),
    Contract(
        "employees",
        "admin",
        "rep_a1",
        lambda c, o: {"external_id": "E-new", "name": "李雷", "email": "li@corp.cn"},
        {"title": "客户经理"},
    ),
]


def _audit(session: Session, resource: str, action: str) -> list[AuditEntry]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.resource == resource, AuditEntry.action == action)
            .order_by(AuditEntry.id)
        )
    )


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.resource)
def test_resource_contract(
    contract: Contract, client: TestClient, org: Org, session: Session
) -> None:
    """Each resource supports the full lifecycle and audits every step."""
    url, headers = f"/api/v1/{contract.resource}", org.headers(contract.writer)
    payload = contract.payload(client, org)

    created = client.post(url, json=payload, headers=headers)
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    read = client.get(f"{url}/{record_id}", headers=headers)
    listed = client.get(url, params={"limit": 500}, headers=headers)
    updated = client.patch(f"{url}/{record_id}", json=contract.change, headers=headers)
    deleted = client.delete(f"{url}/{record_id}", headers=headers)
    gone = client.get(f"{url}/{record_id}", headers=headers)

    assert read.status_code == 200
    assert {k: read.json()[k] for k in payload} == {
        k: created.json()[k] for k in payload
    }
    assert record_id in [item["id"] for item in listed.json()["items"]]
    assert updated.status_code == 200, updated.text
    for key, value in contract.change.items():
        assert updated.json()[key] == value
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    for action in ("create", "read", "update", "delete"):
        entries = _audit(session, contract.resource, action)
        assert any(str(record_id) in entry.record_ids for entry in entries), action
    update_entry = _audit(session, contract.resource, "update")[-1]
    assert update_entry.username == contract.writer
    assert update_entry.result == "ok"


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.resource)
def test_resource_policy_denial(
    contract: Contract, client: TestClient, org: Org, session: Session
) -> None:
    """A role without the right is refused with 403 and the refusal is audited."""
    payload = contract.payload(client, org)

    response = client.post(
        f"/api/v1/{contract.resource}",
        json=payload,
        headers=org.headers(contract.outsider),
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "policy_denied"
    denials = [
        e for e in _audit(session, contract.resource, "create") if e.result == "denied"
    ]
    assert [entry.username for entry in denials] == [contract.outsider]


def test_unauthenticated_request_is_refused(client: TestClient) -> None:
    """Without a token the API answers 401 with the one error body."""
    response = client.get("/api/v1/accounts")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def _opportunity(client: TestClient, org: Org) -> int:
    response = client.post(
        "/api/v1/opportunities",
        json={"account_id": _account(client, org), "name": "智能仓储一期"},
        headers=org.headers("manager_a"),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _product(client: TestClient, org: Org) -> int:
    response = client.post(
        "/api/v1/products",
        json={"sku": "WG-200", "name": "边缘网关", "unit_price": "100.00"},
        headers=org.headers("ops"),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_line_item_contract(client: TestClient, org: Org, session: Session) -> None:
    """Line items under an opportunity go through the lifecycle, audited."""
    url = f"/api/v1/opportunities/{_opportunity(client, org)}/line-items"
    headers = {"headers": org.headers("manager_a")}
    payload = {"product_id": _product(client, org), "quantity": 2}

    created = client.post(url, json=payload, **headers)
    item_id = created.json()["id"]
    read = client.get(f"{url}/{item_id}", **headers)
    listed = client.get(url, **headers)
    updated = client.patch(f"{url}/{item_id}", json={"quantity": 5}, **headers)
    denied = client.patch(
        f"{url}/{item_id}", json={"quantity": 9}, headers=org.headers("rep_b1")
    )
    deleted = client.delete(f"{url}/{item_id}", **headers)
    gone = client.get(f"{url}/{item_id}", **headers)

    assert created.status_code == 201, created.text
    assert read.json() == created.json()
    assert [item["id"] for item in listed.json()] == [item_id]
    assert (updated.json()["quantity"], updated.json()["total"]) == (5, "500.00")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "policy_denied"
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    for action in ("create", "read", "update", "delete"):
        entries = _audit(session, "line_items", action)
        assert any(str(item_id) in entry.record_ids for entry in entries), action
    assert _audit(session, "line_items", "update")[-1].detail == "quantity"
    refusals = [
        e for e in _audit(session, "opportunities", "update") if e.result != "ok"
    ]
    assert [(e.username, e.result) for e in refusals] == [("rep_b1", "denied")]


PIPELINE = {
    "key": "renewal",
    "name": "续约流程",
    "stages": [
        {"key": "open", "name": "待续约", "name_en": "Open", "probability": 50},
        {"key": "won", "name": "已续约", "name_en": "Renewed", "probability": 100,
         "is_won": True},
        {"key": "lost", "name": "流失", "name_en": "Churned", "probability": 0,
         "is_lost": True},
    ],
}  # fmt: skip


def test_pipeline_contract(client: TestClient, org: Org, session: Session) -> None:
    """Pipelines are created and changed by PUT, read, listed, deleted, audited."""
    url, headers = "/api/v1/pipelines", org.headers("ops")
    renamed = {**PIPELINE, "name": "续约管道"}

    created = client.put(url, json=PIPELINE, headers=headers)
    pipeline_id = created.json()["id"]
    read = client.get(f"{url}/{pipeline_id}", headers=headers)
    listed = client.get(url, headers=headers)
    updated = client.put(url, json=renamed, headers=headers)
    denied = client.delete(f"{url}/{pipeline_id}", headers=org.headers("manager_a"))
    deleted = client.delete(f"{url}/{pipeline_id}", headers=headers)
    gone = client.get(f"{url}/{pipeline_id}", headers=headers)

    assert created.status_code == 200, created.text
    assert [s["key"] for s in read.json()["stages"]] == ["open", "won", "lost"]
    assert pipeline_id in [pipeline["id"] for pipeline in listed.json()]
    assert (updated.json()["id"], updated.json()["name"]) == (pipeline_id, "续约管道")
    assert denied.status_code == 403
    assert deleted.status_code == 204
    assert gone.status_code == 404
    for action in ("create", "read", "update", "delete"):
        entries = _audit(session, "pipelines", action)
        assert any(str(pipeline_id) in entry.record_ids for entry in entries), action
    denials = [e for e in _audit(session, "pipelines", "delete") if e.result != "ok"]
    assert [e.username for e in denials] == ["manager_a"]


def test_a_pipeline_in_use_or_default_is_not_deleted(
    client: TestClient, org: Org
) -> None:
    """Deleting the default pipeline, or one holding deals, is a 409 conflict."""
    headers = org.headers("ops")
    default_id = client.get("/api/v1/pipelines", headers=headers).json()[0]["id"]
    renewal_id = client.put("/api/v1/pipelines", json=PIPELINE, headers=headers).json()[
        "id"
    ]
    client.post(
        "/api/v1/opportunities",
        json={"account_id": _account(client, org), "name": "年度续约",
              "pipeline_id": renewal_id},
        headers=org.headers("manager_a"),
    )  # fmt: skip

    default = client.delete(f"/api/v1/pipelines/{default_id}", headers=headers)
    in_use = client.delete(f"/api/v1/pipelines/{renewal_id}", headers=headers)

    assert [default.status_code, in_use.status_code] == [409, 409]
    assert "default pipeline cannot be deleted" in default.json()["error"]["message"]
    assert "1 opportunities still use it" in in_use.json()["error"]["message"]


def test_an_activity_on_a_colleagues_account_is_refused(
    client: TestClient, org: Org, session: Session
) -> None:
    """A rep cannot log an activity on an account outside their scope."""
    account_id = _account(client, org)

    response = client.post(
        "/api/v1/activities",
        json={"account_id": account_id, "kind": "call", "subject": "越权记录"},
        headers=org.headers("rep_w1"),
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "policy_denied"
    denials = [e for e in _audit(session, "accounts", "read") if e.result != "ok"]
    assert [(e.username, e.record_ids) for e in denials] == [
        ("rep_w1", [str(account_id)])
    ]
