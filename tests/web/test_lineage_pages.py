"""The lineage page: provenance, masked drill-down, replay, and dashboard links."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.web.helpers import classify_amounts, log_in
from waggle.core.db import transaction
from waggle.crm.service import OPPORTUNITIES
from waggle.governance.lineage import FigureSpec, compute_figure
from waggle.governance.lineage_models import FigureProvenance
from waggle.governance.models import AuditEntry
from waggle.governance.records import update_record

SUM = FigureSpec(resource="opportunities", measure="sum:amount")


def _figure(sessions: sessionmaker[Session], org: Org, username: str) -> int:
    with transaction(sessions) as session:
        return compute_figure(
            session, org.actors[username], name="团队商机金额", spec=SUM
        ).id


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-record="(\d+)">', html)


def test_page_shows_the_figure_provenance_and_records_in_chinese(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """A manager sees the value, who computed it, the policy and both records."""
    figure_id = _figure(sessions, org, "manager_a")
    log_in(client, "manager_a")

    html = client.get(f"/lineage/{figure_id}").text

    assert "<h1>数据溯源：团队商机金额</h1>" in html
    assert '<span class="figure-value" id="figure-value">1550000.00</span>' in html
    assert '<dd data-role="username">manager_a</dd>' in html
    assert "溯源记录完整，未被篡改" in html
    assert _rows(html) == [str(deals["deal_a1"]), str(deals["deal_a2"])]
    assert "二期产线改造" in html


def test_page_answers_in_english(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """With English chosen the page's headings are English."""
    figure_id = _figure(sessions, org, "manager_a")
    log_in(client, "manager_a")
    client.get("/lang/en?next=/")

    html = client.get(f"/lineage/{figure_id}").text

    assert "<h1>Lineage: 团队商机金额</h1>" in html
    assert "The provenance is intact" in html
    assert "<h2>Source records</h2>" in html


def test_a_rep_sees_only_their_own_source_records(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """The drill-down applies the rep's row scope; the rest are counted, not shown."""
    figure_id = _figure(sessions, org, "manager_a")
    log_in(client, "rep_a1")

    html = client.get(f"/lineage/{figure_id}").text

    assert _rows(html) == [str(deals["deal_a1"])]
    assert "云平台采购" not in html
    assert "另有 1 条来源记录超出您的数据权限，未显示" in html
    # The team total would tell what the rep may not see: the value is withheld.
    assert '<span class="figure-value" id="figure-value">—</span>' in html


def test_page_shows_field_history_and_replay_reproduces_the_original(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """After an edit the history shows old and new value and replay still agrees."""
    figure_id = _figure(sessions, org, "manager_a")
    with transaction(sessions) as session:
        update_record(
            session,
            org.actors["rep_a1"],
            OPPORTUNITIES,
            deals["deal_a1"],
            {"amount": Decimal("1300000")},
        )
    token = log_in(client, "manager_a")

    html = client.get(f"/lineage/{figure_id}").text
    replay = client.post(
        f"/lineage/{figure_id}/replay", headers={"X-CSRF-Token": token}
    )

    assert "1250000.00 → 1300000.00" in html
    assert replay.status_code == 200
    assert "已精确复现：1550000.00" in replay.text
    assert "当前值已变化：1600000.00" in replay.text
    assert f"取值变化的记录：{deals['deal_a1']}" in replay.text


def test_replay_without_the_csrf_token_is_refused(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """The replay button posts with the session's token; without it nothing runs."""
    figure_id = _figure(sessions, org, "manager_a")
    log_in(client, "manager_a")

    response = client.post(f"/lineage/{figure_id}/replay")

    assert response.status_code == 403
    assert "已精确复现" not in response.text


def test_dashboard_figures_link_to_their_lineage(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """Each headline figure links to a provenance holding the value shown."""
    log_in(client, "manager_a")

    html = client.get("/").text
    links = dict(re.findall(r'href="/lineage/(\d+)" data-figure="(\w+)"', html))
    again = client.get("/").text

    by_name = {name: int(figure_id) for figure_id, name in links.items()}
    assert sorted(by_name) == [
        "accounts",
        "open_amount",
        "stage_amounts",
        "stage_counts",
        "weighted_amount",
        "win_rate",
        "won_amount",
    ]
    with sessions() as session:
        values = {
            name: session.get(FigureProvenance, figure_id).value  # type: ignore[union-attr]
            for name, figure_id in by_name.items()
        }
        stored = len(session.scalars(select(FigureProvenance.id)).all())
    by_stage = values.pop("stage_amounts"), values.pop("stage_counts")
    assert values == {
        "accounts": "2",
        "open_amount": "1550000.00",
        "weighted_amount": "155000.00",
        "win_rate": None,
        "won_amount": "0.00",
    }
    assert "¥155.0万" in html
    # The chart's two grouped figures: both deals stand in the first stage.
    assert [list(figure.values()) for figure in by_stage] == [["1550000.00"], ["2"]]
    chart = re.search(r'id="stage-chart-data">([^<]+)<', html)
    assert chart is not None and json.loads(chart[1])["counts"][0] == 2
    # Eleven figures (among them the captured share, whose tile is hidden as
    # there is no interaction to count), each stored once however often shown.
    assert stored == 11
    assert again.count('data-figure="') == 7


def test_viewing_the_page_is_audited(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """Reading the provenance and the source records leaves audit rows."""
    figure_id = _figure(sessions, org, "manager_a")
    log_in(client, "rep_a1")

    client.get(f"/lineage/{figure_id}")

    with sessions() as session:
        rows = session.execute(
            select(AuditEntry.resource, AuditEntry.record_ids).where(
                AuditEntry.username == "rep_a1",
                AuditEntry.action == "read",
                AuditEntry.resource.in_(["lineage", "opportunities"]),
                AuditEntry.detail.is_distinct_from("aggregate: count and amount"),
            )
        ).all()
    assert ("lineage", [str(figure_id)]) in [tuple(row) for row in rows]
    assert ("opportunities", [str(deals["deal_a1"])]) in [tuple(row) for row in rows]


def test_dashboard_shows_its_figures_without_links_once_amounts_are_classified(
    client: TestClient, sessions: sessionmaker[Session], org: Org, deals: dict[str, int]
) -> None:
    """Lineage takes unclassified fields only; the figures stay, the links go."""
    classify_amounts(sessions, org)
    log_in(client, "manager_a")

    html = client.get("/").text

    assert "¥155.0万" in html  # the weighted amount, as with its lineage
    assert 'data-figure="' not in html
    chart = re.search(r'id="stage-chart-data">([^<]+)<', html)
    assert chart is not None and json.loads(chart[1])["counts"][0] == 2
