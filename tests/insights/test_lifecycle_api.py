"""The model lifecycle over HTTP and the ``waggle insights`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights import AS_OF, add_account, days
from tests.insights.test_report import CUTOFF, build_history
from waggle.cli import main
from waggle.core.db import transaction
from waggle.crm.models import Account

DEALS = 60
HEADER = (
    "external_id,name,account_external_id,pipeline_key,stage_key,amount,"
    "created_at,closed_at,source,loss_reason"
)


def _history_csv(account_external_id: str) -> bytes:
    """Sixty closed deals: trade-fair (展会) leads mostly won, website ones lost.

    Lost deals carry a loss reason, as the lost stage requires on import.
    """
    lines = [HEADER]
    for index in range(DEALS):
        closed_at = AS_OF - days(1 + index * 2)
        source = "展会" if index % 2 == 0 else "官网"
        is_won = (source == "展会") != (index % 5 == 0)
        lines.append(
            f"H{index:03d},历史商机{index},{account_external_id},standard,"
            f"{'won' if is_won else 'lost'},200000,"
            f"{(closed_at - days(45)).isoformat()},{closed_at.isoformat()},{source},"
            f"{'' if is_won else '预算不足'}"
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


def _account(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        account = session.get_one(Account, add_account(session, "北京远航科技有限公司"))
        return account.external_id


def _upload(client: TestClient, org: Org, data: bytes) -> dict[str, object]:
    response = client.post(
        "/api/v1/insights/challengers/upload",
        files={"file": ("history.csv", data, "text/csv")},
        data={"min_won": "5", "min_lost": "5"},
        headers=org.headers("ops"),
    )
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_an_uploaded_history_trains_a_challenger_with_its_report(
    client: TestClient, sessions, org: Org, fixed_clock
):
    """The upload goes through the CRM import and yields a challenger and a report."""
    data = _history_csv(_account(sessions))

    answer = _upload(client, org, data)
    version_id = answer["model_version_id"]
    figures = client.get(
        f"/api/v1/insights/models/{version_id}/report", headers=org.headers("ops")
    )
    page = client.get(
        f"/api/v1/insights/models/{version_id}/report.html",
        headers=org.headers("director_east"),
    )

    summary = answer["import_summary"]
    assert isinstance(summary, dict)
    assert (summary["rows_read"], summary["inserted"], summary["rejected"]) == (
        DEALS,
        DEALS,
        0,
    )
    assert answer["status"] == "challenger"
    assert answer["champion_version"] == "stage-default-1"
    split = figures.json()["split"]
    assert split["training"] + split["holdout"] == DEALS
    assert figures.json()["models"]["challenger"]["top_factors"][0]["feature"] == (
        "source"
    )
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<!DOCTYPE html>")


def test_promotion_over_http_needs_a_director_other_than_the_requester(
    client: TestClient, sessions, org: Org, fixed_clock
):
    """ops asks; ops and a rep are refused the approval; director_east approves."""
    version_id = _upload(client, org, _history_csv(_account(sessions)))[
        "model_version_id"
    ]
    base = f"/api/v1/insights/models/{version_id}/promotion"

    asked = client.post(base, json={"reason": "更好"}, headers=org.headers("ops"))
    by_ops = client.post(f"{base}/approve", headers=org.headers("ops"))
    by_rep = client.post(f"{base}/approve", headers=org.headers("rep_a1"))
    approved = client.post(
        f"{base}/approve", json={"note": "同意"}, headers=org.headers("director_east")
    )
    listed = client.get("/api/v1/insights/models", headers=org.headers("ops"))
    refused = client.get("/api/v1/insights/models", headers=org.headers("rep_a1"))

    assert asked.status_code == 201
    assert asked.json()["status"] == "requested"
    assert (by_ops.status_code, by_rep.status_code) == (403, 403)
    assert approved.status_code == 200
    assert approved.json()["decided_by"] == "director_east"
    statuses = {row["id"]: row["status"] for row in listed.json()}
    assert statuses[version_id] == "champion"
    promotion = next(r for r in listed.json() if r["id"] == version_id)["promotion"]
    assert (promotion["status"], promotion["decision_note"]) == ("approved", "同意")
    assert refused.status_code == 403


def test_a_report_of_a_version_without_one_is_not_found(client: TestClient, org: Org):
    """Asking for the report of an unknown version answers 404."""
    response = client.get(
        "/api/v1/insights/models/999/report", headers=org.headers("ops")
    )

    assert response.status_code == 404


@pytest.fixture
def cli_org(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    org: Org,
) -> Org:
    """The org on the database the CLI is pointed at through the environment."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    return org


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    capsys.readouterr()
    main(list(argv))
    return capsys.readouterr().out.splitlines()


def test_the_cli_trains_reports_promotes_and_lists(
    cli_org: Org,
    sessions,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixed_clock,
):
    """challenger, report, promote, approve and versions work end to end."""
    with transaction(sessions) as session:
        build_history(session, cli_org.employees["rep_a1"])
    window = ("--cutoff", CUTOFF.isoformat(), "--until", AS_OF.isoformat())
    html, figures = tmp_path / "report.html", tmp_path / "report.json"

    trained = _run(
        capsys,
        "insights",
        "challenger",
        *window,
        "--min-won",
        "5",
        "--min-lost",
        "5",
        "--as",
        "ops",
    )
    version = trained[0].split()[0]
    _run(
        capsys,
        "insights",
        "report",
        version,
        "--html",
        str(html),
        "--json",
        str(figures),
    )
    _run(capsys, "insights", "promote", version, "--as", "ops")
    with pytest.raises(SystemExit) as refused:
        _run(capsys, "insights", "approve", version, "--as", "ops")
    approved = _run(capsys, "insights", "approve", version, "--as", "director_east")
    listed = _run(capsys, "insights", "versions", "--as", "ops")

    assert trained[0] == f"{version} (challenger)"
    assert version.startswith("lgbm-20260131-")
    assert json.loads(figures.read_text("utf-8"))["meta"]["version"] == version
    assert html.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert refused.value.code == 6
    assert approved == [
        f"promotion of {version} approved by director_east; status champion"
    ]
    row = next(line for line in listed if version in line)
    assert "champion" in row and "approved" in row
