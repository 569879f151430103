"""Logging calls, visits and notes from the opportunity and account pages."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from tests.web.helpers import log_in
from waggle.crm.models import Activity
from waggle.governance.models import AuditEntry


def _activities(session: Session) -> list[tuple[str, str, int | None, int | None]]:
    session.expire_all()
    rows = session.scalars(select(Activity).order_by(Activity.id))
    return [(a.kind, a.subject, a.account_id, a.opportunity_id) for a in rows]


def test_a_visit_logged_on_the_opportunity_page_joins_its_timeline(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """The form saves the activity on the deal and its account, then shows it."""
    token = log_in(client, "rep_a1")
    before = _activities(session)

    response = client.post(
        f"/opportunities/{deals['deal_a1']}/activities",
        data={
            "csrf_token": token,
            "kind": "visit",
            "subject": "现场演示",
            "body": "客户关注交付周期",
        },
    )

    assert response.status_code == 200
    assert str(response.url).endswith(f"/opportunities/{deals['deal_a1']}?done=logged")
    assert "跟进记录已保存" in response.text
    assert "现场演示" in response.text and "客户关注交付周期" in response.text
    assert _activities(session)[len(before) :] == [
        ("visit", "现场演示", deals["account_a1"], deals["deal_a1"])
    ]
    created = session.scalars(
        select(AuditEntry).where(
            AuditEntry.resource == "activities", AuditEntry.action == "create"
        )
    ).all()
    assert created[-1].username == "rep_a1"


def test_a_note_logged_on_the_account_page_is_listed_there(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """An account note is saved without an opportunity and shown in English too."""
    token = log_in(client, "rep_a1")
    client.get("/lang/en")

    response = client.post(
        f"/accounts/{deals['account_a1']}/activities",
        data={"csrf_token": token, "kind": "note", "subject": "年底预算已批"},
    )

    assert "The activity was saved" in response.text
    assert "年底预算已批" in response.text
    assert _activities(session)[-1] == (
        "note",
        "年底预算已批",
        deals["account_a1"],
        None,
    )


def test_an_activity_without_a_subject_is_refused_naming_the_field(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """A blank subject answers 422 with the field named and saves nothing."""
    token = log_in(client, "rep_a1")
    before = _activities(session)

    response = client.post(
        f"/accounts/{deals['account_a1']}/activities",
        data={"csrf_token": token, "kind": "call", "subject": " "},
    )

    assert response.status_code == 422
    assert "「主题」填写有误" in response.text
    assert _activities(session) == before


def test_logging_on_a_colleagues_account_is_denied_and_audited(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """A rep may not log activities on another rep's account; the refusal is kept."""
    token = log_in(client, "rep_a1")
    before = _activities(session)

    response = client.post(
        f"/accounts/{deals['account_a2']}/activities",
        data={"csrf_token": token, "kind": "call", "subject": "打个电话"},
    )

    assert response.status_code == 403
    assert _activities(session) == before
    denials = session.scalars(
        select(AuditEntry).where(AuditEntry.result == "denied")
    ).all()
    assert [(d.username, d.resource) for d in denials] == [("rep_a1", "accounts")]


def test_the_activity_form_needs_its_csrf_token(
    client: TestClient, org: Org, deals: dict[str, int], session: Session
) -> None:
    """Without the session's CSRF token the form is refused and nothing is saved."""
    log_in(client, "rep_a1")
    before = _activities(session)

    response = client.post(
        f"/opportunities/{deals['deal_a1']}/activities",
        data={"kind": "call", "subject": "伪造请求"},
    )

    assert response.status_code == 403
    assert _activities(session) == before
