"""The in-app inbox over the API: each user sees and marks only their own."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from waggle.channels import Message, deliver
from waggle.core.actor import system_actor
from waggle.core.clock import FixedClock
from waggle.governance.models import AuditEntry

RULES = system_actor("rules")


def notify(
    sessions: sessionmaker[Session], employee_id: int, title: str, **values: object
) -> int:
    message = Message(
        title=title,
        body="请查看商机详情。",
        employee_id=employee_id,
        source="rule-7",
        **values,  # type: ignore[arg-type]
    )
    outcome = deliver(sessions, RULES, message, channel="inbox")
    assert outcome.platform_message_id is not None
    return int(outcome.platform_message_id)


def test_each_user_lists_only_their_own_unread_notifications(
    client: TestClient, sessions, org: Org, fixed_clock: FixedClock
):
    """rep_a1 and rep_a2 each see their own notifications, newest first."""
    first = notify(sessions, org.employees["rep_a1"], "商机停滞：华东电力")
    fixed_clock.advance(minutes=5)
    second = notify(
        sessions,
        org.employees["rep_a1"],
        "Stage changed",
        locale="en",
        link_url="https://waggle.example/o/42",
    )
    other = notify(sessions, org.employees["rep_a2"], "回款预警")

    mine = client.get("/api/v1/inbox", headers=org.headers("rep_a1"))
    theirs = client.get("/api/v1/inbox", headers=org.headers("rep_a2"))

    assert mine.status_code == 200
    assert mine.json() == {
        "items": [
            {
                "id": second,
                "title": "Stage changed",
                "body": "请查看商机详情。",
                "link": "https://waggle.example/o/42",
                "locale": "en",
                "source": "rule-7",
                "created_at": "2026-03-02T09:05:00Z",
                "read_at": None,
            },
            {
                "id": first,
                "title": "商机停滞：华东电力",
                "body": "请查看商机详情。",
                "link": None,
                "locale": "zh-CN",
                "source": "rule-7",
                "created_at": "2026-03-02T09:00:00Z",
                "read_at": None,
            },
        ],
        "unread": 2,
    }
    assert [item["id"] for item in theirs.json()["items"]] == [other]


def test_a_manager_does_not_see_a_reps_inbox(client: TestClient, sessions, org: Org):
    """A wider row scope does not open someone else's inbox."""
    notify(sessions, org.employees["rep_a1"], "商机停滞")

    answer = client.get("/api/v1/inbox", headers=org.headers("manager_a"))

    assert answer.json() == {"items": [], "unread": 0}


def test_marking_read_removes_it_from_the_unread_list(
    client: TestClient, sessions, org: Org, fixed_clock: FixedClock
):
    """POST read sets read_at; the default list then leaves it out."""
    notification = notify(sessions, org.employees["rep_a1"], "商机停滞")

    marked = client.post(
        f"/api/v1/inbox/{notification}/read", headers=org.headers("rep_a1")
    )
    unread = client.get("/api/v1/inbox", headers=org.headers("rep_a1"))
    everything = client.get(
        "/api/v1/inbox?include_read=true", headers=org.headers("rep_a1")
    )

    assert marked.status_code == 200
    assert marked.json()["read_at"] == "2026-03-02T09:00:00Z"
    assert unread.json() == {"items": [], "unread": 0}
    assert [item["id"] for item in everything.json()["items"]] == [notification]


def test_nobody_marks_another_users_notification(
    client: TestClient, sessions, org: Org
):
    """rep_a2 marking rep_a1's notification is refused, audited and changes nothing."""
    notification = notify(sessions, org.employees["rep_a1"], "商机停滞")

    answer = client.post(
        f"/api/v1/inbox/{notification}/read", headers=org.headers("rep_a2")
    )
    still_unread = client.get("/api/v1/inbox", headers=org.headers("rep_a1"))

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "policy_denied"
    assert still_unread.json()["unread"] == 1
    with sessions() as session:
        denial = session.scalars(
            select(AuditEntry).where(AuditEntry.result == "denied")
        ).one()
    assert (denial.username, denial.action, denial.resource, denial.record_ids) == (
        "rep_a2",
        "update",
        "notifications",
        [str(notification)],
    )


def test_marking_a_missing_notification_is_not_found(client: TestClient, org: Org):
    """An id no notification has answers 404."""
    answer = client.post("/api/v1/inbox/999999/read", headers=org.headers("rep_a1"))

    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "notification 999999 does not exist"


def test_inbox_needs_credentials(client: TestClient):
    """Without a token the inbox answers 401."""
    answer = client.get("/api/v1/inbox")

    assert answer.status_code == 401
