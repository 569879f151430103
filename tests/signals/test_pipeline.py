"""The ingestion pipeline: reconciliation, idempotency, quarantine, matching."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.core.errors import PolicyDenied
from waggle.crm.models import Opportunity
from waggle.crm.service import CONTACTS
from waggle.governance.models import AuditEntry
from waggle.governance.records import create_record
from waggle.signals.connectors.generic import GenericEventConnector
from waggle.signals.events import RawRecord
from waggle.signals.ingest import Pipeline, ingest_batch, replay_quarantined
from waggle.signals.models import (
    BehaviourEvent,
    IngestBatch,
    QuarantinedRecord,
    QuarantineStatus,
)
from waggle.signals.models import RawRecord as RawRow
from waggle.signals.service import create_link, rematch_events
from waggle.signals.trackers import default_engine

OPERATOR = system_actor("test-ingest")
START = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)


@dataclass
class Deal:
    account_id: int
    contact_id: int
    opportunity_id: int
    rep_id: int


@pytest.fixture
def deal(sessions: sessionmaker[Session], org: Org, fixed_clock: object) -> Deal:
    """One account with a contact and one open opportunity owned by rep_a1."""
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(
            session,
            rep,
            "上海星河机械有限公司",
            external_id="A-1",
            email_domain="xinghe.cn",
        )
        contact = create_record(
            session,
            rep,
            CONTACTS,
            {
                "external_id": "C-1",
                "account_id": account_id,
                "name": "王芳",
                "email": "wang.fang@xinghe.cn",
                "phone": "138 0013 8000",
            },
        )
        opportunity_id = add_opportunity(
            session, rep, account_id, "星河二期", external_id="O-1"
        )
    return Deal(account_id, contact.id, opportunity_id, org.employees["rep_a1"])


def chat(
    number: int, *, sender: str, text: str = "好的，收到", **extra: object
) -> bytes:
    body = {
        "source": "chat",
        "source_id": f"m{number}",
        "event_type": "chat_message",
        "channel": "wecom",
        "occurred_at": (START + dt.timedelta(minutes=number)).isoformat(),
        "sender": sender,
        "recipients": extra.pop("recipients", []),
        "text": text,
        **extra,
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def records(payloads: list[bytes]) -> list[RawRecord]:
    return [RawRecord(payload, f"line {n}") for n, payload in enumerate(payloads, 1)]


def pipeline(**config: object) -> Pipeline:
    return Pipeline(GenericEventConnector(config), trackers=default_engine())


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_batch_stores_matched_events_and_reconciles(sessions, deal):
    """Good records become events linked to rep, contact, account and deal."""
    batch = records(
        [
            chat(
                1, sender="employee:E-rep_a1", recipients=["email:wang.fang@xinghe.cn"]
            ),
            chat(2, sender="phone:+86 138-0013-8000", recipients=["employee:E-rep_a1"]),
        ]
    )

    report = ingest_batch(sessions, OPERATOR, pipeline(), batch)

    assert (report.received, report.accepted, report.quarantined) == (2, 2, 0)
    assert report.reconciles
    with sessions() as session:
        events = session.scalars(select(BehaviourEvent).order_by(BehaviourEvent.id))
        rows = [
            (e.actor_id, e.contact_id, e.account_id, e.opportunity_id, e.speaker)
            for e in events
        ]
    expected = (deal.rep_id, deal.contact_id, deal.account_id, deal.opportunity_id)
    assert rows == [(*expected, "rep"), (*expected, "customer")]


def test_tracker_hits_become_child_events_with_the_speaker(sessions, deal):
    """A customer's price question yields a pricing tracker hit under the chat."""
    batch = records(
        [chat(1, sender="contact:C-1", text="你们能不能报个价？", recipients=[])]
    )

    ingest_batch(sessions, OPERATOR, pipeline(), batch)

    with sessions() as session:
        hit = session.scalars(
            select(BehaviourEvent).where(BehaviourEvent.event_type == "tracker_hit")
        ).one()
        parent = session.get_one(BehaviourEvent, hit.parent_id)
    assert (hit.attributes["category"], hit.attributes["is_question"]) == (
        "pricing",
        True,
    )
    assert (hit.speaker, hit.opportunity_id) == ("customer", deal.opportunity_id)
    assert parent.attributes["trackers"][0]["category"] == "pricing"
    assert parent.text == "你们能不能报个价？"


def test_the_same_batch_twice_changes_nothing(sessions, deal):
    """Re-running a batch counts every record as a duplicate and stores nothing."""
    batch = records([chat(n, sender="employee:E-rep_a1") for n in range(1, 6)])
    ingest_batch(sessions, OPERATOR, pipeline(), batch)

    again = ingest_batch(sessions, OPERATOR, pipeline(), batch)

    assert (again.received, again.accepted, again.duplicates) == (5, 0, 5)
    with sessions() as session:
        assert count(session, BehaviourEvent) == 5
        assert count(session, RawRow) == 5


def test_an_event_resent_in_other_bytes_is_a_duplicate(sessions, deal):
    """The same source id with different bytes is recognised by its source id."""
    first = chat(1, sender="employee:E-rep_a1", text="明天见")
    resent = chat(1, sender="employee:E-rep_a1", text="明天见 (edited)")
    ingest_batch(sessions, OPERATOR, pipeline(), records([first]))

    report = ingest_batch(sessions, OPERATOR, pipeline(), records([resent]))

    assert (report.accepted, report.duplicates) == (0, 1)
    with sessions() as session:
        assert count(session, RawRow) == 1


class Killed(Exception):
    """Stands for the process dying in the middle of a batch."""


def dying_after(batch: list[RawRecord], limit: int) -> Iterator[RawRecord]:
    for number, record in enumerate(batch):
        if number == limit:
            raise Killed
        yield record


def test_a_batch_killed_half_way_and_rerun_stores_each_record_once(sessions, deal):
    """Whole chunks survive a crash; the rerun adds only what is missing."""
    batch = records([chat(n, sender="employee:E-rep_a1") for n in range(1, 26)])
    with pytest.raises(Killed):
        ingest_batch(
            sessions, OPERATOR, pipeline(), dying_after(batch, 13), chunk_size=5
        )
    with sessions() as session:
        survived = count(session, BehaviourEvent)

    rerun = ingest_batch(sessions, OPERATOR, pipeline(), batch, chunk_size=5)

    assert survived == 10
    assert (rerun.accepted, rerun.duplicates) == (15, 10)
    with sessions() as session:
        source_ids = session.scalars(select(BehaviourEvent.source_id)).all()
    assert sorted(source_ids) == sorted(f"m{n}" for n in range(1, 26))


def test_malformed_records_are_quarantined_with_reason_and_raw_kept(sessions, deal):
    """Broken JSON, a missing field and GBK bytes each wait in quarantine."""
    broken = [
        b'{"source": "chat", "source_id": ',
        json.dumps({"source": "chat", "event_type": "call"}).encode(),
        '{"text": "报价"}'.encode("gbk"),
    ]
    batch = records([chat(1, sender="employee:E-rep_a1"), *broken])

    report = ingest_batch(sessions, OPERATOR, pipeline(), batch)

    assert (report.received, report.accepted, report.quarantined) == (4, 1, 3)
    with sessions() as session:
        entries = session.scalars(
            select(QuarantinedRecord).order_by(QuarantinedRecord.id)
        ).all()
        reasons = [entry.reason for entry in entries]
        payloads = [session.get_one(RawRow, entry.raw_id).payload for entry in entries]
    assert reasons == [
        "line 2: not JSON (Expecting value)",
        "line 3: missing source_id, occurred_at",
        "line 4: not UTF-8 text",
    ]
    assert payloads == broken


def test_replay_after_a_fix_turns_quarantined_records_into_events(sessions, deal):
    """Records missing their source pass once the connector supplies a default."""
    body = json.loads(chat(7, sender="employee:E-rep_a1"))
    del body["source"]
    first = ingest_batch(
        sessions, OPERATOR, pipeline(), records([json.dumps(body).encode()])
    )

    replay = replay_quarantined(
        sessions, OPERATOR, pipeline(source="chat"), first.quarantine_ids
    )

    assert (first.quarantined, replay.accepted, replay.quarantined) == (1, 1, 0)
    assert replay.reconciles
    with sessions() as session:
        entry = session.get_one(QuarantinedRecord, first.quarantine_ids[0])
        event = session.scalars(select(BehaviourEvent)).one()
        assert count(session, RawRow) == 1
    assert entry.status == QuarantineStatus.REPLAYED
    assert event.raw_id == entry.raw_id


def test_a_second_bad_copy_is_a_duplicate_not_a_second_entry(sessions, deal):
    """The same broken bytes twice leave one quarantine entry."""
    bad = records([b"not json at all"])
    ingest_batch(sessions, OPERATOR, pipeline(), bad)

    again = ingest_batch(sessions, OPERATOR, pipeline(), bad)

    assert (again.quarantined, again.duplicates) == (0, 1)
    with sessions() as session:
        assert count(session, QuarantinedRecord) == 1


def test_unmatched_events_match_once_the_identity_link_arrives(sessions, deal, org):
    """A WeCom sender nobody knows is kept, then matched when linked."""
    batch = records(
        [chat(1, sender="wecom:zhangwei", recipients=["wecom:wmCustomer01"])]
    )
    ingest_batch(sessions, OPERATOR, pipeline(), batch)
    with sessions() as session:
        before = session.scalars(select(BehaviourEvent)).one()
        assert (before.match_status, before.actor_id) == ("unmatched", None)
        assert (
            before.match_note == "no employee among wecom:zhangwei, wecom:wmCustomer01"
        )

    with transaction(sessions) as session:
        ops = org.actors["ops"]
        create_link(
            session,
            ops,
            platform="wecom",
            external_id="zhangwei",
            employee_id=deal.rep_id,
        )
        create_link(
            session,
            ops,
            platform="wecom",
            external_id="wmCustomer01",
            contact_id=deal.contact_id,
        )
        result = rematch_events(session, ops)

    assert (result.examined, result.improved, result.still_unmatched) == (1, 1, 0)
    with sessions() as session:
        after = session.scalars(select(BehaviourEvent)).one()
    assert (after.actor_id, after.contact_id, after.opportunity_id) == (
        deal.rep_id,
        deal.contact_id,
        deal.opportunity_id,
    )
    assert (after.match_status, after.match_note, after.speaker) == (
        "matched",
        None,
        "rep",
    )


def test_two_open_opportunities_leave_the_deal_unset_with_a_note(sessions, deal, org):
    """When the account has two open deals of another owner, none is guessed."""
    with transaction(sessions) as session:
        add_opportunity(session, org.actors["rep_a1"], deal.account_id, "三期")
    batch = records([chat(1, sender="employee:E-rep_b1", recipients=["contact:C-1"])])

    ingest_batch(sessions, OPERATOR, pipeline(), batch)

    with sessions() as session:
        event = session.scalars(select(BehaviourEvent)).one()
    assert (event.account_id, event.opportunity_id) == (deal.account_id, None)
    assert event.match_note == "the account had 2 open opportunities at the time"


def test_the_owners_deal_is_chosen_among_several_open_ones(sessions, deal, org):
    """Of two open deals, the one the acting rep owns is the event's."""
    with transaction(sessions) as session:
        # Imported history may hold open deals of two owners on one account.
        first = session.get_one(Opportunity, deal.opportunity_id)
        session.add(
            Opportunity(
                external_id="O-2",
                name="三期",
                account_id=deal.account_id,
                pipeline_id=first.pipeline_id,
                stage_id=first.stage_id,
                owner_id=org.employees["rep_a2"],
            )
        )
    batch = records([chat(1, sender="employee:E-rep_a1", recipients=["contact:C-1"])])

    ingest_batch(sessions, OPERATOR, pipeline(), batch)

    with sessions() as session:
        event = session.scalars(select(BehaviourEvent)).one()
    assert event.opportunity_id == deal.opportunity_id


def test_each_chunk_leaves_one_audit_row(sessions, deal):
    """Ingestion is audited once per committed chunk with its counts."""
    batch = records([chat(n, sender="employee:E-rep_a1") for n in range(1, 8)])

    report = ingest_batch(sessions, OPERATOR, pipeline(), batch, chunk_size=4)

    with sessions() as session:
        rows = session.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "import",
                AuditEntry.resource == "behaviour_events",
            )
        ).all()
    assert rows == [
        "received 4: accepted 4, quarantined 0, duplicates 0; events stored 4",
        "received 3: accepted 3, quarantined 0, duplicates 0; events stored 3",
    ]
    with sessions() as session:
        stored = session.get_one(IngestBatch, report.batch_id)
    assert (stored.received, stored.accepted, stored.status) == (7, 7, "completed")


def test_a_rep_may_not_ingest(sessions, org):
    """Running connectors is reserved to sales ops and IT administrators."""
    with pytest.raises(PolicyDenied):
        ingest_batch(sessions, org.actors["rep_a1"], pipeline(), [])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payloads=st.lists(st.binary(max_size=80), max_size=8))
def test_any_bytes_are_accepted_or_quarantined_never_lost(sessions, payloads):
    """Whatever bytes arrive, each is accounted for and kept (bar duplicates)."""
    with transaction(sessions) as session:
        held_before = count(session, RawRow)

    report = ingest_batch(sessions, OPERATOR, pipeline(), records(payloads))

    assert report.received == len(payloads)
    assert report.reconciles
    with sessions() as session:
        held_after = count(session, RawRow)
    assert held_after - held_before == report.accepted + report.quarantined
