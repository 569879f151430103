"""Lineage through the API and the CLI: compute, show, records, replay."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.cli import main
from waggle.core.db import transaction
from waggle.crm.service import OPPORTUNITIES
from waggle.governance.models import AuditEntry
from waggle.governance.records import update_record

URL = "/api/v1/lineage/figures"
BODY = {"name": "团队商机金额", "resource": "opportunities", "measure": "sum:amount"}


def _seed(sessions: sessionmaker[Session], org: Org) -> dict[str, int]:
    with transaction(sessions) as session:
        a1 = add_account(session, org.actors["rep_a1"], "上海星河机械有限公司")
        a2 = add_account(session, org.actors["rep_a2"], "杭州云帆科技股份有限公司")
        return {
            "a1": add_opportunity(
                session, org.actors["rep_a1"], a1, "二期产线改造", amount="1000.00"
            ),
            "a2": add_opportunity(
                session, org.actors["rep_a2"], a2, "云平台采购", amount="300.00"
            ),
        }


def test_api_computes_shows_drills_down_and_replays(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The four endpoints agree on one figure, before and after a change."""
    deals = _seed(sessions, org)
    headers = org.headers("manager_a")
    created = client.post(URL, json=BODY, headers=headers)
    figure_id = created.json()["id"]
    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["rep_a2"],
            OPPORTUNITIES,
            deals["a2"],
            {"amount": Decimal("500.00")},
        )

    shown = client.get(f"{URL}/{figure_id}", headers=headers).json()
    records = client.get(f"{URL}/{figure_id}/records", headers=headers).json()
    replay = client.post(f"{URL}/{figure_id}/replay", headers=headers).json()

    assert created.status_code == 201
    assert (created.json()["value"], created.json()["record_ids"]) == (
        "1300.00",
        [deals["a1"], deals["a2"]],
    )
    assert (shown["value"], shown["is_intact"], shown["computed_by"]["scope"]) == (
        "1300.00",
        True,
        "team",
    )
    assert shown["policy"]["version"] == "default"
    assert [r["values"] for r in records["records"]] == [
        {"amount": "1000.00"},
        {"amount": "500.00"},
    ]
    assert [
        (e["old_value"], e["new_value"], e["changed_by"])
        for e in records["records"][1]["edits"]
    ] == [("300.00", "500.00", "rep_a2")]
    assert (replay["replayed_value"], replay["is_reproduced"]) == ("1300.00", True)
    assert (replay["current_value"], replay["changed"]) == ("1500.00", [deals["a2"]])


def test_api_refuses_it_admin_and_audits_the_refusal(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """IT administrators may not compute figures; the refusal is in the audit log."""
    response = client.post(URL, json=BODY, headers=org.headers("admin"))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "policy_denied"
    with sessions() as session:
        denied = session.scalars(
            select(AuditEntry.resource).where(
                AuditEntry.username == "admin", AuditEntry.result == "denied"
            )
        ).all()
    assert denied == ["lineage"]


def test_api_takes_a_range_filter(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """`{"from": ..., "before": ...}` bounds an amount; the replay agrees."""
    deals = _seed(sessions, org)
    headers = org.headers("manager_a")
    body = {**BODY, "filters": {"amount": {"from": 500, "before": "1000.01"}}}

    created = client.post(URL, json=body, headers=headers)
    replay = client.post(f"{URL}/{created.json()['id']}/replay", headers=headers)

    assert created.status_code == 201
    assert (created.json()["value"], created.json()["record_ids"]) == (
        "1000.00",
        [deals["a1"]],
    )
    assert replay.json()["is_reproduced"] is True


def test_api_rejects_an_unknown_measure(client: TestClient, org: Org) -> None:
    """A malformed spec is invalid input naming the field."""
    body = {**BODY, "measure": "median:amount"}

    response = client.post(URL, json=body, headers=org.headers("ops"))

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("figure spec.measure:")


def test_api_unknown_figure_is_not_found(client: TestClient, org: Org) -> None:
    """Asking for a figure that was never computed is a 404."""
    response = client.get(f"{URL}/999", headers=org.headers("ops"))

    assert response.status_code == 404


def test_cli_compute_show_records_and_replay(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    sessions: sessionmaker[Session],
    org: Org,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`waggle governance lineage` computes a figure and reproduces it by id."""
    deals = _seed(sessions, org)
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    lineage = ["governance", "lineage"]

    main([*lineage, "compute", "opportunities", "--measure", "count", "--as", "rep_a1"])
    computed = json.loads(capsys.readouterr().out)
    figure_id = str(computed["id"])
    main([*lineage, "show", figure_id, "--as", "rep_a1"])
    shown = json.loads(capsys.readouterr().out)
    main([*lineage, "records", figure_id, "--as", "rep_a1"])
    records = json.loads(capsys.readouterr().out)
    main([*lineage, "replay", figure_id, "--as", "rep_a1"])
    replay = json.loads(capsys.readouterr().out)

    assert (computed["value"], computed["record_ids"]) == ("1", [deals["a1"]])
    assert (shown["is_intact"], shown["computed_by"]["username"]) == (True, "rep_a1")
    assert [record["label"] for record in records["records"]] == ["二期产线改造"]
    assert (replay["is_reproduced"], replay["is_current"]) == (True, True)


def test_cli_filters_take_json_values(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    sessions: sessionmaker[Session],
    org: Org,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--where owner_id=[...]` is a list; plain words stay text."""
    deals = _seed(sessions, org)
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    owner = org.employees["rep_a2"]

    main(
        [
            "governance",
            "lineage",
            "compute",
            "opportunities",
            "--measure",
            "sum:amount",
            "--where",
            f"owner_id=[{owner}]",
            "--where",
            "status=open",
            "--as",
            "manager_a",
        ]
    )
    computed = json.loads(capsys.readouterr().out)

    assert (computed["value"], computed["record_ids"]) == ("300.00", [deals["a2"]])
    assert computed["spec"]["filters"] == {"owner_id": [owner], "status": "open"}


def test_api_lists_only_the_record_ids_the_reader_may_read(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A rep reading a manager's figure sees its count and own ids, not its value."""
    deals = _seed(sessions, org)
    created = client.post(URL, json=BODY, headers=org.headers("manager_a")).json()

    shown = client.get(f"{URL}/{created['id']}", headers=org.headers("rep_a1")).json()

    assert (shown["value"], shown["value_withheld"]) == (None, True)
    assert (shown["record_count"], shown["record_ids"]) == (2, [deals["a1"]])
