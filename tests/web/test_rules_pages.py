"""The rules pages: list, editor, check, save, firings, backtest, experiments, inbox."""

from __future__ import annotations

import html
import json
import re

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from tests.web.helpers import log_in
from waggle.channels.base import Message
from waggle.channels.service import deliver
from waggle.core.actor import system_actor
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.rules.experiments import create_experiment
from waggle.rules.live import build_runner
from waggle.rules.models import RuleRecord
from waggle.rules.service import save_rule
from waggle.signals.connectors.generic import GenericEventConnector
from waggle.signals.events import RawRecord
from waggle.signals.ingest import Pipeline, ingest_batch

OPERATOR = system_actor("test-rules-pages")
OBJECTIONS = {
    "key": "price-objections",
    "name": {"zh-CN": "一周三次异议", "en": "Three objections in a week"},
    "when": {
        "count": {
            "of": {"type": "chat_message", "where": {"event.topic": "objection"}},
            "within": "7d",
            "at_least": 3,
        }
    },
    "then": [{"notify": {"to": "owner"}}],
}
PREVIEW_ZH = (
    "当7 天内聊天消息 (event.topic = objection)的次数至少 3时 → 通知负责人（站内信）"
)
PREVIEW_EN = (
    "When the count of chat message (event.topic = objection) within 7 days is "
    "at least 3 → notify the owner (in-app)"
)
EXPLANATION_ZH = (
    "触发原因：7 天内聊天消息 (event.topic = objection)的次数至少 3"
    "（03-02 17:00、03-02 17:00、03-02 17:00）"
)


def _save(sessions: sessionmaker[Session], org: Org, data: object = OBJECTIONS) -> None:
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], data)


def _deal(sessions: sessionmaker[Session], org: Org) -> int:
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(
            session, rep, "无锡华光电子有限公司", external_id="A-9"
        )
        return add_opportunity(session, rep, account_id, "华光一期", external_id="O-9")


def _push_objections(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    records = [
        RawRecord(
            json.dumps(
                {
                    "source": "chat",
                    "source_id": f"m{number}",
                    "event_type": "chat_message",
                    "occurred_at": clock.current.isoformat(),
                    "sender": "employee:E-rep_a1",
                    "opportunity_ref": "opportunity:O-9",
                    "text": "太贵了",
                    "attributes": {"topic": "objection"},
                },
                ensure_ascii=False,
            ).encode()
        )
        for number in (1, 2, 3)
    ]
    ingest_batch(sessions, OPERATOR, Pipeline(GenericEventConnector({})), records)


@pytest.fixture
def fired(sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock) -> int:
    """The objections rule fired once on rep_a1's deal; returns the deal's id."""
    deal_id = _deal(sessions, org)
    _save(sessions, org)
    _push_objections(sessions, fixed_clock)
    build_runner(sessions).run_once()
    fixed_clock.advance(hours=1)
    return deal_id


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", page))


def _rule(sessions: sessionmaker[Session], key: str) -> RuleRecord | None:
    with sessions() as session:
        return session.scalar(select(RuleRecord).where(RuleRecord.key == key))


def test_rule_list_shows_the_preview_in_chinese_and_in_english(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The list reads each rule back in the user's language, with its name."""
    _save(sessions, org)
    log_in(client, "manager_a")

    chinese = _text(client.get("/rules").text)
    client.get("/lang/en", params={"next": "/rules"})
    english = _text(client.get("/rules").text)

    assert PREVIEW_ZH in chinese and "一周三次异议" in chinese
    assert PREVIEW_EN in english and "Three objections in a week" in english
    assert PREVIEW_ZH not in english


def test_check_fragment_lists_problems_with_their_field_paths(
    client: TestClient, org: Org
) -> None:
    """A rule whose count has no bound shows the problem at when.count."""
    token = log_in(client, "manager_a")
    broken = {**OBJECTIONS, "when": {"count": {"of": {"type": "call"}}}}

    response = client.post(
        "/rules/check",
        data={"yaml": yaml.safe_dump(broken)},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )

    page = _text(response.text)
    assert response.status_code == 200
    assert "<html" not in page
    problem = (
        "<code>when.count</code> <span>Value error, count needs at_least or at_most"
    )
    assert problem in page


def test_check_fragment_shows_the_preview_in_both_languages(
    client: TestClient, org: Org
) -> None:
    """A valid rule is read back in zh-CN and in en, whatever the page language."""
    token = log_in(client, "manager_a")

    response = client.post(
        "/rules/check",
        data={"yaml": yaml.safe_dump(OBJECTIONS, allow_unicode=True)},
        headers={"X-CSRF-Token": token},
    )

    page = _text(response.text)
    assert f'<dd data-locale="zh-CN">{PREVIEW_ZH}</dd>' in page
    assert f'<dd data-locale="en">{PREVIEW_EN}</dd>' in page


def test_editor_shows_the_saved_rule_as_yaml_with_chinese_intact(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The edit page's textarea holds the rule's YAML, Chinese unescaped."""
    _save(sessions, org)
    log_in(client, "manager_a")

    page = client.get("/rules/price-objections/edit").text
    new = client.get("/rules/new")

    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
    assert textarea is not None
    data = yaml.safe_load(html.unescape(textarea[1]))
    assert data["name"] == {"zh-CN": "一周三次异议", "en": "Three objections in a week"}
    assert "zh-CN: 一周三次异议" in html.unescape(textarea[1])
    assert 'hx-trigger="keyup changed delay:600ms"' in page
    assert new.status_code == 200 and "key: new-rule" in new.text
    assert '<code class="rule-field" data-field="opportunity.amount">' in new.text


def test_save_with_the_csrf_token_stores_the_rule(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Posting the editor's YAML with the token saves it and returns to the list."""
    token = log_in(client, "manager_a")
    text = yaml.safe_dump(OBJECTIONS, allow_unicode=True)

    response = client.post(
        "/rules/save",
        data={"yaml": text, "csrf_token": token},
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/rules?done=saved&key=price-objections"
    stored = _rule(sessions, "price-objections")
    assert stored is not None
    assert (stored.revision, stored.updated_by) == (1, "manager_a")
    assert stored.definition["name"] == OBJECTIONS["name"]


def test_save_without_the_csrf_token_is_refused(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A save without the session's token is refused and stores nothing."""
    log_in(client, "manager_a")

    response = client.post("/rules/save", data={"yaml": yaml.safe_dump(OBJECTIONS)})

    assert response.status_code == 403
    assert _rule(sessions, "price-objections") is None


def test_an_invalid_save_shows_the_problems_and_keeps_the_text(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Saving a rule with an unknown field shows the problem inline, text intact."""
    token = log_in(client, "manager_a")
    broken = {**OBJECTIONS, "colour": "红色"}
    text = yaml.safe_dump(broken, allow_unicode=True)

    response = client.post("/rules/save", data={"yaml": text, "csrf_token": token})

    page = response.text
    assert response.status_code == 422
    assert "<code>colour</code> <span>Extra inputs are not permitted</span>" in page
    assert "colour: 红色" in html.unescape(page)
    assert _rule(sessions, "price-objections") is None


def test_a_rep_cannot_reach_the_editor(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Reps may read rules but not open the editor, new or existing."""
    _save(sessions, org)
    log_in(client, "rep_a1")

    new = client.get("/rules/new")
    edit = client.get("/rules/price-objections/edit")

    assert (new.status_code, edit.status_code) == (403, 403)


def test_a_rep_sees_the_firings_of_own_deals_only(
    client: TestClient, org: Org, fired: int
) -> None:
    """The firing on rep_a1's deal shows for rep_a1 and not for rep_a2."""
    log_in(client, "rep_a1")
    own = client.get("/rules/firings").text
    client.cookies.clear()
    log_in(client, "rep_a2")
    other = client.get("/rules/firings").text

    assert f'<a href="/opportunities/{fired}">华光一期</a>' in own
    assert own.count("<tr data-firing=") == 1
    assert other.count("<tr data-firing=") == 0


def test_the_firing_log_shows_the_explanation(
    client: TestClient, org: Org, fired: int
) -> None:
    """Each firing shows why it fired, in the user's language, filtered by rule."""
    log_in(client, "manager_a")

    page = _text(client.get("/rules/firings?rule=price-objections&status=fired").text)

    assert f'<td data-role="explanation">{EXPLANATION_ZH}</td>' in page
    assert "一周三次异议" in page
    assert '<span class="pill">已触发</span>' in page


def test_the_backtest_page_shows_the_exact_firing_count(
    client: TestClient, org: Org, fired: int
) -> None:
    """Over 90 days the rule would have fired once, on one deal, in week 10."""
    log_in(client, "manager_a")

    page = client.get("/rules/price-objections/backtest?days=90").text

    assert '<div class="figure-value" id="firing-count">1</div>' in page
    assert '<div class="figure-value" data-status="fired">1</div>' in page
    assert '<div class="figure-value" id="deals-fired">1</div>' in page
    assert '<tr><td>2026-W10</td><td class="num">1</td></tr>' in page
    assert 'id="backtest-weeks-data"' in page
    assert "/static/vendor/echarts.min.js" in page


def test_the_dry_run_counts_firings_over_the_last_two_weeks(
    client: TestClient, org: Org, fired: int
) -> None:
    """The editor's dry run says how often the typed rule would have fired."""
    token = log_in(client, "manager_a")

    response = client.post(
        "/rules/dry-run",
        data={"yaml": yaml.safe_dump(OBJECTIONS, allow_unicode=True)},
        headers={"X-CSRF-Token": token},
    )

    page = _text(response.text)
    assert "最近 14 天内会触发 1 次" in page
    assert EXPLANATION_ZH in page


def test_the_toggle_switches_a_rule_off(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Posting the toggle form switches the rule off and bumps its revision."""
    _save(sessions, org)
    token = log_in(client, "manager_a")

    response = client.post(
        "/rules/price-objections/enabled",
        data={"enabled": "false", "csrf_token": token},
    )

    stored = _rule(sessions, "price-objections")
    assert stored is not None
    assert (stored.is_enabled, stored.revision) == (False, 2)
    assert "规则 price-objections 已关闭" in response.text


def test_installing_templates_adds_them_switched_off(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The install button saves the built-in rules, each switched off."""
    token = log_in(client, "ops")

    page = client.post("/rules/templates", data={"csrf_token": token}).text

    stored = _rule(sessions, "stalled-in-stage")
    assert stored is not None and stored.is_enabled is False
    assert re.search(r"已安装内置模板 \d+ 条（默认关闭）", page)


def test_the_experiment_report_page_shows_the_headline_and_warning(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A fresh experiment's report says there is not enough data, and warns."""
    with transaction(sessions) as session:
        create_experiment(
            session,
            org.actors["ops"],
            key="nudge",
            name="沉默商机提醒",
            rule_ref="price-objections",
            metric="win_rate",
            holdout_share=0.5,
            window_days=14,
            planned_sample_size=400,
            minimum_detectable_effect=0.05,
        )
    log_in(client, "manager_a")

    listing = client.get("/experiments").text
    page = _text(client.get("/experiments/nudge").text)

    assert '<a href="/experiments/nudge"><code>nudge</code></a>' in listing
    assert "experiment-form" not in listing
    assert '<h2 id="headline">赢单率：数据不足，每组至少需要 2 个样本。</h2>' in page
    assert 'id="peeking-warning"' in page
    assert "尚未达到计划样本量 400" in page


def test_sales_ops_starts_and_stops_an_experiment_from_the_page(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The create form starts an experiment and the stop button stops it."""
    _save(sessions, org)
    token = log_in(client, "ops")
    form = {
        "csrf_token": token,
        "key": "nudge",
        "name": "沉默商机提醒",
        "rule_ref": "price-objections",
        "metric": "stage_advanced",
        "holdout_share": "0.2",
        "window_days": "14",
        "planned_sample_size": "400",
        "minimum_detectable_effect": "0.05",
        "confidence_level": "0.95",
    }

    created = client.post("/experiments", data=form).text
    stopped = client.post("/experiments/nudge/stop", data={"csrf_token": token}).text

    assert "实验 nudge 已开始" in created
    assert "实验 nudge 已停止" in stopped
    assert '<td data-role="status"><span class="pill">已停止</span></td>' in stopped


def test_the_inbox_lists_a_notification_and_mark_read_clears_the_count(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A delivered notification is listed unread; marking it read drops the badge."""
    deliver(
        sessions,
        system_actor("test-inbox"),
        Message(
            "华光一期：价格异议",
            "客户三次提到价格",
            employee_id=org.employees["rep_a1"],
        ),
        channel="inbox",
        settings={},
    )
    token = log_in(client, "rep_a1")

    listing = client.get("/inbox").text
    badge = client.get("/inbox/unread").text
    notification_id = re.search(r'data-notification="(\d+)"', listing)
    assert notification_id is not None
    client.post(f"/inbox/{notification_id[1]}/read", data={"csrf_token": token})
    after = client.get("/inbox/unread").text

    assert "华光一期：价格异议" in listing and "1 条未读" in listing
    assert 'data-unread="1"' in badge and ">1</span>" in badge
    assert 'data-unread="0"' in after
    assert 'hx-get="/inbox/unread"' in listing
