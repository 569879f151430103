"""The experiments API: list, create, report and stop, each under the policy."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from waggle.governance.models import AuditEntry
from waggle.rules.experiment_models import Experiment

PLAN: dict[str, Any] = {
    "key": "nudge",
    "name": "沉默商机提醒",
    "rule_ref": "no-activity",
    "metric": "win_rate",
    "holdout_share": 0.5,
    "window_days": 14,
    "planned_sample_size": 400,
    "minimum_detectable_effect": 0.05,
}


def _create(client: TestClient, org: Org, username: str = "ops") -> Any:
    return client.post("/api/v1/experiments", json=PLAN, headers=org.headers(username))


def test_sales_ops_creates_an_experiment_and_lists_it(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Creating returns the stored plan; the list shows it with Chinese intact."""
    created = _create(client, org)

    listed = client.get("/api/v1/experiments", headers=org.headers("manager_a"))

    assert created.status_code == 201
    body = created.json()
    assert (body["key"], body["name"], body["status"]) == (
        "nudge",
        "沉默商机提醒",
        "running",
    )
    assert (body["holdout_share"], body["created_by"]) == (0.5, "ops")
    assert [item["key"] for item in listed.json()] == ["nudge"]
    with sessions() as session:
        audit = session.scalars(
            select(AuditEntry.username).where(
                AuditEntry.resource == "experiments", AuditEntry.action == "create"
            )
        )
        assert list(audit) == ["ops"]


def test_a_rep_may_neither_create_nor_read_experiments(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Reps are refused on create, list and report; nothing is stored."""
    _create(client, org)

    create = _create(client, org, "rep_a1")
    listing = client.get("/api/v1/experiments", headers=org.headers("rep_a1"))
    report = client.get(
        "/api/v1/experiments/nudge/report", headers=org.headers("rep_a1")
    )

    assert (create.status_code, listing.status_code, report.status_code) == (
        403,
        403,
        403,
    )
    assert create.json()["error"]["code"] == "policy_denied"
    with sessions() as session:
        assert list(session.scalars(select(Experiment.key))) == ["nudge"]


def test_a_manager_may_read_but_not_stop_an_experiment(
    client: TestClient, org: Org
) -> None:
    """A manager reads the report but is refused when stopping."""
    _create(client, org)

    report = client.get(
        "/api/v1/experiments/nudge/report", headers=org.headers("manager_a")
    )
    stop = client.post(
        "/api/v1/experiments/nudge/stop", headers=org.headers("manager_a")
    )

    assert (report.status_code, stop.status_code) == (200, 403)


def test_the_report_is_json_with_headline_and_peeking_warning(
    client: TestClient, org: Org
) -> None:
    """A report with no exposures says there is not enough data and warns."""
    _create(client, org)

    report = client.get(
        "/api/v1/experiments/nudge/report", headers=org.headers("ops")
    ).json()

    assert report["experiment_key"] == "nudge"
    assert report["headline"]["zh-CN"] == "赢单率：数据不足，每组至少需要 2 个样本。"
    assert report["treatment"] == {"n": 0, "mean": None, "variance": None}
    assert report["effect"] is None
    assert report["sequential"]["is_early_look"] is True
    assert report["sequential"]["planned_sample_size"] == 400
    assert report["sequential"]["warning"]["en"].startswith(
        "The planned sample size of 400 is not reached yet"
    )
    assert report["excluded"] == {"treatment": 0, "control": 0}


def test_stopping_an_experiment_twice_is_a_conflict(
    client: TestClient, org: Org
) -> None:
    """The first stop answers the stopped experiment; the second is a conflict."""
    _create(client, org)

    first = client.post("/api/v1/experiments/nudge/stop", headers=org.headers("ops"))
    second = client.post("/api/v1/experiments/nudge/stop", headers=org.headers("ops"))

    assert first.status_code == 200
    assert first.json()["status"] == "stopped"
    assert first.json()["stopped_at"] is not None
    assert second.status_code == 409


def test_a_bad_plan_and_an_unknown_key_are_named(client: TestClient, org: Org) -> None:
    """A holdout share of 1 is refused by field; an unknown report is not found."""
    bad = client.post(
        "/api/v1/experiments",
        json={**PLAN, "holdout_share": 1.0},
        headers=org.headers("ops"),
    )
    missing = client.get(
        "/api/v1/experiments/absent/report", headers=org.headers("ops")
    )

    assert bad.status_code == 422
    assert "holdout_share" in bad.json()["error"]["message"]
    assert missing.status_code == 404
