"""The insights pages: forecast, backtest, health, anomalies; zh and en, per role."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.web.helpers import classify_amounts, log_in
from waggle.core.db import transaction
from waggle.crm.models import Opportunity
from waggle.insights.customer_health import store_customer_health

CLOSE_ON = dt.date(2026, 3, 20)
SNAPSHOT_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PAGE = "/insights?period=2026-Q1&level=rep"
ROW = re.compile(r'<tr data-level="rep" data-key="\d+">\s*<th scope="row">([^<]+)</th>')


def _expect_close(sessions: sessionmaker[Session], *ids: int) -> None:
    with transaction(sessions) as session:
        for opportunity_id in ids:
            session.get_one(Opportunity, opportunity_id).expected_close_on = CLOSE_ON


def test_manager_sees_the_teams_rollup_backtest_and_health_in_chinese(
    client: TestClient, sessions, deals
):
    """The page shows the team's reps, the backtest band and the health chart."""
    _expect_close(sessions, deals["deal_a1"], deals["deal_a2"])
    log_in(client, "manager_a")

    page = client.get(PAGE)

    assert page.status_code == 200
    assert "洞察与预测" in page.text
    assert sorted(ROW.findall(page.text)) == ["rep_a1", "rep_a2"]
    assert 'id="weighted-total">¥15.5万<' in page.text
    assert "±10% 误差带" in page.text
    for island in ("forecast-chart-data", "backtest-chart-data", "health-chart-data"):
        assert f'id="{island}"' in page.text
    assert '<script src="/static/js/insights.js" defer></script>' in page.text
    assert "客户健康度分布" in page.text
    assert "异常行为清单" in page.text


def test_the_page_reads_in_english(client: TestClient, sessions, deals):
    """With English chosen every heading and the roll-up level are in English."""
    _expect_close(sessions, deals["deal_a1"], deals["deal_a2"])
    log_in(client, "manager_a")
    client.get("/lang/en?next=/")

    page = client.get(PAGE)

    assert page.status_code == 200
    assert "Insights and forecast" in page.text
    assert "Forecast roll-up · Rep" in page.text
    assert "Customer health distribution" in page.text
    assert "洞察" not in page.text.split("<main", 1)[1]


def test_a_rep_sees_only_their_own_forecast(client: TestClient, sessions, deals):
    """rep_a2's roll-up holds rep_a2 alone, not the colleague's big deal."""
    _expect_close(sessions, deals["deal_a1"], deals["deal_a2"])
    log_in(client, "rep_a2")

    page = client.get(PAGE)

    assert sorted(ROW.findall(page.text)) == ["rep_a2"]
    assert 'id="weighted-total">¥3.0万<' in page.text


def test_a_role_without_forecasts_or_health_sees_nothing(client: TestClient, deals):
    """An IT administrator gets the empty notice and no figures."""
    log_in(client, "admin")

    page = client.get(PAGE)

    assert page.status_code == 200
    assert "您的角色没有可查看的预测或客户健康数据。" in page.text
    assert "forecast-chart" not in page.text


def test_a_bad_period_is_shown_as_an_error(client: TestClient, deals):
    """A period not like 2026-Q1 is explained on the page."""
    log_in(client, "manager_a")

    page = client.get("/insights?period=Q1-2026")

    assert page.status_code == 200
    assert "is not like 2026-Q3 or 2026-M07" in page.text


def test_account_page_loads_the_customer_health_with_its_reasons(
    client: TestClient, deals
):
    """The account page asks for its health; the fragment words the top reasons."""
    log_in(client, "rep_a1")
    account = deals["account_a1"]

    page = client.get(f"/accounts/{account}")
    fragment = client.get(f"/accounts/{account}/health", headers={"HX-Request": "true"})

    assert f'hx-get="/accounts/{account}/health"' in page.text
    assert fragment.status_code == 200
    assert "客户健康度" in fragment.text
    assert "流失风险升高: 客户已365天未回复, 权重20%" in fragment.text
    assert "健康度 80/100" in fragment.text


def test_account_health_of_someone_elses_account_is_refused(client: TestClient, deals):
    """Another rep gets the refusal inside the fragment (403 outside HTMX)."""
    log_in(client, "rep_a2")
    account = deals["account_a1"]

    inside = client.get(f"/accounts/{account}/health", headers={"HX-Request": "true"})
    outside = client.get(f"/accounts/{account}/health")

    assert inside.status_code == 200
    assert 'role="alert"' in inside.text
    assert "流失风险" not in inside.text
    assert outside.status_code == 403


def test_opportunity_page_loads_the_win_model_explanation(client: TestClient, deals):
    """The opportunity page asks for its explanation; the fragment shows health."""
    log_in(client, "rep_a1")
    deal = deals["deal_a1"]

    page = client.get(f"/opportunities/{deal}")
    fragment = client.get(f"/opportunities/{deal}/insight")

    assert f'hx-get="/opportunities/{deal}/insight"' in page.text
    assert fragment.status_code == 200
    assert "赢单模型解释" in fragment.text
    assert re.search(r"健康度 \d+", fragment.text)


def test_the_page_reads_the_stored_health_snapshot(
    client: TestClient, sessions, org, deals
):
    """Once sales ops stored a snapshot the page shows it with its time."""
    with transaction(sessions) as session:
        store_customer_health(session, org.actors["ops"], as_of=SNAPSHOT_AT)
    log_in(client, "manager_a")

    page = client.get(PAGE)

    assert "快照时间 2026-03-02 09:00" in page.text
    assert "共 2 个客户" in page.text


def test_headline_figures_link_to_a_lineage_with_the_value_shown(
    client: TestClient, sessions, deals
):
    """Each category and the weighted total open a provenance of the same value."""
    _expect_close(sessions, deals["deal_a1"], deals["deal_a2"])
    log_in(client, "manager_a")

    html = client.get(PAGE).text
    links = {
        name: int(figure_id)
        for figure_id, name in re.findall(
            r'href="/lineage/(\d+)" data-figure="(\w+)"', html
        )
    }

    assert sorted(links) == ["best_case", "closed", "commit", "pipeline", "weighted"]
    weighted = client.get(f"/lineage/{links['weighted']}").text
    assert '<span class="figure-value" id="figure-value">155000.00</span>' in weighted
    assert 'id="weighted-total">¥15.5万<' in html


def test_rep_level_rollup_columns_link_to_grouped_lineage(
    client: TestClient, sessions, deals
):
    """At the rep level each money column links to a figure grouped by owner."""
    _expect_close(sessions, deals["deal_a1"], deals["deal_a2"])
    log_in(client, "manager_a")

    rep_level = client.get(PAGE).text
    team_level = client.get("/insights?period=2026-Q1&level=team").text
    columns = re.findall(r'href="/lineage/(\d+)" data-column="(\w+)"', rep_level)

    assert sorted(name for _id, name in columns) == [
        "best_case",
        "closed",
        "commit",
        "pipeline",
        "quota",
        "weighted",
    ]
    assert "data-column=" not in team_level
    weighted = {name: figure_id for figure_id, name in columns}["weighted"]
    page = client.get(f"/lineage/{weighted}").text
    shown = re.search(r'id="figure-value">([^<]+)<', page)
    assert shown is not None
    # One weighted amount per owner: 1,250,000 and 300,000 at 10%.
    assert sorted(re.findall(r"\d+\.\d\d", shown[1])) == ["125000.00", "30000.00"]


def test_the_forecast_stays_when_its_lineage_cannot_be_computed(
    client: TestClient, sessions, deals, org
):
    """With amounts classified confidential the figures show, without links."""
    _expect_close(sessions, deals["deal_a1"], deals["deal_a2"])
    classify_amounts(sessions, org)
    log_in(client, "manager_a")

    page = client.get(PAGE)

    assert page.status_code == 200
    assert 'id="weighted-total">¥15.5万<' in page.text
    assert "/lineage/" not in page.text
    assert 'role="alert"' not in page.text
