"""The pipeline board: columns, row scope, and moving cards between stages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.web.helpers import log_in, stage_ids
from waggle.crm.models import Opportunity, StageChange
from waggle.governance.models import AuditEntry


def _move(client: TestClient, token: str, opportunity_id: int, stage_id: int, **extra):
    return client.post(
        "/board/move",
        json={"opportunity_id": opportunity_id, "stage_id": stage_id, **extra},
        headers={"Accept": "application/json", "X-CSRF-Token": token},
    )


def _column_cards(html: str, stage_id: int) -> list[str]:
    """Return the opportunity ids of the cards in one column of the board."""
    sections = html.split('<section class="column')[1:]
    marker = f'data-stage-id="{stage_id}"'
    section = next(part for part in sections if marker in part.split(">", 1)[0])
    return re.findall(r'data-opportunity-id="(\d+)"', section)


def test_board_shows_open_stages_with_counts_and_totals(
    client: TestClient, org: Org, deals: dict[str, int]
) -> None:
    """A manager's board lists both reps' cards under 线索确认 with the total."""
    log_in(client, "manager_a")

    html = client.get("/board").text

    assert "二期产线改造" in html
    assert "云平台采购" in html
    assert "上海星河机械有限公司" in html
    assert "¥155.0万" in html  # 1,250,000 + 300,000
    assert html.count('class="column drop-zone') == 2
    assert "需填写：客户痛点、决策人" in html


def test_rep_sees_only_own_opportunities_on_board_and_list(
    client: TestClient, org: Org, deals: dict[str, int]
) -> None:
    """A rep's board and list hold their own deals and not a colleague's."""
    log_in(client, "rep_a1")

    board = client.get("/board").text
    listing = client.get("/opportunities").text

    assert "二期产线改造" in board
    assert "云平台采购" not in board
    assert "¥125.0万" in board
    assert "二期产线改造" in listing
    assert "云平台采购" not in listing


def test_drag_to_a_stage_without_requirements_moves_the_card(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """Moving a card records the stage change and returns every column's figures."""
    token = log_in(client, "rep_a1")
    stages = stage_ids(sessions)

    response = _move(client, token, deals["deal_a1"], stages["discovery"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "「二期产线改造」已进入「需求分析」"
    assert body["columns"][str(stages["discovery"])] == {
        "count": 1,
        "total": "¥125.0万",
    }
    assert body["columns"][str(stages["lead"])] == {"count": 0, "total": "¥0"}
    opportunity = session.get(Opportunity, deals["deal_a1"])
    assert opportunity is not None and opportunity.stage_id == stages["discovery"]
    changes = session.scalars(select(StageChange)).all()
    assert [(c.from_stage_id, c.to_stage_id, c.changed_by) for c in changes] == [
        (stages["lead"], stages["discovery"], "rep_a1")
    ]
    board = client.get("/board").text
    assert _column_cards(board, stages["discovery"]) == [str(deals["deal_a1"])]


def test_refused_drag_names_the_missing_fields_in_chinese(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """Moving to 方案确认 without its required fields is refused with the reason."""
    token = log_in(client, "rep_a1")
    stages = stage_ids(sessions)

    response = _move(client, token, deals["deal_a1"], stages["solution"])

    assert response.status_code == 422
    assert response.json() == {
        "ok": False,
        "message": "进入「方案确认」前需要填写：客户痛点、决策人",
    }
    opportunity = session.get(Opportunity, deals["deal_a1"])
    assert opportunity is not None and opportunity.stage_id == stages["lead"]
    assert session.scalars(select(StageChange)).all() == []


def test_refused_drag_names_the_missing_fields_in_english(
    client: TestClient, org: Org, deals: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    """The same refusal reads in English once the user chose English."""
    token = log_in(client, "rep_a1")
    client.get("/lang/en")

    response = _move(client, token, deals["deal_a1"], stage_ids(sessions)["solution"])

    assert response.json()["message"] == (
        "Solution agreed requires Customer pain points, Decision maker"
    )


def test_drop_on_lost_needs_and_keeps_a_loss_reason(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """Dropping on 输单 without a reason is refused; with one the deal is lost."""
    token = log_in(client, "rep_a1")
    lost = stage_ids(sessions)["lost"]

    refused = _move(client, token, deals["deal_a1"], lost)
    accepted = _move(client, token, deals["deal_a1"], lost, loss_reason="预算取消")

    assert refused.json()["message"] == "进入「输单」前需要填写：输单原因"
    assert accepted.status_code == 200, accepted.text
    opportunity = session.get(Opportunity, deals["deal_a1"])
    assert opportunity is not None
    assert (opportunity.status, opportunity.loss_reason) == ("lost", "预算取消")


def test_moving_a_colleagues_card_is_denied_and_audited(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """A rep cannot move another rep's opportunity; the refusal is audited."""
    token = log_in(client, "rep_a1")

    response = _move(client, token, deals["deal_a2"], stage_ids(sessions)["discovery"])

    assert response.status_code == 403
    assert response.json()["message"] == "您没有执行此操作的权限"
    denials = session.scalars(
        select(AuditEntry).where(AuditEntry.result == "denied")
    ).all()
    assert [(d.username, d.action, d.resource) for d in denials] == [
        ("rep_a1", "update", "opportunities")
    ]
