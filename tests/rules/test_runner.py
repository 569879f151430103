"""The live runner: durable state, restarts, hot reload, actions, the API."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.rules.live import build_runner, perform_due_actions
from waggle.rules.models import RuleAction, RuleFiring, RuleStateRow
from waggle.rules.runner import RuleRunner
from waggle.rules.service import save_rule
from waggle.signals.connectors.generic import GenericEventConnector
from waggle.signals.events import RawRecord
from waggle.signals.ingest import Pipeline, ingest_batch
from waggle.signals.models import BehaviourEvent

OPERATOR = system_actor("test-rules")
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
    "then": [{"notify": {"to": "owner"}}, {"escalate": {"to": "manager"}}],
}


@pytest.fixture
def deal(sessions: sessionmaker[Session], org: Org, fixed_clock) -> int:
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(
            session, rep, "无锡华光电子有限公司", external_id="A-9"
        )
        return add_opportunity(session, rep, account_id, "华光一期", external_id="O-9")


def push(sessions, *numbers: int, fixed_clock, topic: str = "objection") -> None:
    records = [
        RawRecord(
            json.dumps(
                {
                    "source": "chat",
                    "source_id": f"m{number}",
                    "event_type": "chat_message",
                    "occurred_at": (fixed_clock.current).isoformat(),
                    "sender": "employee:E-rep_a1",
                    "opportunity_ref": "opportunity:O-9",
                    "text": "太贵了",
                    "attributes": {"topic": topic},
                },
                ensure_ascii=False,
            ).encode()
        )
        for number in numbers
    ]
    ingest_batch(sessions, OPERATOR, Pipeline(GenericEventConnector({})), records)


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_saved_rule_fires_once_and_queues_its_actions(
    sessions, org, deal, fixed_clock
):
    """Three objections fire the rule; two actions wait to be carried out."""
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], OBJECTIONS)
    push(sessions, 1, 2, 3, fixed_clock=fixed_clock)

    report = build_runner(sessions).run_once()

    assert (report.events, report.firings, report.acted) == (3, 1, 1)
    with sessions() as session:
        firing = session.scalars(select(RuleFiring)).one()
        kinds = session.scalars(select(RuleAction.kind).order_by(RuleAction.position))
        assert list(kinds) == ["notify", "escalate"]
        event_ids = list(
            session.scalars(select(BehaviourEvent.id).order_by(BehaviourEvent.id))
        )
    assert (firing.opportunity_id, firing.status) == (deal, "fired")
    assert [fact["event_id"] for fact in firing.facts] == event_ids


def test_actions_deliver_to_the_owner_and_the_manager_inbox(
    sessions, org, deal, fixed_clock, client
):
    """Notify reaches the rep's inbox, escalate the manager's, each exactly once."""
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], OBJECTIONS)
    push(sessions, 1, 2, 3, fixed_clock=fixed_clock)
    build_runner(sessions).run_once()

    done = perform_due_actions(sessions)
    again = perform_due_actions(sessions)

    assert (done, again) == (2, 0)
    rep_inbox = client.get("/api/v1/inbox", headers=org.headers("rep_a1")).json()
    manager_inbox = client.get("/api/v1/inbox", headers=org.headers("manager_a")).json()
    items = rep_inbox["items"] if isinstance(rep_inbox, dict) else rep_inbox
    manager_items = (
        manager_inbox["items"] if isinstance(manager_inbox, dict) else manager_inbox
    )
    assert [item["title"] for item in items] == ["一周三次异议 · 华光一期"]
    assert len(manager_items) == 1
    assert "触发原因" in items[0]["body"]


def test_a_restart_in_the_middle_loses_nothing_and_fires_nothing_twice(
    sessions, org, deal, fixed_clock
):
    """State survives a new runner: two objections before, one after, one firing."""
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], OBJECTIONS)
    push(sessions, 1, 2, fixed_clock=fixed_clock)
    build_runner(sessions).run_once()
    with sessions() as session:
        assert count(session, RuleStateRow) == 1

    push(sessions, 3, fixed_clock=fixed_clock)
    restarted = build_runner(sessions)
    first = restarted.run_once()
    again = build_runner(sessions).run_once()

    assert (first.events, first.firings) == (1, 1)
    assert (again.events, again.firings) == (0, 0)
    with sessions() as session:
        assert count(session, RuleFiring) == 1


class Crash(Exception):
    """Stands for the process dying before its transaction commits."""


def test_a_crash_before_commit_replays_the_events_exactly_once(
    sessions, org, deal, fixed_clock
):
    """A run that dies before commit leaves the cursor; the next run fires once."""
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], OBJECTIONS)
    push(sessions, 1, 2, 3, fixed_clock=fixed_clock)

    def crash(session, stored):
        raise Crash

    dying = RuleRunner(sessions, after_store=crash)
    with pytest.raises(Crash):
        dying.run_once()
    report = build_runner(sessions).run_once()

    assert (report.events, report.firings) == (3, 1)
    with sessions() as session:
        assert count(session, RuleFiring) == 1


def test_an_edited_rule_is_picked_up_without_a_restart(
    sessions, org, deal, fixed_clock
):
    """Lowering the threshold takes effect at the next run of the same runner."""
    runner = build_runner(sessions)
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], OBJECTIONS)
    push(sessions, 1, 2, fixed_clock=fixed_clock)
    before = runner.run_once()

    lowered = json.loads(json.dumps(OBJECTIONS))
    lowered["when"]["count"]["at_least"] = 1
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], lowered)
    push(sessions, 3, fixed_clock=fixed_clock)
    after = runner.run_once()

    assert (before.firings, after.firings) == (0, 1)


def test_an_absence_deadline_fires_when_the_clock_passes_it(
    sessions, org, deal, fixed_clock
):
    """A quote with no reply fires when the runner runs after the deadline."""
    silence = {
        "key": "quote-silence",
        "name": "报价后无回复",
        "when": {
            "absence": {
                "after": {"type": "chat_message"},
                "expect": {"type": "call"},
                "within": "2h",
            }
        },
    }
    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], silence)
    push(sessions, 1, fixed_clock=fixed_clock)
    runner = build_runner(sessions)
    early = runner.run_once(until=fixed_clock.current + dt.timedelta(hours=1))

    late = runner.run_once(until=fixed_clock.current + dt.timedelta(hours=3))

    assert (early.firings, late.firings) == (0, 1)
    with sessions() as session:
        firing = session.scalars(select(RuleFiring)).one()
    assert firing.fired_at == fixed_clock.current + dt.timedelta(hours=2)


def test_rules_over_the_api_validate_preview_and_list_firings(
    client, sessions, org, deal, fixed_clock
):
    """Validate shows the preview; save, run and the firing log follow the policy."""
    headers = org.headers("manager_a")
    checked = client.post("/api/v1/rules/validate", json=OBJECTIONS, headers=headers)
    broken = client.post(
        "/api/v1/rules/validate", json={**OBJECTIONS, "when": {}}, headers=headers
    )
    saved = client.post("/api/v1/rules", json=OBJECTIONS, headers=headers)
    refused = client.post(
        "/api/v1/rules", json=OBJECTIONS, headers=org.headers("rep_a1")
    )
    push(sessions, 1, 2, 3, fixed_clock=fixed_clock)
    build_runner(sessions).run_once()

    own = client.get("/api/v1/rules/firings", headers=org.headers("rep_a1")).json()
    other = client.get("/api/v1/rules/firings", headers=org.headers("rep_b1")).json()

    assert checked.json()["is_valid"] is True
    assert checked.json()["preview"]["en"].startswith("When the count of chat message")
    assert broken.json()["is_valid"] is False
    assert broken.json()["message"].startswith("rule: when: Value error")
    assert (saved.status_code, refused.status_code) == (201, 403), saved.text
    assert [firing["rule_key"] for firing in own] == ["price-objections"]
    assert other == []


def test_a_backtest_reports_firings_and_outcomes_without_sending(
    client, sessions, org, deal, fixed_clock
):
    """The backtest counts would-be firings and queues no action."""
    push(sessions, 1, 2, 3, 4, fixed_clock=fixed_clock)

    answer = client.post(
        "/api/v1/rules/backtest",
        json={
            "rule": OBJECTIONS,
            "since": (fixed_clock.current - dt.timedelta(days=1)).isoformat(),
            "until": (fixed_clock.current + dt.timedelta(days=1)).isoformat(),
        },
        headers=org.headers("manager_a"),
    ).json()

    assert (answer["events_read"], answer["firing_count"]) == (4, 2)
    assert answer["by_status"] == {"fired": 1, "throttled": 1}
    assert answer["deals_fired"] == 1
    assert answer["fired"] == {
        "deals": 1, "closed": 0, "won": 0, "win_rate": None, "mean_cycle_days": None,
    }  # fmt: skip
    with sessions() as session:
        assert count(session, RuleAction) == 0


def test_templates_install_switched_off_and_keep_user_edits(client, org):
    """Installing twice keeps a switched-on template switched on."""
    headers = org.headers("ops")
    first = client.post("/api/v1/rules/templates", headers=headers).json()
    client.put("/api/v1/rules/ghosted/enabled", json={"enabled": True}, headers=headers)

    second = client.post("/api/v1/rules/templates", headers=headers).json()

    assert len(first) == 11
    assert {rule["key"] for rule in first if rule["is_enabled"]} == set()
    assert {rule["key"] for rule in second if rule["is_enabled"]} == {"ghosted"}


def test_recommend_sends_the_owner_a_tracked_link_to_the_closest_material(
    sessions, org, deal, fixed_clock
):
    """The case study of the deal's industry is linked; the other is not chosen."""
    from waggle.channels.models import Notification
    from waggle.crm.models import Account, Opportunity
    from waggle.signals.materials import create_material
    from waggle.signals.models import TrackedLink

    ops = org.actors["ops"]
    with transaction(sessions) as session:
        account = session.get_one(
            Account, session.get_one(Opportunity, deal).account_id
        )
        account.industry = "制造业"
        for title, industry in (("零售案例", "零售"), ("制造业案例", "制造业")):
            create_material(
                session, ops, title=title, kind="case_study", industry=industry,
                pages=["第一页"],
            )  # fmt: skip
        save_rule(
            session,
            org.actors["manager_a"],
            {
                "key": "suggest",
                "name": "推荐案例",
                "when": {"match": {"type": "chat_message"}},
                "then": [{"recommend": {"kind": "case_study", "match": ["industry"]}}],
            },
        )
    push(sessions, 1, fixed_clock=fixed_clock)
    build_runner(sessions).run_once()

    done = perform_due_actions(sessions)

    with sessions() as session:
        link = session.scalars(select(TrackedLink)).one()
        note = session.scalars(select(Notification)).one()
    assert done == 1
    assert (link.opportunity_id, note.employee_id) == (deal, org.employees["rep_a1"])
    assert note.body.startswith("推荐资料：制造业案例（追踪链接 /t/")


def test_business_hours_deadlines_skip_the_national_day_holiday(
    sessions, org, fixed_clock
):
    """72 business hours from Friday 26 September 2025 end on 14 October."""
    from waggle.rules.live import business_deadline

    start = dt.datetime(2025, 9, 26, 9, 0, tzinfo=dt.UTC)  # 17:00 in Shanghai

    deadline = business_deadline(start, dt.timedelta(hours=72))

    assert deadline == dt.datetime(2025, 10, 14, 9, 0, tzinfo=dt.UTC)


def test_a_notification_speaks_the_recipients_language(
    sessions, org, deal, fixed_clock
):
    """A rep whose login is in English gets the rule's name and reason in English."""
    from waggle.channels.models import Notification
    from waggle.identity.models import User

    with transaction(sessions) as session:
        user = session.scalars(select(User).where(User.username == "rep_a1")).one()
        user.locale = "en"
        rule = {**OBJECTIONS, "then": [{"notify": {"to": "owner"}}]}
        save_rule(session, org.actors["manager_a"], rule)
    push(sessions, 1, 2, 3, fixed_clock=fixed_clock)
    build_runner(sessions).run_once()

    perform_due_actions(sessions)

    with sessions() as session:
        note = session.scalars(select(Notification)).one()
    assert note.title == "Three objections in a week · 华光一期"
    assert note.body.startswith("fired because: the count of chat message")


def test_a_stored_chunk_wakes_the_rules_and_delivers_at_once(
    sessions, org, deal, fixed_clock
):
    """Through the event stream, the notification exists when ingestion returns."""
    from waggle.channels.models import Notification
    from waggle.rules.live import LiveRules
    from waggle.signals.stream import subscribe

    with transaction(sessions) as session:
        save_rule(session, org.actors["manager_a"], OBJECTIONS)
    live = LiveRules(sessions)
    unsubscribe = subscribe(live.on_events)
    try:
        push(sessions, 1, 2, 3, fixed_clock=fixed_clock)
    finally:
        unsubscribe()

    with sessions() as session:
        assert count(session, Notification) == 2
