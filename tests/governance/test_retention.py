"""Retention rules: read-only after a departure, content removal, tombstones."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account
from waggle.app import periodic_jobs
from waggle.cli import main
from waggle.core.actor import Actor
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.core.settings import Settings
from waggle.crm.service import ACCOUNTS
from waggle.governance.audit import verify_audit_chain
from waggle.governance.models import AuditEntry, RetentionTombstone
from waggle.governance.records import delete_record, update_record
from waggle.governance.retention import (
    apply_retention,
    load_retention_rules,
    parse_retention_rules,
)
from waggle.identity.models import Employee
from waggle.signals.models import BehaviourEvent, RawRecord

SWEEPER = Actor(user_id=None, username="sweeper", roles=frozenset({"it_admin"}))
OPS_ADMIN = Actor(
    user_id=None, username="ops-admin", roles=frozenset({"sales_ops", "it_admin"})
)


def _depart(sessions: sessionmaker[Session], employee_id: int, on: dt.date) -> None:
    with transaction(sessions) as session:
        employee = session.get(Employee, employee_id)
        assert employee is not None
        employee.status, employee.departed_on = "departed", on


def _account_of_departed_rep(
    sessions: sessionmaker[Session], org: Org, *, days_ago: int, today: dt.date
) -> int:
    with transaction(sessions) as session:
        account_id = add_account(session, org.actors["rep_a1"], "华东精密仪器有限公司")
    _depart(sessions, org.employees["rep_a1"], today - dt.timedelta(days=days_ago))
    return account_id


def test_a_departed_reps_account_is_writable_on_day_89_and_read_only_on_day_90(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """Updates pass 89 days after the owner left and are refused from day 90."""
    today = fixed_clock().date()
    account_id = _account_of_departed_rep(sessions, org, days_ago=89, today=today)
    with transaction(sessions) as session:
        update_record(
            session, org.actors["ops"], ACCOUNTS, account_id, {"city": "苏州"}
        )

    fixed_clock.advance(days=1)
    with (
        transaction(sessions) as session,
        pytest.raises(PolicyDenied) as refused,
    ):
        update_record(
            session, org.actors["ops"], ACCOUNTS, account_id, {"city": "无锡"}
        )

    left_on = (today - dt.timedelta(days=89)).isoformat()
    assert refused.value.message == (
        f"account {account_id} is read-only: its owner left on {left_on}"
        " (retention rule departed-owner-90d)"
    )
    assert refused.value.code == "retention_read_only"
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.detail == "city")
            )
            == 1
        )


def test_delete_of_a_read_only_account_is_refused_but_it_admin_may_change_it(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """A manager may not delete the frozen account; a user holding it_admin may edit."""
    account_id = _account_of_departed_rep(
        sessions, org, days_ago=90, today=fixed_clock().date()
    )

    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        delete_record(session, org.actors["manager_a"], ACCOUNTS, account_id)
    with transaction(sessions) as session:
        changed = update_record(
            session, OPS_ADMIN, ACCOUNTS, account_id, {"owner_id": None}
        )

    assert changed.owner_id is None


def _event(
    session: Session,
    *,
    source_id: str,
    event_type: str,
    occurred_at: dt.datetime,
    text: str | None,
    attributes: dict[str, object],
    raw: RawRecord | None = None,
) -> int:
    event = BehaviourEvent(
        source="wecom",
        source_id=source_id,
        event_type=event_type,
        channel="wecom",
        occurred_at=occurred_at,
        text=text,
        attributes=attributes,
        match_status="unmatched",
        raw_id=raw.id if raw is not None else None,
    )
    session.add(event)
    session.flush()
    return event.id


def _raw(session: Session, digest: str, payload: bytes) -> RawRecord:
    raw = RawRecord(connector="wecom", digest=digest, payload=payload)
    session.add(raw)
    session.flush()
    return raw


def _signals(sessions: sessionmaker[Session], now: dt.datetime) -> dict[str, int]:
    """Old chat (with raw), old email, recent chat, old meeting minutes."""
    old, recent = now - dt.timedelta(days=3 * 366), now - dt.timedelta(days=30)
    ids: dict[str, int] = {}
    with transaction(sessions) as session:
        raw = _raw(session, "d1", "客户说预算三百万".encode())
        ids["raw"] = raw.id
        ids["old_chat"] = _event(
            session,
            source_id="m1",
            event_type="chat_message",
            occurred_at=old,
            text="客户说预算三百万",
            attributes={"msgtype": "text", "file_name": "报价.pdf"},
            raw=raw,
        )
        ids["old_email"] = _event(
            session,
            source_id="m2",
            event_type="email_received",
            occurred_at=old,
            text="请查收合同",
            attributes={"subject": "合同", "is_reply": True},
        )
        ids["recent_chat"] = _event(
            session,
            source_id="m3",
            event_type="chat_message",
            occurred_at=recent,
            text="下周拜访",
            attributes={"msgtype": "text"},
        )
        ids["old_minutes"] = _event(
            session,
            source_id="m4",
            event_type="meeting_minutes",
            occurred_at=old,
            text="会议纪要",
            attributes={"title": "季度复盘"},
        )
    return ids


def test_the_sweep_removes_old_chat_and_email_content_and_keeps_the_events(
    sessions: sessionmaker[Session], fixed_clock: FixedClock
) -> None:
    """Events older than three years lose text, raw bytes and content attributes."""
    ids = _signals(sessions, fixed_clock())

    with transaction(sessions) as session:
        report = apply_retention(session, SWEEPER)

    with sessions() as session:
        chat = session.get(BehaviourEvent, ids["old_chat"])
        email = session.get(BehaviourEvent, ids["old_email"])
        raw = session.get(RawRecord, ids["raw"])
        untouched = [
            session.get(BehaviourEvent, ids[name])
            for name in ("recent_chat", "old_minutes")
        ]
        assert chat is not None and email is not None and raw is not None
        assert (chat.text, chat.attributes) == (None, {"msgtype": "text"})
        assert chat.event_type == "chat_message"
        assert chat.occurred_at == fixed_clock() - dt.timedelta(days=3 * 366)
        assert (email.text, email.attributes) == (None, {"is_reply": True})
        assert raw.payload == b'{"removed_by_retention": true}'
        assert [(e.text if e else None) for e in untouched] == ["下周拜访", "会议纪要"]
    assert [(o.rule_id, o.counts) for o in report.outcomes] == [
        ("departed-owner-90d", {}),
        ("chat-content-3y", {"behaviour_events": 2, "signal_raw_records": 1}),
    ]


def test_the_sweep_leaves_tombstones_and_audit_rows_and_the_chain_verifies(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """Each batch leaves a retention audit row naming fields, never the content."""
    ids = _signals(sessions, fixed_clock())
    account_id = _account_of_departed_rep(
        sessions, org, days_ago=120, today=fixed_clock().date()
    )

    with transaction(sessions) as session:
        apply_retention(session, SWEEPER)
    with transaction(sessions) as session:
        chain = verify_audit_chain(session, org.actors["auditor"], keys=[])

    with sessions() as session:
        rows = session.execute(
            select(AuditEntry.resource, AuditEntry.record_ids, AuditEntry.detail)
            .where(AuditEntry.action == "retention")
            .order_by(AuditEntry.seq)
        ).all()
        tombstones = session.execute(
            select(
                RetentionTombstone.resource,
                RetentionTombstone.record_id,
                RetentionTombstone.removed,
            ).order_by(RetentionTombstone.id)
        ).all()
    left = (fixed_clock().date() - dt.timedelta(days=90)).isoformat()
    cutoff = dt.date(2023, 3, 2)  # three years before the fixed clock
    assert [tuple(row) for row in rows] == [
        (
            "accounts",
            [str(account_id)],
            f"rule departed-owner-90d: read-only for all but it_admin:"
            f" owners left on or before {left}",
        ),
        (
            "behaviour_events",
            [str(ids["old_chat"]), str(ids["old_email"])],
            f"rule chat-content-3y: content of events before {cutoff.isoformat()}"
            " removed (attributes.file_name, attributes.subject, raw_payload, text)",
        ),
        (
            "signal_raw_records",
            [str(ids["raw"])],
            "rule chat-content-3y: raw payload replaced by a removal marker",
        ),
    ]
    assert [tuple(row) for row in tombstones] == [
        ("accounts", account_id, []),
        (
            "behaviour_events",
            ids["old_chat"],
            ["text", "attributes.file_name", "raw_payload"],
        ),
        ("behaviour_events", ids["old_email"], ["text", "attributes.subject"]),
        ("signal_raw_records", ids["raw"], ["payload"]),
    ]
    assert chain.problem is None
    assert "三百万" not in json.dumps([tuple(r) for r in rows], ensure_ascii=False)


def test_a_second_sweep_changes_nothing(
    sessions: sessionmaker[Session], org: Org, fixed_clock: FixedClock
) -> None:
    """Running the sweep again touches no record and writes no audit row."""
    _signals(sessions, fixed_clock())
    _account_of_departed_rep(sessions, org, days_ago=90, today=fixed_clock().date())
    with transaction(sessions) as session:
        apply_retention(session, SWEEPER)
    with sessions() as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry))

    with transaction(sessions) as session:
        again = apply_retention(session, SWEEPER)

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == entries
    assert again.total() == 0


def test_a_dry_run_counts_and_changes_nothing(
    sessions: sessionmaker[Session], fixed_clock: FixedClock
) -> None:
    """A dry run reports what it would do and leaves rows and the audit log alone."""
    ids = _signals(sessions, fixed_clock())
    with sessions() as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry))

    with transaction(sessions) as session:
        report = apply_retention(session, SWEEPER, dry_run=True)

    with sessions() as session:
        chat = session.get(BehaviourEvent, ids["old_chat"])
        assert chat is not None and chat.text == "客户说预算三百万"
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == entries
        assert session.scalar(select(func.count()).select_from(RetentionTombstone)) == 0
    assert report.outcomes[1].counts == {"behaviour_events": 2, "signal_raw_records": 1}


def test_a_raw_record_still_needed_by_a_recent_event_is_kept(
    sessions: sessionmaker[Session], fixed_clock: FixedClock
) -> None:
    """The raw bytes stay while any event made from them is within retention."""
    current = fixed_clock()
    with transaction(sessions) as session:
        raw = _raw(session, "shared", b"archive")
        old = _event(
            session,
            source_id="a",
            event_type="chat_message",
            occurred_at=current - dt.timedelta(days=1200),
            text="旧消息",
            attributes={},
            raw=raw,
        )
        _event(
            session,
            source_id="b",
            event_type="chat_message",
            occurred_at=current - dt.timedelta(days=10),
            text="新消息",
            attributes={},
            raw=raw,
        )
        raw_id = raw.id

    with transaction(sessions) as session:
        report = apply_retention(session, SWEEPER)

    with sessions() as session:
        kept = session.get(RawRecord, raw_id)
        event = session.get(BehaviourEvent, old)
        assert kept is not None and kept.payload == b"archive"
        assert event is not None and event.text is None
    assert report.outcomes[1].counts == {"behaviour_events": 1}


def test_applying_retention_needs_the_it_admin_role(
    sessions: sessionmaker[Session], org: Org
) -> None:
    """Compliance may dry-run the rules but not apply them."""
    with transaction(sessions) as session:
        apply_retention(session, org.actors["compliance"], dry_run=True)

    with transaction(sessions) as session, pytest.raises(PolicyDenied) as refused:
        apply_retention(session, org.actors["compliance"])

    assert refused.value.message == "compliance may not update retention"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"rules": [{"id": "x", "kind": "delete_after", "event_types": ["chat"]}]},
            "retention file bad.yaml: rules[0].years: Field required",
        ),
        (
            {"rules": [{"id": "y", "kind": "read_only_after_departure", "days": 0}]},
            "retention file bad.yaml: rules[0].days: Input should be greater than 0",
        ),
        (
            {
                "rules": [
                    {
                        "id": "z",
                        "kind": "read_only_after_departure",
                        "days": 9,
                        "exempt_roles": ["king"],
                    }
                ]
            },
            "retention file bad.yaml: rules[0].exempt_roles:"
            " Value error, unknown roles ['king']",
        ),
        (
            {"rules": [{"id": "w", "kind": "forget"}]},
            "retention file bad.yaml: rules[0]: Input tag 'forget' found using 'kind'"
            " does not match any of the expected tags:"
            " 'read_only_after_departure', 'delete_after'",
        ),
        ({"rule": []}, "retention file bad.yaml: rule: Extra inputs are not permitted"),
        (
            {
                "rules": [
                    {
                        "id": "Bad Id",
                        "kind": "delete_after",
                        "years": 1,
                        "event_types": ["chat_message"],
                    }
                ]
            },
            "retention file bad.yaml: rules[0].id: Value error, expected lowercase"
            " letters, digits and '-' (at most 60), e.g. chat-3y",
        ),
    ],
)
def test_a_bad_retention_document_names_the_file_and_field(
    document: dict[str, object], message: str
) -> None:
    """Validation errors name the file, the field path and the expectation."""
    with pytest.raises(InvalidInput) as refused:
        parse_retention_rules(document, source="bad.yaml")

    assert refused.value.message == message


def test_a_retention_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    """A broken file is an invalid input naming the file."""
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [unclosed", encoding="utf-8")

    with pytest.raises(InvalidInput) as refused:
        load_retention_rules(path)

    assert refused.value.message == f"retention file {path}: not valid YAML"


def test_the_daily_sweep_is_a_registered_job(
    sessions: sessionmaker[Session], settings: Settings, fixed_clock: FixedClock
) -> None:
    """The job runner runs the retention sweep once a day."""
    ids = _signals(sessions, fixed_clock())
    runner = periodic_jobs(sessions, settings)
    job = next(job for job in runner.jobs if job.name == "retention-sweep")

    job.run(sessions)

    with sessions() as session:
        chat = session.get(BehaviourEvent, ids["old_chat"])
        assert chat is not None and chat.text is None
    assert job.interval == dt.timedelta(days=1)


def test_cli_shows_the_rules_and_dry_runs_them(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`retention show` lists the rules; `apply --dry-run` prints counts per rule."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))

    main(["governance", "retention", "show"])
    shown = capsys.readouterr().out
    main(["governance", "retention", "apply", "--dry-run"])
    applied = capsys.readouterr().out

    assert shown.splitlines()[0] == "retention rules from default_retention.yaml:"
    assert shown.splitlines()[1].startswith("  departed-owner-90d  read_only_after")
    assert applied.splitlines() == [
        "departed-owner-90d: would change nothing",
        "chat-content-3y: would change nothing",
    ]
