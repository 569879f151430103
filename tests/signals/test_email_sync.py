"""An e-mail source end to end: a real IMAP mailbox synced into matched events."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.factories import add_account
from tests.signals.test_imap import append, create
from waggle.core.db import transaction
from waggle.crm.service import CONTACTS
from waggle.governance.records import create_record
from waggle.identity.models import Employee
from waggle.signals.jobs import sync_pull_sources
from waggle.signals.models import BehaviourEvent, SignalSource
from waggle.signals.service import create_source


def mail(number: int, sender: str, recipient: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: =?GBK?B?sai82w==?= {number}\r\n"
        f"Date: Mon, 4 Mar 2024 09:0{number}:00 +0800\r\n"
        f"Message-ID: <sync{number}@example.cn>\r\n\r\n麻烦报个价，谢谢 {number}\r\n"
    ).encode()


def test_a_mailbox_syncs_incrementally_into_matched_events(sessions, org, dovecot):
    """New mail becomes events matched to the rep and the contact; nothing twice."""
    mailbox = f"Sync{uuid.uuid4().hex[:8]}"  # the server outlives each test
    create(dovecot, mailbox)
    ops = org.actors["ops"]
    with transaction(sessions) as session:
        account_id = add_account(session, org.actors["rep_a1"], "宁波海曙贸易有限公司")
        create_record(
            session,
            org.actors["rep_a1"],
            CONTACTS,
            {"account_id": account_id, "name": "陈静", "email": "chen@haishu.cn"},
        )
        create_source(
            session,
            ops,
            name="mail-li",
            connector="email",
            config={
                "internal_domains": ["acme.cn"],
                "pull": {
                    "host": dovecot.host,
                    "port": dovecot.port,
                    "username": dovecot.username,
                    "password": dovecot.password,
                    "mailboxes": [mailbox],
                    "timeout": 5,
                },
            },
        )
        rep = session.get_one(Employee, org.employees["rep_a1"])
        rep.email = "li.lei@acme.cn"
    append(dovecot, mailbox, mail(1, "chen@haishu.cn", "li.lei@acme.cn"))

    first = sync_pull_sources(sessions)
    append(dovecot, mailbox, mail(2, "li.lei@acme.cn", "chen@haishu.cn"))
    second = sync_pull_sources(sessions)
    third = sync_pull_sources(sessions)

    counts = [(r.report.received, r.report.accepted) for r in (*first, *second, *third)]
    assert counts == [(1, 1), (1, 1), (0, 0)]
    with sessions() as session:
        events = session.scalars(
            select(BehaviourEvent)
            .where(BehaviourEvent.source == "email")
            .order_by(BehaviourEvent.occurred_at)
        ).all()
    assert [(e.event_type, e.speaker, e.account_id) for e in events] == [
        ("email_received", "customer", account_id),
        ("email_sent", "rep", account_id),
    ]
    assert events[0].attributes["subject"] == "报价 1"
    assert {e.actor_id for e in events} == {org.employees["rep_a1"]}


def test_a_failing_mailbox_records_the_error_and_backs_off(sessions, org, dovecot):
    """A wrong password is an error on the source, which then waits before retrying."""
    with transaction(sessions) as session:
        create_source(
            session,
            org.actors["ops"],
            name="mail-bad",
            connector="email",
            config={
                "internal_domains": ["acme.cn"],
                "pull": {
                    "host": dovecot.host,
                    "port": dovecot.port,
                    "username": dovecot.username,
                    "password": "wrong password",
                    "timeout": 5,
                },
            },
        )

    first = sync_pull_sources(sessions)
    again = sync_pull_sources(sessions)

    assert [result.error is not None for result in first] == [True]
    assert again == []
    with sessions() as session:
        source = session.scalars(select(SignalSource)).one()
    assert (source.error_count, source.consecutive_failures) == (1, 1)
    assert source.next_attempt_at is not None and source.last_error
