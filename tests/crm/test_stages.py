"""Stage moves: required fields, history with durations, won and lost outcomes."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.crm.models import Contact


def _stages(client: TestClient, org: Org) -> dict[str, int]:
    pipeline = client.get("/api/v1/pipelines", headers=org.headers("rep_a1")).json()[0]
    return {stage["key"]: stage["id"] for stage in pipeline["stages"]}


@pytest.fixture
def opportunity_id(sessions: sessionmaker[Session], org: Org) -> int:
    with transaction(sessions) as session:
        actor = org.actors["rep_a1"]
        account_id = add_account(session, actor, "深圳迈瑞医疗器械有限公司")
        return add_opportunity(session, actor, account_id, "手术室整体方案")


def test_move_is_refused_until_required_fields_are_filled(
    client: TestClient, org: Org, opportunity_id: int, session: Session
) -> None:
    """Entering 方案确认 requires pain points and a decision maker, both named."""
    stages, headers = _stages(client, org), org.headers("rep_a1")
    url = f"/api/v1/opportunities/{opportunity_id}"

    refused = client.post(
        f"{url}/stage", json={"stage_id": stages["solution"]}, headers=headers
    )
    contact = client.post(
        "/api/v1/contacts",
        headers=headers,
        json={
            "account_id": client.get(url, headers=headers).json()["account_id"],
            "name": "陈主任",
            "decision_role": "decision_maker",
        },
    ).json()
    client.patch(
        url,
        headers=headers,
        json={
            "customer_pain_points": "手术排期效率低",
            "decision_maker_contact_id": contact["id"],
        },
    )
    accepted = client.post(
        f"{url}/stage", json={"stage_id": stages["solution"]}, headers=headers
    )

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "stage_requirements_unmet"
    assert refused.json()["error"]["details"]["missing_fields"] == [
        "customer_pain_points",
        "decision_maker_contact_id",
    ]
    assert accepted.status_code == 200
    assert accepted.json()["stage_id"] == stages["solution"]
    assert session.get(Contact, contact["id"]) is not None


def test_history_records_time_spent_in_each_stage(
    fixed_clock: FixedClock, client: TestClient, org: Org, opportunity_id: int
) -> None:
    """Each move stores the seconds spent in the stage it left."""
    stages, headers = _stages(client, org), org.headers("rep_a1")
    url = f"/api/v1/opportunities/{opportunity_id}"

    fixed_clock.advance(days=3)
    client.post(f"{url}/stage", json={"stage_id": stages["discovery"]}, headers=headers)
    fixed_clock.advance(hours=5)
    client.post(
        f"{url}/stage",
        json={"stage_id": stages["lost"], "loss_reason": "预算取消"},
        headers=headers,
    )
    history = client.get(f"{url}/stage-history", headers=headers).json()
    final = client.get(url, headers=headers).json()

    assert [h["to_stage_id"] for h in history] == [stages["discovery"], stages["lost"]]
    assert [h["seconds_in_previous_stage"] for h in history] == [3 * 86400, 5 * 3600]
    assert final["status"] == "lost"
    assert final["loss_reason"] == "预算取消"
    assert dt.datetime.fromisoformat(final["closed_at"]) == fixed_clock.current


def test_lost_needs_a_reason(client: TestClient, org: Org, opportunity_id: int) -> None:
    """Moving to 输单 without a loss reason is refused."""
    stages = _stages(client, org)

    response = client.post(
        f"/api/v1/opportunities/{opportunity_id}/stage",
        json={"stage_id": stages["lost"]},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"]["missing_fields"] == ["loss_reason"]


def test_stage_of_another_pipeline_is_refused(
    client: TestClient, org: Org, opportunity_id: int
) -> None:
    """A stage id outside the opportunity's pipeline is invalid input."""
    document = {
        "key": "renewal",
        "name": "续约流程",
        "stages": [
            {"key": "open", "name": "续约跟进", "name_en": "Open", "probability": 50},
            {
                "key": "won",
                "name": "续约成功",
                "name_en": "Won",
                "probability": 100,
                "is_won": True,
            },
            {
                "key": "lost",
                "name": "流失",
                "name_en": "Lost",
                "probability": 0,
                "is_lost": True,
            },
        ],
    }
    other = client.put("/api/v1/pipelines", json=document, headers=org.headers("ops"))

    response = client.post(
        f"/api/v1/opportunities/{opportunity_id}/stage",
        json={"stage_id": other.json()["stages"][0]["id"]},
        headers=org.headers("rep_a1"),
    )

    assert other.status_code == 200, other.text
    assert response.status_code == 422
    assert "is not in pipeline" in response.json()["error"]["message"]
