"""Delivery: retries with backoff, no retry of permanent errors, dedup, the log.

Each test runs on SQLite and PostgreSQL; platforms are the local fakes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.channels.fakes import FakeDingTalk, FakeSmtp, FakeWeCom, Fault, serving
from tests.factories import Org
from waggle.channels import (
    ChannelSettingsInvalid,
    Delivery,
    Message,
    Notification,
    RetryPolicy,
    deliver,
    list_deliveries,
    read_channel_settings,
    save_channel_settings,
)
from waggle.core.actor import system_actor
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.core.errors import PolicyDenied
from waggle.governance.models import AuditEntry
from waggle.identity import Employee

RULES = system_actor("rules")


@pytest.fixture
def dingtalk(fixed_clock: FixedClock) -> Iterator[FakeDingTalk]:
    with serving(FakeDingTalk()) as fake:
        yield fake


def robot_settings(fake: FakeDingTalk, **extra: object) -> dict[str, object]:
    return {
        "access_token": fake.access_token,
        "secret": fake.secret,
        "base_url": fake.base_url,
        **extra,
    }


def note(**values: object) -> Message:
    fields: dict[str, object] = {
        "title": "商机停滞",
        "body": "华东电力扩容项目 14 天无进展。",
        "employee_id": None,
        "address": "group",
        "dedup_key": "rule-7:opportunity-42:2026-03-02",
        "source": "rule-7",
    }
    fields.update(values)
    return Message(**fields)  # type: ignore[arg-type]


class Sleeps:
    """Records the pauses the service asks for instead of sleeping."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def deliveries(sessions: sessionmaker[Session]) -> list[tuple[object, ...]]:
    with sessions() as session:
        rows = session.scalars(select(Delivery).order_by(Delivery.id))
        return [
            (row.channel, row.status, row.attempts, row.error_code, row.source)
            for row in rows
        ]


def test_transient_failures_are_retried_with_backoff_then_sent(sessions, dingtalk):
    """Two 503s, then success: three attempts, pauses of 1 s and 2 s, one sent row."""
    dingtalk.fail_next(Fault(status=503), Fault(status=503))
    sleeps = Sleeps()

    outcome = deliver(
        sessions,
        RULES,
        note(),
        channel="dingtalk_robot",
        settings=robot_settings(dingtalk),
        sleep=sleeps,
    )

    assert (outcome.status, outcome.attempts, outcome.is_sent) == ("sent", 3, True)
    assert sleeps.pauses == [1.0, 2.0]
    assert len(dingtalk.sent) == 1
    assert deliveries(sessions) == [("dingtalk_robot", "sent", 3, None, "rule-7")]


def test_a_timeout_is_retried(sessions, dingtalk):
    """An answer slower than the timeout counts as transient; the retry succeeds."""
    dingtalk.fail_next(Fault(delay_seconds=0.5))
    sleeps = Sleeps()

    outcome = deliver(
        sessions,
        RULES,
        note(),
        channel="dingtalk_robot",
        settings=robot_settings(dingtalk, timeout_seconds=0.1),
        sleep=sleeps,
    )

    assert (outcome.status, outcome.attempts) == ("sent", 2)
    assert sleeps.pauses == [1.0]


def test_retries_stop_at_max_attempts_and_the_failure_is_logged(sessions, dingtalk):
    """Always 502: the delivery fails after max_attempts with the HTTP code logged."""
    dingtalk.fail_next(*[Fault(status=502)] * 4)
    sleeps = Sleeps()

    outcome = deliver(
        sessions,
        RULES,
        note(),
        channel="dingtalk_robot",
        settings=robot_settings(dingtalk),
        retry=RetryPolicy(
            max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=1.5
        ),
        sleep=sleeps,
    )

    assert (outcome.status, outcome.attempts, outcome.error_code) == (
        "failed",
        4,
        "http_502",
    )
    assert sleeps.pauses == [0.5, 1.0, 1.5]
    assert deliveries(sessions) == [
        ("dingtalk_robot", "failed", 4, "http_502", "rule-7")
    ]


def test_a_permanent_error_is_not_retried(sessions, dingtalk):
    """A wrong signature (310000) fails at once, with no pause and the code logged."""
    sleeps = Sleeps()
    settings = robot_settings(dingtalk, secret="SECwrong")

    outcome = deliver(
        sessions,
        RULES,
        note(),
        channel="dingtalk_robot",
        settings=settings,
        sleep=sleeps,
    )

    assert (outcome.status, outcome.attempts, outcome.error_code) == (
        "failed",
        1,
        "310000",
    )
    assert sleeps.pauses == []
    assert len(dingtalk.requests) == 1


def test_same_dedup_key_is_sent_once_and_returns_the_earlier_receipt(sessions):
    """The second delivery with the key sends nothing and returns the first receipt."""
    with serving(FakeWeCom()) as wecom:
        settings = {
            "corp_id": wecom.corp_id,
            "corp_secret": wecom.corp_secret,
            "agent_id": wecom.agent_id,
            "base_url": wecom.base_url,
        }
        message = note(address="zhangsan")

        first = deliver(
            sessions, RULES, message, channel="wecom_app", settings=settings
        )
        second = deliver(
            sessions, RULES, message, channel="wecom_app", settings=settings
        )

    assert len(wecom.sent) == 1
    assert (first.platform_message_id, first.is_duplicate) == ("msgid-1", False)
    assert (second.delivery_id, second.platform_message_id, second.is_duplicate) == (
        first.delivery_id,
        "msgid-1",
        True,
    )
    assert deliveries(sessions) == [("wecom_app", "sent", 1, None, "rule-7")]


def test_same_dedup_key_on_another_channel_is_sent_again(sessions, dingtalk):
    """Dedup is per channel: the inbox still gets a notification the robot sent."""
    employee = _employee(sessions)
    message = note(employee_id=employee)

    deliver(
        sessions,
        RULES,
        message,
        channel="dingtalk_robot",
        settings=robot_settings(dingtalk),
    )
    inbox = deliver(sessions, RULES, message, channel="inbox")

    assert (inbox.status, inbox.is_duplicate) == ("sent", False)
    assert [row[:2] for row in deliveries(sessions)] == [
        ("dingtalk_robot", "sent"),
        ("inbox", "sent"),
    ]


def test_a_failed_delivery_is_tried_again_under_the_same_key(sessions, dingtalk):
    """After a failure the same key may be delivered; attempts add up on one row."""
    dingtalk.answer_next({"errcode": 300001, "errmsg": "token is not exist"})
    settings = robot_settings(dingtalk)

    failed = deliver(
        sessions, RULES, note(), channel="dingtalk_robot", settings=settings
    )
    retried = deliver(
        sessions, RULES, note(), channel="dingtalk_robot", settings=settings
    )

    assert (failed.status, retried.status) == ("failed", "sent")
    assert retried.delivery_id == failed.delivery_id
    assert deliveries(sessions) == [("dingtalk_robot", "sent", 2, None, "rule-7")]


def test_messages_without_dedup_key_are_each_sent(sessions, dingtalk):
    """No dedup key, no dedup: two deliveries, two rows."""
    settings = robot_settings(dingtalk)

    for _ in range(2):
        deliver(
            sessions,
            RULES,
            note(dedup_key=None),
            channel="dingtalk_robot",
            settings=settings,
        )

    assert len(dingtalk.sent) == 2
    assert len(deliveries(sessions)) == 2


def test_delivery_leaves_an_audit_row(sessions, dingtalk):
    """Each outcome is audited as create on notifications with channel and status."""
    outcome = deliver(
        sessions,
        RULES,
        note(),
        channel="dingtalk_robot",
        settings=robot_settings(dingtalk),
    )

    with sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.resource == "notifications")
        ).all()
    assert [(e.action, e.record_ids, e.result, e.detail) for e in entries] == [
        ("create", [str(outcome.delivery_id)], "ok", "dingtalk_robot sent attempts=1")
    ]


def test_a_rep_may_not_send_notifications(sessions, org: Org, dingtalk):
    """Sending is for the rules engine, IT and sales ops; a rep is refused."""
    with pytest.raises(PolicyDenied):
        deliver(
            sessions,
            org.actors["rep_a1"],
            note(),
            channel="dingtalk_robot",
            settings=robot_settings(dingtalk),
        )

    assert deliveries(sessions) == []


def test_delivery_in_the_callers_session_joins_its_transaction(sessions, org: Org):
    """Given a session, the inbox row and the log commit with the caller's work."""
    message = note(employee_id=org.employees["rep_a1"], address=None)

    with transaction(sessions) as session:
        outcome = deliver(session, RULES, message, channel="inbox")

    with sessions() as session:
        titles = session.scalars(select(Notification.title)).all()
    assert (outcome.status, titles) == ("sent", ["商机停滞"])


def test_saved_settings_are_used_and_read_back_masked(sessions, dingtalk):
    """Settings saved by sales ops drive delivery; reading them masks the secrets."""
    operator = system_actor("ops")
    with transaction(sessions) as session:
        save_channel_settings(
            session, operator, "dingtalk_robot", robot_settings(dingtalk)
        )

    outcome = deliver(sessions, RULES, note(), channel="dingtalk_robot")
    with transaction(sessions) as session:
        shown = read_channel_settings(session, operator, "dingtalk_robot")

    assert outcome.status == "sent"
    assert shown == {
        "access_token": "******",
        "secret": "******",
        "base_url": dingtalk.base_url,
    }


def test_invalid_settings_are_not_saved(sessions):
    """Saving settings that do not validate raises and stores nothing."""
    with (
        pytest.raises(ChannelSettingsInvalid),
        transaction(sessions) as session,
    ):
        save_channel_settings(session, RULES, "wecom_app", {"corp_id": "ww1"})

    with pytest.raises(ChannelSettingsInvalid) as caught:
        deliver(sessions, RULES, note(), channel="wecom_app")

    assert caught.value.message == (
        "channel wecom_app: no settings saved; pass settings or save them first"
    )


def test_email_goes_to_the_employees_address_from_the_org_chart(sessions):
    """A message naming only the employee is mailed to the employee's e-mail."""
    employee = _employee(sessions, email="li.si@sales.example.cn")
    with FakeSmtp().running() as smtp:
        settings = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "use_starttls": False,
            "from_address": "waggle@sales.example.cn",
        }

        outcome = deliver(
            sessions,
            RULES,
            note(employee_id=employee, address=None),
            channel="email",
            settings=settings,
        )

    assert outcome.recipient == "li.si@sales.example.cn"
    assert smtp.envelopes[0].rcpt_tos == ["li.si@sales.example.cn"]


def test_list_deliveries_is_for_operators(sessions, org: Org, dingtalk):
    """Sales ops read the delivery log; a rep may not."""
    deliver(
        sessions,
        RULES,
        note(),
        channel="dingtalk_robot",
        settings=robot_settings(dingtalk),
    )

    with transaction(sessions) as session:
        rows = list_deliveries(session, org.actors["ops"], status="sent")
        with pytest.raises(PolicyDenied):
            list_deliveries(session, org.actors["rep_a1"])

    assert [(row.channel, row.recipient) for row in rows] == [
        ("dingtalk_robot", "dingtalk_robot:d5b6…")
    ]


def _employee(sessions: sessionmaker[Session], *, email: str | None = None) -> int:
    with transaction(sessions) as session:
        employee = Employee(external_id="E-lisi", name="李四", email=email)
        session.add(employee)
        session.flush()
        return employee.id
