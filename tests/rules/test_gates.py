"""Stage gates: conditions per stage, on the API, the board and imports alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from tests.web.helpers import log_in
from waggle.app import create_app
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput
from waggle.core.settings import Settings, load_settings
from waggle.crm.importing import import_file
from waggle.crm.models import ImportReject, Opportunity, PipelineStage
from waggle.crm.service import CONTACTS, OPPORTUNITIES, move_opportunity_stage
from waggle.governance.records import create_record, update_record
from waggle.rules.gates import (
    SHIPPED_GATES_FILE,
    gate_reasons,
    install_stage_gates,
    parse_gate_file,
    stages_entered,
)
from waggle.signals.connectors.generic import GenericEventConnector
from waggle.signals.events import RawRecord
from waggle.signals.ingest import Pipeline, ingest_batch
from waggle.signals.trackers import TrackerEngine, default_engine

OPERATOR = system_actor("test-gates")
START = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
AMOUNT = "商机金额至少为 1 (amount must be at least 1)"
NO_MEETING = "还没有与客户开过会 (no meeting held with the customer yet)"
NO_PRICE_TALK = "客户还没有谈及价格 (the customer has not talked about price yet)"


@pytest.fixture(scope="module")
def trackers() -> TrackerEngine:
    return default_engine()


@pytest.fixture
def deal(sessions: sessionmaker[Session], org: Org) -> int:
    """rep_a1's deal O-1 in 线索确认: pain points and decision maker, no amount."""
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(
            session, rep, "上海星河机械有限公司", external_id="A-1"
        )
        contact = create_record(
            session,
            rep,
            CONTACTS,
            {
                "external_id": "C-1",
                "account_id": account_id,
                "name": "王芳",
                "decision_role": "decision_maker",
            },
        )
        return add_opportunity(
            session,
            rep,
            account_id,
            "星河二期",
            external_id="O-1",
            customer_pain_points="换线时间长，停机损失大",
            decision_maker_contact_id=contact.id,
        )


@pytest.fixture
def gated(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The test's session factory judging moves by the shipped gate file."""
    install_stage_gates(sessions, SHIPPED_GATES_FILE)
    return sessions


@pytest.fixture
def gated_client(settings: Settings) -> Iterator[TestClient]:
    """A client of an application started with the shipped gate file."""
    application = create_app(
        dataclasses.replace(settings, stage_gates_file=SHIPPED_GATES_FILE)
    )
    with TestClient(application) as client:
        yield client
    application.state.engine.dispose()


def stage_ids(session: Session) -> dict[str, int]:
    return {stage.key: stage.id for stage in session.scalars(select(PipelineStage))}


def stage_id_of(sessions: sessionmaker[Session], key: str) -> int:
    with sessions() as session:
        return stage_ids(session)[key]


def event(number: int, event_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "source": "gate-test",
        "source_id": f"g{number}",
        "event_type": event_type,
        "channel": fields.pop("channel", "meeting"),
        "occurred_at": (START + dt.timedelta(minutes=number)).isoformat(),
        "sender": fields.pop("sender", "employee:E-rep_a1"),
        "opportunity_ref": "opportunity:O-1",
        **fields,
    }


def chat(number: int, text: str, *, sender: str = "contact:C-1") -> dict[str, Any]:
    return event(number, "chat_message", channel="wecom", sender=sender, text=text)


def ingest(
    sessions: sessionmaker[Session], trackers: TrackerEngine, *events: dict[str, Any]
) -> None:
    """Store ``events`` through the ingestion pipeline, as connectors would."""
    records = [
        RawRecord(json.dumps(body, ensure_ascii=False).encode("utf-8"), f"line {n}")
        for n, body in enumerate(events, 1)
    ]
    pipeline = Pipeline(GenericEventConnector({}), trackers=trackers)
    report = ingest_batch(sessions, OPERATOR, pipeline, records)
    assert report.accepted == len(events)


def judge(
    session: Session,
    opportunity_id: int,
    conditions: list[dict[str, Any]],
    *,
    stage: str = "solution",
    **changes: object,
) -> list[str]:
    """Return the reasons ``conditions`` on ``stage`` give for the changed deal."""
    opportunity = session.get_one(Opportunity, opportunity_id)
    for name, value in changes.items():
        setattr(opportunity, name, value)
    document = {"pipeline": "standard", "stages": {stage: {"conditions": conditions}}}
    gates = parse_gate_file(document, origin="test")
    target = session.get_one(PipelineStage, stage_ids(session)[stage])
    entered = stages_entered(session, opportunity, target)
    return gate_reasons(session, opportunity, entered, gates=gates)


def move(
    sessions: sessionmaker[Session],
    org: Org,
    opportunity_id: int,
    stage: str,
    **extra: Any,
) -> Opportunity:
    """Move the deal as rep_a1 in a transaction of its own."""
    with transaction(sessions) as session:
        return move_opportunity_stage(
            session,
            org.actors["rep_a1"],
            opportunity_id,
            stage_id=stage_ids(session)[stage],
            **extra,
        )


def refusal(
    sessions: sessionmaker[Session], org: Org, opportunity_id: int, stage: str
) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        move(sessions, org, opportunity_id, stage)
    return refused.value


# Conditions -----------------------------------------------------------------


def test_filled_condition_wants_a_non_blank_value(session: Session, deal: int) -> None:
    """``filled`` fails on an empty or blank field and passes on text."""
    conditions = [{"field": "customer_pain_points", "filled": True}]

    blank = judge(session, deal, conditions, customer_pain_points="  ")
    filled = judge(session, deal, conditions, customer_pain_points="停机损失大")

    assert blank == ["缺少客户痛点 (customer pain points missing)"]
    assert filled == []


def test_at_least_condition_compares_the_number(session: Session, deal: int) -> None:
    """``at_least`` fails below the limit and passes at it."""
    conditions = [{"field": "amount", "at_least": 100000}]

    below = judge(session, deal, conditions, amount=Decimal("99999.99"))
    at = judge(session, deal, conditions, amount=Decimal("100000"))

    assert below == ["商机金额至少为 100000 (amount must be at least 100000)"]
    assert at == []


def test_equals_condition_wants_the_value(session: Session, deal: int) -> None:
    """``equals: true`` fails while budget is unconfirmed and passes once it is."""
    conditions = [{"field": "budget_confirmed", "equals": True}]

    unconfirmed = judge(session, deal, conditions, budget_confirmed=False)
    confirmed = judge(session, deal, conditions, budget_confirmed=True)

    assert unconfirmed == ["预算已确认须为是 (budget confirmed must be yes)"]
    assert confirmed == []


def test_event_evidence_counts_the_deals_events(
    sessions: sessionmaker[Session], deal: int, trackers: TrackerEngine
) -> None:
    """Event evidence fails with fewer events than asked and passes with enough."""
    conditions = [{"evidence": {"event_type": "meeting_held", "at_least": 2}}]
    ingest(sessions, trackers, event(1, "meeting_held"))
    with sessions() as session:
        one = judge(session, deal, conditions)

    ingest(sessions, trackers, event(2, "meeting_held"))
    with sessions() as session:
        two = judge(session, deal, conditions)

    assert one == [
        "至少需要 2 次会议，目前 1 次 (at least 2 × meeting held needed, 1 so far)"
    ]
    assert two == []


def test_tracker_evidence_ignores_negated_hits_and_other_speakers(
    sessions: sessionmaker[Session], deal: int, trackers: TrackerEngine
) -> None:
    """Only a customer's non-negated pricing hit counts as pricing evidence."""
    conditions = [{"evidence": {"tracker_category": "pricing", "speaker": "customer"}}]
    ingest(
        sessions,
        trackers,
        chat(1, "先不用报价了"),
        chat(2, "报价发我一下", sender="employee:E-rep_a1"),
    )
    with sessions() as session:
        before = judge(session, deal, conditions)

    ingest(sessions, trackers, chat(3, "你们能不能报个价？"))
    with sessions() as session:
        after = judge(session, deal, conditions)

    assert before == [
        "至少需要 1 次客户谈及价格，目前 0 次 "
        "(at least 1 × customer talk about pricing needed, 0 so far)"
    ]
    assert after == []


def test_evidence_kinds_needs_enough_different_kinds(
    sessions: sessionmaker[Session], deal: int, trackers: TrackerEngine
) -> None:
    """Three kinds of the four are needed; two meetings still count as one kind."""
    conditions = [
        {
            "evidence_kinds": {
                "at_least": 3,
                "of": [
                    {"event_type": "quote_sent"},
                    {"tracker_category": "budget", "speaker": "customer"},
                    {"event_type": "meeting_minutes"},
                    {"event_type": "email_received"},
                ],
            }
        }
    ]
    ingest(
        sessions,
        trackers,
        event(1, "meeting_minutes"),
        event(2, "meeting_minutes"),
        chat(3, "我们今年的项目预算大概两百万"),
    )
    with sessions() as session:
        two_kinds = judge(session, deal, conditions)

    ingest(sessions, trackers, event(4, "quote_sent", channel="email"))
    with sessions() as session:
        three_kinds = judge(session, deal, conditions)

    assert two_kinds == [
        "至少需要 3 类证据，目前 2 类；缺少：报价单、客户来信 "
        "(at least 3 kinds of evidence needed, 2 so far; missing: quote sent, "
        "email from the customer)"
    ]
    assert three_kinds == []


def test_a_conditions_reason_replaces_the_generated_wording(
    session: Session, deal: int
) -> None:
    """A condition's own reason is what the user reads when it fails."""
    conditions = [
        {
            "field": "amount",
            "at_least": 1,
            "reason": {
                "zh-CN": "请先填写商机金额",
                "en": "enter the deal amount first",
            },
        }
    ]

    reasons = judge(session, deal, conditions)

    assert reasons == ["请先填写商机金额 (enter the deal amount first)"]


# Where the gates apply ------------------------------------------------------


def test_api_move_is_refused_with_the_reasons(
    gated_client: TestClient, org: Org, deal: int, session: Session
) -> None:
    """A move to 方案确认 without amount and evidence answers 422 with the reasons."""
    solution = stage_ids(session)["solution"]

    response = gated_client.post(
        f"/api/v1/opportunities/{deal}/stage",
        json={"stage_id": solution},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "stage_gate_refused"
    assert error["details"]["reasons"] == [AMOUNT, NO_MEETING, NO_PRICE_TALK]
    assert error["message"] == (
        f"opportunity O-1: stage solution refused: {AMOUNT}; {NO_MEETING}; "
        f"{NO_PRICE_TALK}"
    )


def test_board_drag_is_refused_with_the_reasons(
    gated_client: TestClient, org: Org, deal: int, session: Session
) -> None:
    """Dropping the card on 方案确认 is refused with the same reasons; it stays."""
    token = log_in(gated_client, "rep_a1")
    stages = stage_ids(session)

    response = gated_client.post(
        "/board/move",
        json={"opportunity_id": deal, "stage_id": stages["solution"]},
        headers={"Accept": "application/json", "X-CSRF-Token": token},
    )

    assert response.status_code == 422
    assert response.json() == {
        "ok": False,
        "message": f"不能进入「方案确认」：{AMOUNT}; {NO_MEETING}; {NO_PRICE_TALK}",
    }
    session.expire_all()
    assert session.get_one(Opportunity, deal).stage_id == stages["lead"]


def test_import_that_changes_the_stage_is_refused(
    gated: sessionmaker[Session], deal: int, session: Session
) -> None:
    """A file row moving O-1 to solution is rejected with the gate's reasons."""
    data = (
        "external_id,name,account_external_id,stage_key\r\n"
        "O-1,星河二期,A-1,solution\r\n"
    )

    with transaction(gated) as import_session:
        summary = import_file(
            import_session, OPERATOR, "opportunities", data.encode(), filename="o.csv"
        )

    assert (summary.rows_read, summary.updated, summary.rejected) == (1, 0, 1)
    reject = session.scalars(select(ImportReject)).one()
    assert (reject.field, reject.code) == ("stage_key", "stage_gate_refused")
    assert reject.reason == (
        f"stage solution refused: {AMOUNT}; {NO_MEETING}; {NO_PRICE_TALK}"
    )
    assert session.get_one(Opportunity, deal).stage_id == stage_ids(session)["lead"]


def test_ingested_evidence_lets_the_move_pass(
    gated_client: TestClient,
    org: Org,
    deal: int,
    sessions: sessionmaker[Session],
    session: Session,
    trackers: TrackerEngine,
) -> None:
    """With an amount, a meeting and the customer asking the price, 方案确认 opens."""
    headers, url = org.headers("rep_a1"), f"/api/v1/opportunities/{deal}"
    ingest(sessions, trackers, event(1, "meeting_held"), chat(2, "你们能不能报个价？"))
    gated_client.patch(url, json={"amount": "1250000"}, headers=headers)

    response = gated_client.post(
        f"{url}/stage",
        json={"stage_id": stage_ids(session)["solution"]},
        headers=headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["stage_id"] == stage_ids(session)["solution"]


def test_skipping_stages_needs_the_skipped_stages_conditions(
    gated: sessionmaker[Session], org: Org, deal: int
) -> None:
    """线索确认 → 赢单 is judged by 方案确认's and 商务谈判's conditions, named."""
    refused = refusal(gated, org, deal, "won")

    assert refused.code == "stage_gate_refused"
    assert refused.details["reasons"] == [
        "「方案确认」商机金额至少为 1 (Solution agreed: amount must be at least 1)",
        "「方案确认」还没有与客户开过会 "
        "(Solution agreed: no meeting held with the customer yet)",
        "「方案确认」客户还没有谈及价格 "
        "(Solution agreed: the customer has not talked about price yet)",
        "「商务谈判」至少需要 3 类证据，目前 0 类；"
        "缺少：报价单、客户谈及预算、会议纪要、客户来信 "
        "(Negotiation: at least 3 kinds of evidence needed, 0 so far; "
        "missing: quote sent, customer talk about budget, meeting minutes, "
        "email from the customer)",
    ]


def test_moves_backwards_and_to_lost_are_not_gated(
    gated: sessionmaker[Session], org: Org, deal: int
) -> None:
    """A deal sitting in 商务谈判 may go back to 需求分析, then to 输单."""
    with transaction(gated) as session:
        opportunity = session.get_one(Opportunity, deal)
        opportunity.stage_id = stage_ids(session)["negotiation"]

    back = move(gated, org, deal, "discovery")
    lost = move(gated, org, deal, "lost", loss_reason="预算取消")

    assert (back.status, lost.status) == ("open", "lost")


def test_reopening_a_lost_deal_is_gated_from_the_start(
    gated: sessionmaker[Session], org: Org, deal: int
) -> None:
    """A lost deal moved to 方案确认 must meet 方案确认's conditions again."""
    move(gated, org, deal, "lost", loss_reason="预算取消")

    refused = refusal(gated, org, deal, "solution")

    assert refused.details["reasons"] == [AMOUNT, NO_MEETING, NO_PRICE_TALK]


# The gate file ----------------------------------------------------------------


def test_a_bad_gate_file_is_refused_naming_file_stage_and_field(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Installing a file with a bad condition fails with a clear InvalidInput."""
    path = tmp_path / "gates.yaml"
    path.write_text(
        "pipeline: standard\n"
        "stages:\n"
        "  solution:\n"
        "    conditions:\n"
        "      - field: customer_pain_points\n"
        "        filled: true\n"
        "      - field: amount\n"
        "        at_least: 很多\n",
        encoding="utf-8",
    )

    with pytest.raises(InvalidInput) as refused:
        install_stage_gates(sessions, path)

    assert refused.value.code == "invalid_stage_gates"
    assert refused.value.message == (
        f"stage gate file {path}: stage solution, condition 2, at_least: "
        "Input should be a valid decimal"
    )


def test_a_stage_the_pipeline_lacks_refuses_forward_moves(
    sessions: sessionmaker[Session], org: Org, deal: int, tmp_path: Path
) -> None:
    """A gate on an unknown stage key is named when a forward move is judged."""
    path = tmp_path / "gates.yaml"
    path.write_text(
        "pipeline: standard\nstages:\n  proposal:\n    conditions:\n"
        "      - {field: amount, at_least: 1}\n",
        encoding="utf-8",
    )
    install_stage_gates(sessions, path)

    refused = refusal(sessions, org, deal, "discovery")

    assert refused.message == (
        "stage gates of pipeline standard: stage 'proposal' cannot be gated; "
        "expected one of lead, discovery, solution, negotiation, contract, won"
    )


def test_a_changed_gate_file_takes_effect_without_restart(
    sessions: sessionmaker[Session], org: Org, deal: int, tmp_path: Path
) -> None:
    """Editing the file lifts the gate on the next move, with no new install."""
    path = tmp_path / "gates.yaml"
    gate = "pipeline: standard\nstages:\n  discovery:\n    conditions:\n"
    path.write_text(gate + "      - {field: amount, at_least: 1}\n", encoding="utf-8")
    install_stage_gates(sessions, path)
    refused = refusal(sessions, org, deal, "discovery")

    path.write_text(gate + "      - {field: amount, at_least: 0}\n", encoding="utf-8")
    edited = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(edited, edited))
    moved = move(sessions, org, deal, "discovery")

    assert refused.details["reasons"] == [AMOUNT]
    assert moved.stage_id == stage_id_of(sessions, "discovery")


def test_settings_default_to_the_shipped_gate_file(tmp_path: Path) -> None:
    """Without WAGGLE_STAGE_GATES_FILE the shipped file applies; ``none`` turns off."""
    base = {"WAGGLE_DATA_DIR": str(tmp_path), "WAGGLE_SECRET_KEY": "s"}

    default = load_settings(base).stage_gates_file
    chosen = load_settings({**base, "WAGGLE_STAGE_GATES_FILE": "/etc/g.yaml"})
    off = load_settings({**base, "WAGGLE_STAGE_GATES_FILE": "none"})

    assert default is not None and default.resolve() == SHIPPED_GATES_FILE.resolve()
    assert chosen.stage_gates_file == Path("/etc/g.yaml")
    assert off.stage_gates_file is None


def test_updating_fields_and_stage_together_is_judged_on_the_new_values(
    gated: sessionmaker[Session], org: Org, deal: int, trackers: TrackerEngine
) -> None:
    """A PATCH that sets the amount and the stage at once passes on that amount."""
    ingest(gated, trackers, event(1, "meeting_held"), chat(2, "你们能不能报个价？"))

    with transaction(gated) as session:
        updated = update_record(
            session,
            org.actors["rep_a1"],
            OPPORTUNITIES,
            deal,
            {"amount": "300000", "stage_id": stage_ids(session)["solution"]},
        )

    assert updated.status == "open"
    assert updated.stage_id == stage_id_of(gated, "solution")
