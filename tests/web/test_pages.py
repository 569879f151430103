"""Dashboard, list pages, the opportunity and account pages, and languages."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from tests.web.helpers import log_in, stage_ids
from waggle.core.db import transaction
from waggle.crm.models import Opportunity
from waggle.governance.models import AuditEntry


def _opportunity_names(html: str) -> list[str]:
    return re.findall(r'<td><a href="/opportunities/\d+">([^<]+)</a></td>', html)


def test_dashboard_shows_figures_and_chart_data(
    client: TestClient, org: Org, deals: dict[str, int]
) -> None:
    """The home page sums the open pipeline and feeds the chart per stage."""
    log_in(client, "manager_a")

    html = client.get("/").text

    assert "¥155.0万" in html
    island = re.search(r'id="stage-chart-data">(.*?)</script>', html, re.S)
    assert island is not None
    chart = json.loads(island[1])
    assert chart["labels"] == [
        "线索确认",
        "需求分析",
        "方案确认",
        "商务谈判",
        "合同审批",
    ]
    assert chart["amounts"] == [1550000.0, 0.0, 0.0, 0.0, 0.0]
    assert chart["counts"] == [2, 0, 0, 0, 0]
    assert '<script src="/static/vendor/echarts.min.js" defer></script>' in html


def test_language_switch_changes_every_page(client: TestClient, org: Org) -> None:
    """Choosing English sets a cookie and the pages answer in English."""
    log_in(client, "rep_a1")
    before = client.get("/board").text

    switched = client.get("/lang/en?next=/board", follow_redirects=False)
    after = client.get("/board").text

    assert '<html lang="zh-CN">' in before
    assert "<h1>销售看板</h1>" in before
    assert switched.status_code == 303
    assert switched.headers["location"] == "/board"
    assert '<html lang="en">' in after
    assert "<h1>Pipeline board</h1>" in after
    assert "Qualification" in after


def test_opportunity_list_filters_by_stage_status_search_and_owner(
    client: TestClient, org: Org, deals: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    """Each filter of the opportunity list narrows the rows."""
    log_in(client, "manager_a")
    stages = stage_ids(sessions)

    by_search = client.get("/opportunities", params={"q": "云平台"}).text
    by_owner = client.get(
        "/opportunities", params={"owner_id": org.employees["rep_a1"]}
    ).text
    by_stage = client.get(
        "/opportunities", params={"stage_id": stages["discovery"]}
    ).text
    by_status = client.get("/opportunities", params={"status": "open"}).text

    assert _opportunity_names(by_search) == ["云平台采购"]
    assert _opportunity_names(by_owner) == ["二期产线改造"]
    assert _opportunity_names(by_stage) == []
    assert sorted(_opportunity_names(by_status)) == ["二期产线改造", "云平台采购"]


def test_opportunity_list_pages_with_a_cursor(
    client: TestClient, org: Org, sessions: sessionmaker[Session]
) -> None:
    """Twenty-six deals sorted by amount come as a page of 25 and a page of 1."""
    with transaction(sessions) as session:
        rep = org.actors["rep_a1"]
        account = add_account(session, rep, "苏州精工电子有限公司")
        for number in range(26):
            add_opportunity(
                session, rep, account, f"项目{number:02d}", amount=str(1000 * number)
            )
    log_in(client, "rep_a1")

    first = client.get("/opportunities", params={"sort": "-amount"}).text
    next_link = re.search(r'href="(/opportunities\?[^"]*cursor=[^"]*)"', first)
    assert next_link is not None
    second = client.get(next_link[1].replace("&amp;", "&")).text

    assert _opportunity_names(first) == [f"项目{n:02d}" for n in range(25, 0, -1)]
    assert _opportunity_names(second) == ["项目00"]
    assert 'rel="next"' not in second


def test_damaged_cursor_is_reported_not_crashed(client: TestClient, org: Org) -> None:
    """A broken cursor shows the service's refusal inside the page."""
    log_in(client, "rep_a1")

    response = client.get("/opportunities", params={"cursor": "not-a-cursor"})

    assert response.status_code == 200
    assert "输入有误：opportunities: the cursor is damaged" in response.text


def test_htmx_filter_request_returns_only_the_results(
    client: TestClient, org: Org, deals: dict[str, int]
) -> None:
    """An HTMX request aimed at #results gets the table without the page around it."""
    log_in(client, "rep_a1")

    response = client.get(
        "/opportunities",
        params={"q": "二期"},
        headers={"HX-Request": "true", "HX-Target": "results"},
    )

    assert "<html" not in response.text
    assert _opportunity_names(response.text) == ["二期产线改造"]


def test_account_and_contact_lists_filter(
    client: TestClient, org: Org, deals: dict[str, int]
) -> None:
    """Accounts filter by industry and city; contacts by decision role."""
    log_in(client, "manager_a")

    accounts = client.get("/accounts", params={"industry": "软件", "city": "杭州"}).text
    nobody = client.get("/accounts", params={"industry": "软件", "city": "上海"}).text
    contacts = client.get("/contacts", params={"decision_role": "decision_maker"}).text
    no_contacts = client.get("/contacts", params={"decision_role": "finance"}).text

    assert "杭州云帆科技股份有限公司" in accounts
    assert "上海星河机械有限公司" not in accounts
    assert "暂无记录" in nobody
    assert "王芳" in contacts
    assert "王芳" not in no_contacts


def test_opportunity_page_shows_fields_history_and_timeline(
    client: TestClient, org: Org, deals: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    """The opportunity page shows its account, amount, stage history and timeline."""
    token = log_in(client, "rep_a1")
    client.post(
        "/board/move",
        json={
            "opportunity_id": deals["deal_a1"],
            "stage_id": stage_ids(sessions)["discovery"],
        },
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )

    html = client.get(f"/opportunities/{deals['deal_a1']}").text

    assert "<h1>二期产线改造</h1>" in html
    assert "上海星河机械有限公司" in html
    assert "¥1,250,000.00" in html
    assert "线索确认 → <strong>需求分析</strong>" in html
    assert "rep_a1 将阶段从「线索确认」推进到「需求分析」" in html
    assert "拜访客户，确认需求" in html


def test_edit_form_fills_required_fields_so_the_move_succeeds(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """After filling pain points and decision maker, 方案确认 accepts the deal."""
    token = log_in(client, "rep_a1")
    url = f"/opportunities/{deals['deal_a1']}"
    solution = stage_ids(sessions)["solution"]

    saved = client.post(
        url,
        data={
            "csrf_token": token,
            "name": "二期产线改造",
            "amount": "1300000",
            "customer_pain_points": "产线效率低，停机多",
            "decision_maker_contact_id": str(deals["contact_a1"]),
            "budget_confirmed_shown": "1",
        },
        follow_redirects=False,
    )
    moved = client.post(
        f"{url}/stage",
        data={"csrf_token": token, "stage_id": str(solution)},
        follow_redirects=False,
    )

    assert saved.status_code == 303
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{url}?done=moved"
    session.expire_all()
    opportunity = session.get(Opportunity, deals["deal_a1"])
    assert opportunity is not None
    assert opportunity.stage_id == solution
    assert str(opportunity.amount) == "1300000.00"
    assert opportunity.customer_pain_points == "产线效率低，停机多"


def test_stage_form_refusal_is_shown_on_the_page(
    client: TestClient, org: Org, deals: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    """The stage form on the opportunity page shows the same refusal reason."""
    token = log_in(client, "rep_a1")

    response = client.post(
        f"/opportunities/{deals['deal_a1']}/stage",
        data={"csrf_token": token, "stage_id": str(stage_ids(sessions)["solution"])},
    )

    assert response.status_code == 422
    assert "进入「方案确认」前需要填写：客户痛点、决策人" in response.text


def test_edit_form_rejects_a_bad_amount_with_the_field_name(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """A malformed amount is refused, naming the field, and nothing is saved."""
    token = log_in(client, "rep_a1")

    response = client.post(
        f"/opportunities/{deals['deal_a1']}",
        data={"csrf_token": token, "name": "改名", "amount": "一百万"},
    )

    assert response.status_code == 422
    assert "「金额」填写有误" in response.text
    opportunity = session.get(Opportunity, deals["deal_a1"])
    assert opportunity is not None and opportunity.name == "二期产线改造"


def test_account_page_lists_contacts_opportunities_and_activities(
    client: TestClient, org: Org, deals: dict[str, int]
) -> None:
    """The account page gathers what hangs off the account."""
    log_in(client, "rep_a1")

    html = client.get(f"/accounts/{deals['account_a1']}").text

    assert "<h1>上海星河机械有限公司</h1>" in html
    assert "王芳" in html
    assert "决策者" in html
    assert "二期产线改造" in html
    assert "拜访客户，确认需求" in html


def test_colleagues_opportunity_page_is_forbidden_and_audited(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """A rep opening another rep's opportunity gets a 403 page; the refusal is
    audited under the rep's name."""
    log_in(client, "rep_a1")

    response = client.get(f"/opportunities/{deals['deal_a2']}")

    assert response.status_code == 403
    assert "您没有执行此操作的权限" in response.text
    assert "<html" in response.text
    denials = session.scalars(
        select(AuditEntry).where(AuditEntry.result == "denied")
    ).all()
    assert [(d.username, d.action, d.record_ids) for d in denials] == [
        ("rep_a1", "read", [str(deals["deal_a2"])])
    ]


def test_missing_opportunity_is_a_404_page(client: TestClient, org: Org) -> None:
    """An unknown id shows a not-found page, not a JSON body."""
    log_in(client, "rep_a1")

    response = client.get("/opportunities/999999")

    assert response.status_code == 404
    assert "记录不存在，或您无权查看" in response.text
