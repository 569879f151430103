"""The forecast, customer-health and manager routes and `waggle insights` commands."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights import add_account, add_deal
from waggle.cli import main
from waggle.core.db import transaction
from waggle.crm.models import Account
from waggle.governance.lineage_models import FigureProvenance

CREATED = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


def _seed(sessions: sessionmaker[Session], org: Org) -> dict[str, int]:
    """One account of rep_a1 with a negotiation deal closing in March 2026."""
    with transaction(sessions) as session:
        account = add_account(session, "杭州云帆科技股份有限公司")
        session.get_one(Account, account).owner_id = org.employees["rep_a1"]
        deal = add_deal(
            session,
            owner_id=org.employees["rep_a1"],
            account_id=account,
            created_at=CREATED,
            stage="negotiation",
            amount="250000",
            expected_close_on=dt.date(2026, 3, 20),
            forecast_category="commit",
        )
    return {"account": account, "deal": deal.id}


def test_forecast_route_rolls_up_what_the_caller_may_see(
    client: TestClient, sessions, org
):
    """A manager's forecast holds the team's commit deal, weighted at 60%."""
    _seed(sessions, org)

    answer = client.get(
        "/api/v1/insights/forecast?period=2026-Q1", headers=org.headers("manager_a")
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["weighted"] == "150000.00"
    assert body["categories"]["commit"] == "250000.00"
    assert [(r["level"], r["name"]) for r in body["rollup"]] == [
        ("rep", "rep_a1"),
        ("team", "manager_a"),
        ("region", "华东大区"),
    ]


def test_forecast_route_names_the_lineage_of_each_headline_figure(
    client: TestClient, sessions, org
):
    """With lineage=true the commit figure's provenance holds the one deal."""
    ids = _seed(sessions, org)
    headers = org.headers("manager_a")

    plain = client.get("/api/v1/insights/forecast?period=2026-Q1", headers=headers)
    answer = client.get(
        "/api/v1/insights/forecast?period=2026-Q1&lineage=true", headers=headers
    )

    assert plain.json()["lineage"] == {}
    lineage = answer.json()["lineage"]
    assert sorted(lineage) == ["best_case", "closed", "commit", "pipeline", "weighted"]
    commit = client.get(f"/api/v1/lineage/figures/{lineage['commit']}", headers=headers)
    assert commit.status_code == 200
    assert commit.json()["value"] == "250000.00"
    assert commit.json()["record_ids"] == [ids["deal"]]


def test_forecast_routes_refuse_and_reject_as_documented(
    client: TestClient, sessions, org
):
    """No forecast for IT admins; a bad granularity is invalid input."""
    _seed(sessions, org)

    refused = client.get("/api/v1/insights/forecast", headers=org.headers("admin"))
    invalid = client.get(
        "/api/v1/insights/forecast/backtest?granularity=week",
        headers=org.headers("ops"),
    )

    assert refused.status_code == 403
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (
        422,
        "invalid_input",
    )


def test_backtest_anomaly_and_region_routes_answer(client: TestClient, sessions, org):
    """The backtest carries the band; anomalies and regions answer on little data."""
    _seed(sessions, org)
    headers = org.headers("ops")

    backtest = client.get(
        "/api/v1/insights/forecast/backtest?granularity=quarter&periods=2",
        headers=headers,
    )
    anomalies = client.get("/api/v1/insights/anomalies", headers=headers)
    regions = client.get("/api/v1/insights/regions", headers=headers)

    assert backtest.status_code == 200
    assert (backtest.json()["band"], len(backtest.json()["periods"])) == (0.1, 2)
    assert (anomalies.status_code, anomalies.json()) == (200, [])
    assert regions.json()["gap"] is None


def test_customer_health_routes_keep_to_the_scope(client: TestClient, sessions, org):
    """The owner reads the account's health with reasons; another rep is refused."""
    ids = _seed(sessions, org)
    path = f"/api/v1/insights/accounts/{ids['account']}/health"

    own = client.get(path, headers=org.headers("rep_a1"))
    other = client.get(path, headers=org.headers("rep_a2"))
    listed = client.get(
        "/api/v1/insights/customer-health", headers=org.headers("rep_a2")
    )

    assert own.status_code == 200
    assert own.json()["name"] == "杭州云帆科技股份有限公司"
    assert [r["rule_id"] for r in own.json()["reasons"]] == ["customer_silent"]
    assert own.json()["reasons"][0]["line"]["zh-CN"] == (
        "流失风险升高: 客户已365天未回复, 权重20%"
    )
    assert other.status_code == 403
    assert listed.json()["count"] == 0


@pytest.fixture
def cli_org(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    sessions: sessionmaker[Session],
    org: Org,
) -> Org:
    """The org, with the CLI pointed at the same database."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WAGGLE_CUSTOMER_HEALTH_FILE", raising=False)
    return org


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    capsys.readouterr()
    main(list(argv))
    return capsys.readouterr().out.splitlines()


def test_cli_forecast_and_backtest_print_the_figures(cli_org, sessions, capsys):
    """`waggle insights forecast` and `backtest` print the roll-up and the MAPE."""
    _seed(sessions, cli_org)

    forecast = _run(capsys, "insights", "forecast", "2026-Q1", "--as", "rep_a1")
    backtest = _run(capsys, "insights", "backtest", "--periods", "2")

    assert forecast[0] == "forecast 2026-Q1 (2026-01-01 - 2026-03-31)"
    assert "  weighted         150,000.00" in forecast
    assert "  commit           250,000.00" in forecast
    assert forecast[-1].split() == ["rep_a1", "0.00", "0.00", "150,000.00", "-", "-"]
    assert backtest[-1] == "MAPE - (band +/-10%)"


def test_cli_forecast_stores_the_lineage_of_its_figures(cli_org, sessions, capsys):
    """`waggle insights forecast --lineage` prints each figure's lineage id."""
    _seed(sessions, cli_org)

    shown = _run(
        capsys, "insights", "forecast", "2026-Q1", "--as", "rep_a1", "--lineage"
    )

    weighted = next(line for line in shown if line.startswith("  weighted"))
    assert weighted.split()[:3] == ["weighted", "150,000.00", "lineage"]
    with sessions() as session:
        figure = session.get(FigureProvenance, int(weighted.split()[3]))
        assert figure is not None and figure.value == "150000.00"


def test_cli_customer_health_lists_signals_and_wording(cli_org, sessions, capsys):
    """The signals list has 37 lines; accounts print reasons in English on request."""
    ids = _seed(sessions, cli_org)

    signals = _run(capsys, "insights", "customer-health", "--signals")
    health = _run(
        capsys, "insights", "customer-health", str(ids["account"]), "--locale", "en"
    )

    assert len(signals) == 37
    assert health[1] == "  Churn risk up: no customer reply for 365 days, weight 20%"


def test_cli_refuses_an_invalid_thresholds_file(cli_org, tmp_path, capsys):
    """A broken thresholds file stops the command with the file and entry named."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - id: x\n    signal: mood\n", encoding="utf-8")

    with pytest.raises(SystemExit) as stopped:
        main(["insights", "customer-health", "--thresholds", str(broken)])

    assert stopped.value.code != 0
    assert "broken.yaml: rules[0].op: missing" in capsys.readouterr().err


def test_cli_stores_a_snapshot_and_the_api_reads_it(cli_org, sessions, client, capsys):
    """`customer-health --store` writes the snapshot that `?stored=true` returns."""
    _seed(sessions, cli_org)

    stored = _run(capsys, "insights", "customer-health", "--store", "--as", "ops")
    answer = client.get(
        "/api/v1/insights/customer-health?stored=true",
        headers=cli_org.headers("rep_a1"),
    )

    assert stored == ["1 accounts stored"]
    assert (answer.json()["count"], answer.json()["items"][0]["risk"]) == (1, 20)
