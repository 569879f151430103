"""Customer health: signals, YAML thresholds, reasons in zh-CN and en, the policy."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights import add_account, add_contact, add_deal, days
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, NotFound, PolicyDenied
from waggle.crm.models import Account
from waggle.insights.customer_health import (
    SIGNALS,
    THRESHOLDS_ENV,
    account_health,
    assess_accounts,
    distribution,
    latest_customer_health,
    load_thresholds,
    parse_thresholds,
    store_customer_health,
)
from waggle.insights.forecast_models import CustomerHealthScore
from waggle.signals.models import BehaviourEvent

AS_OF = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
_numbers = itertools.count(1)
DEFAULT = yaml.safe_load(
    resources.files("waggle.insights")
    .joinpath("customer_health_default.yaml")
    .read_text(encoding="utf-8")
)


def _event(
    session: Session,
    account_id: int,
    event_type: str,
    at: dt.datetime,
    *,
    speaker: str | None = None,
    contact_id: int | None = None,
    attributes: dict[str, Any] | None = None,
) -> None:
    session.add(
        BehaviourEvent(
            source="test",
            source_id=f"h{next(_numbers)}",
            event_type=event_type,
            channel="crm",
            occurred_at=at,
            account_id=account_id,
            contact_id=contact_id,
            speaker=speaker,
            attributes=attributes or {},
            match_status="matched",
        )
    )


def _seed(sessions: sessionmaker[Session], org: Org) -> int:
    """An account of rep_a1: 3 slow tickets, silent for 40 days, 2 objections."""
    with transaction(sessions) as session:
        account_id = add_account(session, "上海星河机械有限公司")
        session.get_one(Account, account_id).owner_id = org.employees["rep_a1"]
        contact = add_contact(session, account_id, "decision_maker")
        _event(
            session,
            account_id,
            "chat_message",
            AS_OF - days(40),
            speaker="customer",
            contact_id=contact,
        )
        _event(
            session,
            account_id,
            "chat_message",
            AS_OF - days(39),
            speaker="rep",
            contact_id=contact,
        )
        for hours, ago in ((30, 20), (40, 12), (50, 5)):
            _event(
                session,
                account_id,
                "service_ticket",
                AS_OF - days(ago),
                attributes={"first_response_hours": hours, "status": "resolved"},
            )
        for ago in (3, 4):
            _event(
                session,
                account_id,
                "tracker_hit",
                AS_OF - days(ago),
                attributes={"category": "objection", "is_negated": False},
            )
        add_deal(
            session,
            owner_id=org.employees["rep_a1"],
            account_id=account_id,
            created_at=AS_OF - days(300),
            status="won",
            closed_at=AS_OF - days(100),
            amount="500000",
        )
    return account_id


def _thresholds(tmp_path: Path, change: Any = None) -> Path:
    document = copy.deepcopy(DEFAULT)
    if change is not None:
        change(document)
    path = tmp_path / "health.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def _rule(document: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(rule for rule in document["rules"] if rule["id"] == rule_id)


def test_the_default_list_has_37_documented_signals():
    """Every signal has a key, a source and a label in both languages."""
    assert len(SIGNALS) == 37
    assert all(len(entry) == 4 and all(entry) for entry in SIGNALS)
    assert len({entry[0] for entry in SIGNALS}) == 37


def test_signals_and_reasons_are_worded_in_the_managers_words(sessions, org):
    """Three slow tickets and 40 silent days fire two rules, worded zh-CN and en."""
    account_id = _seed(sessions, org)

    with transaction(sessions) as session:
        health = account_health(session, org.actors["rep_a1"], account_id, as_of=AS_OF)

    assert health.signals["slow_ticket_responses_last3"] == 3
    assert health.signals["ticket_response_hours_last3"] == 40
    assert health.signals["days_since_customer_reply"] == 40
    assert health.signals["objection_hits_90d"] == 2
    assert health.signals["days_since_last_order"] == 100
    assert health.signals["web_form_submissions_90d"] == 0
    assert health.signals["order_amount_trend"] is None
    assert (health.risk, health.health, health.level) == (52, 48, "high")
    assert [reason.line("zh-CN") for reason in health.reasons] == [
        "续约风险升高: 过去3次服务单响应超24小时, 权重32%",
        "流失风险升高: 客户已40天未回复, 权重20%",
    ]
    assert health.reasons[0].line("en") == (
        "Renewal risk up: the last 3 service tickets took over 24 h to answer, "
        "weight 32%"
    )
    assert health.name == "上海星河机械有限公司"


def _objections_at_two(document: dict[str, Any]) -> None:
    _rule(document, "objections")["value"] = 2


def _slow_after_45_hours(document: dict[str, Any]) -> None:
    document["parameters"]["slow_ticket_hours"] = 45


def _silent_after_45_days(document: dict[str, Any]) -> None:
    _rule(document, "customer_silent")["value"] = 45


def _high_from_60(document: dict[str, Any]) -> None:
    document["levels"]["high"] = 60


def _heavier_tickets(document: dict[str, Any]) -> None:
    _rule(document, "slow_tickets")["weight"] = 132


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (None, (52, "high", ["slow_tickets", "customer_silent"])),
        (
            _objections_at_two,
            (64, "high", ["slow_tickets", "customer_silent", "objections"]),
        ),
        (_slow_after_45_hours, (20, "low", ["customer_silent"])),
        (_silent_after_45_days, (32, "medium", ["slow_tickets"])),
        (_high_from_60, (52, "medium", ["slow_tickets", "customer_silent"])),
        (_heavier_tickets, (76, "high", ["slow_tickets", "customer_silent"])),
    ],
)
def test_each_threshold_change_in_the_yaml_changes_the_outcome(
    sessions, org, tmp_path, monkeypatch, change, expected
):
    """Editing the thresholds file, with no code change, moves the score and reasons."""
    account_id = _seed(sessions, org)
    monkeypatch.setenv(THRESHOLDS_ENV, str(_thresholds(tmp_path, change)))

    with transaction(sessions) as session:
        [health] = assess_accounts(session, org.actors["manager_a"], as_of=AS_OF)

    assert health.account_id == account_id
    assert (health.risk, health.level, [r.rule_id for r in health.reasons]) == expected


def _drop(key: str) -> Any:
    def change(document: dict[str, Any]) -> None:
        del document["rules"][0][key]

    return change


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set(("rules", 0, "op"), "=>"),
            r"rules\[0\]\.op: '=>' is not one of >=, >, <=, <",
        ),
        (
            _set(("rules", 1, "signal"), "mood"),
            r"rules\[1\]\.signal: 'mood' is not a known signal",
        ),
        (_drop("weight"), r"rules\[0\]\.weight: missing"),
        (_set(("rules", 2, "weight"), -3), r"rules\[2\]\.weight: -3 must be above 0"),
        (
            _set(("rules", 0, "value"), "many"),
            r"rules\[0\]\.value: 'many' is not a number",
        ),
        (
            _set(("rules", 0, "risk"), "fraud"),
            r"rules\[0\]\.risk: 'fraud' is not renewal or churn",
        ),
        (_set(("levels", "medium"), 70), r"levels: expected 0 <= medium < high <= 100"),
        (
            _set(("rules", 0, "text", "en"), "{days} late"),
            r"rules\[0\]\.text\.en: unknown placeholder",
        ),
        (_set(("parameters", "window"), 9), r"parameters\.window: unknown key"),
        (
            _set(("rules", 1, "id"), "slow_tickets"),
            r"rules\[1\]\.id: 'slow_tickets' is used twice",
        ),
    ],
)
def test_invalid_thresholds_are_rejected_with_a_clear_error(tmp_path, change, message):
    """A broken file names the file, the entry and what was expected."""
    path = _thresholds(tmp_path, change)

    with pytest.raises(InvalidInput, match=message) as caught:
        load_thresholds(path)

    assert str(path) in caught.value.message


def test_text_that_is_not_yaml_is_rejected():
    """A file that does not parse is refused before any account is scored."""
    with pytest.raises(InvalidInput, match=r"custom\.yaml: not valid YAML"):
        parse_thresholds("rules: [unclosed", source="custom.yaml")


def test_health_stays_inside_the_actors_scope(sessions, org):
    """Another rep neither lists nor opens the account; IT admins read no health."""
    account_id = _seed(sessions, org)

    with transaction(sessions) as session:
        listed = assess_accounts(session, org.actors["rep_a2"], as_of=AS_OF)
    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        account_health(session, org.actors["rep_a2"], account_id, as_of=AS_OF)
    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        assess_accounts(session, org.actors["admin"], as_of=AS_OF)

    assert listed == []


def test_a_merged_account_has_no_health_of_its_own(sessions, org):
    """Asking for a merged account names the account it went into."""
    account_id = _seed(sessions, org)
    with transaction(sessions) as session:
        survivor = add_account(session, "上海星河机械股份有限公司")
        merged = session.get_one(Account, account_id)
        merged.merged_into_id = survivor

    with transaction(sessions) as session, pytest.raises(NotFound) as missing:
        account_health(session, org.actors["rep_a1"], account_id, as_of=AS_OF)

    assert f"merged into account {survivor}" in missing.value.message


def test_distribution_counts_accounts_per_health_band(sessions, org):
    """The health distribution puts the seeded account in the 40-49 band."""
    _seed(sessions, org)

    with transaction(sessions) as session:
        items = assess_accounts(session, org.actors["ops"], as_of=AS_OF)

    assert distribution(items) == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


def test_the_rep_s_own_words_and_later_events_are_not_counted(sessions, org):
    """An objection the rep voiced, or one after as_of, leaves the signals alone."""
    account_id = _seed(sessions, org)
    with transaction(sessions) as session:
        hit = {"category": "objection", "is_negated": False}
        _event(
            session,
            account_id,
            "tracker_hit",
            AS_OF - days(1),
            speaker="rep",
            attributes=hit,
        )
        _event(session, account_id, "tracker_hit", AS_OF + days(1), attributes=hit)
        _event(session, account_id, "chat_message", AS_OF + days(1), speaker="customer")

    with transaction(sessions) as session:
        [health] = assess_accounts(session, org.actors["ops"], as_of=AS_OF)

    assert health.signals["objection_hits_90d"] == 2
    assert health.signals["days_since_customer_reply"] == 40


def test_a_stored_snapshot_is_read_back_within_the_scope(sessions, org):
    """Sales ops store the health; the owner reads it back, another rep sees none."""
    account_id = _seed(sessions, org)

    with transaction(sessions) as session:
        first = store_customer_health(session, org.actors["ops"], as_of=AS_OF)
    with transaction(sessions) as session:
        store_customer_health(session, org.actors["ops"], as_of=AS_OF + days(1))
    with transaction(sessions) as session:
        own = latest_customer_health(session, org.actors["rep_a1"])
        other = latest_customer_health(session, org.actors["rep_a2"])
        rows = session.scalars(select(CustomerHealthScore.is_latest)).all()

    assert first == 1
    assert own is not None and own.as_of == AS_OF + days(1)
    assert [(item.account_id, item.risk) for item in own.items] == [(account_id, 52)]
    assert own.items[0].reasons[0].line("zh-CN") == (
        "续约风险升高: 过去3次服务单响应超24小时, 权重32%"
    )
    assert own.items[0].signals["slow_ticket_responses_last3"] == 3
    assert other is None
    assert sorted(rows) == [False, True]


def test_only_sales_ops_store_snapshots(sessions, org):
    """A rep may read customer health but not store a snapshot."""
    _seed(sessions, org)

    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        store_customer_health(session, org.actors["rep_a1"], as_of=AS_OF)
