"""Signals through the API and the CLI, and the CRM's changes in the stream."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.cli import main
from waggle.core.db import transaction
from waggle.crm.models import Activity, PipelineStage
from waggle.crm.service import move_opportunity_stage
from waggle.signals.demo_feed import start_demo_feed
from waggle.signals.jobs import sync_crm_changes
from waggle.signals.models import (
    BehaviourEvent,
    IngestBatch,
    QuarantinedRecord,
    SignalSource,
)

WHEN = "2026-03-02T09:30:00+08:00"


def message(number: int, sender: str, text: str = "你好") -> dict[str, object]:
    return {
        "source": "chat",
        "source_id": f"m{number}",
        "event_type": "chat_message",
        "channel": "wecom",
        "occurred_at": WHEN,
        "sender": sender,
        "text": text,
    }


def test_push_reconciles_and_keeps_bad_records_for_replay(client, org):
    """A push answers with reconciled counts; the bad record is in quarantine."""
    body = {"records": [message(1, "employee:E-rep_a1"), {"source": "chat"}, "垃圾"]}

    pushed = client.post(
        "/api/v1/signals/generic/records", json=body, headers=org.headers("ops")
    )
    listed = client.get("/api/v1/signals/quarantine", headers=org.headers("ops"))

    assert pushed.status_code == 200
    assert {k: pushed.json()[k] for k in ("received", "accepted", "quarantined")} == {
        "received": 3,
        "accepted": 1,
        "quarantined": 2,
    }
    assert [entry["reason"] for entry in listed.json()] == [
        "push item 2: missing source_id, event_type, occurred_at",
        "push item 3: not JSON (Expecting value)",
    ]
    raw = client.get(
        f"/api/v1/signals/quarantine/{listed.json()[1]['id']}/raw",
        headers=org.headers("ops"),
    )
    assert raw.content == "垃圾".encode()


def test_replay_with_a_corrected_setting_over_the_api(client, org):
    """Records without a source pass when the replay supplies a default one."""
    record = message(5, "employee:E-rep_a1")
    del record["source"]
    client.post(
        "/api/v1/signals/generic/records",
        json={"records": [record]},
        headers=org.headers("ops"),
    )

    replayed = client.post(
        "/api/v1/signals/quarantine/replay",
        json={"config": {"source": "chat"}},
        headers=org.headers("ops"),
    )
    still_open = client.get("/api/v1/signals/quarantine", headers=org.headers("ops"))

    assert [(r["accepted"], r["quarantined"]) for r in replayed.json()] == [(1, 0)]
    assert still_open.json() == []


def test_a_rep_sees_only_own_events(client, org):
    """Event lists follow the row policy: a rep sees the events they acted in."""
    records = [message(1, "employee:E-rep_a1"), message(2, "employee:E-rep_a2")]
    client.post(
        "/api/v1/signals/generic/records",
        json={"records": records},
        headers=org.headers("ops"),
    )

    own = client.get("/api/v1/signals/events", headers=org.headers("rep_a1"))
    team = client.get("/api/v1/signals/events", headers=org.headers("manager_a"))

    assert [item["source_id"] for item in own.json()["items"]] == ["m1"]
    assert sorted(item["source_id"] for item in team.json()["items"]) == ["m1", "m2"]


def test_a_rep_may_not_push_or_read_the_quarantine(client, org):
    """Pushing and the quarantine are for sales ops and IT, not reps."""
    pushed = client.post(
        "/api/v1/signals/generic/records",
        json={"records": [message(1, "employee:E-rep_a1")]},
        headers=org.headers("rep_a1"),
    )
    listed = client.get("/api/v1/signals/quarantine", headers=org.headers("rep_a1"))

    assert (pushed.status_code, listed.status_code) == (403, 403)
    assert pushed.json()["error"]["code"] == "policy_denied"


def test_a_new_link_matches_waiting_events_right_away(client, org):
    """Posting an identity link rematches the events that waited for it."""
    client.post(
        "/api/v1/signals/generic/records",
        json={"records": [message(1, "wecom:lisi")]},
        headers=org.headers("ops"),
    )

    created = client.post(
        "/api/v1/signals/links",
        json={
            "platform": "wecom",
            "external_id": "lisi",
            "employee_id": org.employees["rep_b1"],
        },
        headers=org.headers("ops"),
    )
    events = client.get("/api/v1/signals/events", headers=org.headers("ops")).json()

    assert created.status_code == 201
    assert [(e["actor_id"], e["match_status"]) for e in events["items"]] == [
        (org.employees["rep_b1"], "partial")
    ]


def test_a_link_must_name_exactly_one_person(client, org):
    """A person link naming no one is refused with the field named."""
    response = client.post(
        "/api/v1/signals/links",
        json={"platform": "wecom", "external_id": "nobody"},
        headers=org.headers("ops"),
    )

    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "a wecom link names exactly one of employee_id or contact_id"
    )


def test_status_reports_received_and_open_quarantine(client, org):
    """The sync status counts what each connector received and still holds."""
    client.post(
        "/api/v1/signals/generic/records",
        json={"records": [message(1, "employee:E-rep_a1"), "{"]},
        headers=org.headers("ops"),
    )

    status = client.get("/api/v1/signals/status", headers=org.headers("ops")).json()

    assert [(s["connector"], s["received"], s["quarantined_open"]) for s in status] == [
        ("generic", 2, 1)
    ]
    assert status[0]["lag_seconds"] is not None


@pytest.fixture
def cli_org(monkeypatch, database_url, tmp_path, sessions) -> Org:
    """The org, with the CLI pointed at the same database."""
    from tests.factories import build_org

    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    return build_org(sessions)


def test_cli_ingest_prints_reconciled_counts_and_reruns_as_duplicates(
    cli_org, tmp_path: Path, capsys
):
    """`waggle signals ingest` twice: first accepted, then all duplicates."""
    lines = [
        json.dumps(message(n, "employee:E-rep_a1"), ensure_ascii=False) for n in (1, 2)
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join([*lines, "{broken"]) + "\n", encoding="utf-8")

    main(["signals", "ingest", "generic", str(path)])
    first = capsys.readouterr().out
    main(["signals", "ingest", "generic", str(path)])
    second = capsys.readouterr().out

    assert "received 3 = accepted 2 + quarantined 1 + duplicates 0" in first
    assert "received 3 = accepted 0 + quarantined 0 + duplicates 3" in second


def test_cli_replay_reports_what_still_fails(cli_org, sessions, tmp_path: Path, capsys):
    """A replay without a fix leaves the record quarantined, attempts counted."""
    path = tmp_path / "bad.jsonl"
    path.write_text("{broken\n", encoding="utf-8")
    main(["signals", "ingest", "generic", str(path)])
    capsys.readouterr()

    main(["signals", "replay"])
    replayed = capsys.readouterr().out
    main(["signals", "quarantine"])
    listed = capsys.readouterr().out

    assert "received 1 = accepted 0 + quarantined 1 + duplicates 0" in replayed
    with sessions() as session:
        entry = session.scalars(select(QuarantinedRecord)).one()
    assert (entry.status, entry.attempts, entry.reason_code) == (
        "open",
        2,
        "malformed_payload",
    )
    assert "malformed_payload" in listed


def test_stage_changes_and_logged_activities_enter_the_stream(
    sessions: sessionmaker[Session], org: Org, fixed_clock
):
    """The crm source turns a stage move and a logged call into events."""
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(session, rep, "杭州云帆科技有限公司")
        opportunity_id = add_opportunity(session, rep, account_id, "云帆一期")
        stage = session.scalars(
            select(PipelineStage).where(PipelineStage.key == "discovery")
        ).one()
        move_opportunity_stage(session, rep, opportunity_id, stage_id=stage.id)
        session.add(
            Activity(
                kind="call",
                subject="电话沟通需求",
                account_id=account_id,
                opportunity_id=opportunity_id,
                owner_id=org.employees["rep_a1"],
                occurred_at=fixed_clock.current,
            )
        )

    first = sync_crm_changes(sessions)
    again = sync_crm_changes(sessions)

    with sessions() as session:
        events = session.scalars(
            select(BehaviourEvent).order_by(BehaviourEvent.id)
        ).all()
        source = session.scalars(select(SignalSource)).one()
    assert [(e.event_type, e.is_automatic, e.opportunity_id) for e in events] == [
        ("stage_change", True, opportunity_id),
        ("activity_logged", False, opportunity_id),
    ]
    assert events[0].attributes["to_stage"] == "discovery"
    assert first.report is not None and first.report.accepted == 2
    assert again.report is not None and again.report.received == 0
    assert json.loads(source.cursor or "{}")["activity"] >= 1
    assert events[1].channel == "phone"
    assert events[1].occurred_at == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_the_demo_stream_is_ingested_with_matched_chinese_chats(
    monkeypatch, database_url, tmp_path, capsys, sessions
):
    """`waggle signals demo` stores a reconciled, matched slice of the stream."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    main(["demo", "--scale", "0.01", "--seed", "5", "--if-empty"])
    capsys.readouterr()

    main(["signals", "demo", "--events", "300"])
    printed = capsys.readouterr().out

    assert "received 300 = accepted 300 + quarantined 0 + duplicates 0" in printed
    with sessions() as session:
        chats = session.scalars(
            select(BehaviourEvent).where(BehaviourEvent.event_type == "chat_message")
        ).all()
    assert chats
    assert all(chat.opportunity_id is not None for chat in chats)
    assert all(chat.actor_id is not None for chat in chats)
    assert any("\u4e00" <= ch <= "\u9fff" for chat in chats for ch in chat.text or "")


def test_the_background_demo_feed_runs_once(
    monkeypatch, database_url, tmp_path, capsys, sessions
):
    """Serving with the demo feed ingests the stream once; a restart skips it."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    main(["demo", "--scale", "0.005", "--seed", "5", "--if-empty"])

    thread = start_demo_feed(sessions)
    assert thread is not None
    thread.join(timeout=300)
    again = start_demo_feed(sessions)

    assert again is None
    with sessions() as session:
        batch = session.scalars(select(IngestBatch)).one()
    assert batch.status == "completed"
    assert batch.received == batch.accepted > 1000
