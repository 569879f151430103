"""Logging in and out, session cookies, and CSRF protection of pages and API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.web.helpers import LOGIN_TOKEN, log_in, stage_ids
from waggle.apikit import SESSION_COOKIE
from waggle.core.clock import FixedClock
from waggle.crm.models import Opportunity
from waggle.governance.models import AuditEntry


def _stage_of(session: Session, opportunity_id: int) -> int:
    session.expire_all()
    opportunity = session.get(Opportunity, opportunity_id)
    assert opportunity is not None
    return opportunity.stage_id


def test_login_sets_a_signed_http_only_lax_cookie(client: TestClient, org: Org) -> None:
    """Logging in answers with a redirect and an HttpOnly, SameSite=Lax session."""
    form = client.get("/login?next=/board")
    token = LOGIN_TOKEN.search(form.text)

    response = client.post(
        "/login",
        data={
            "username": "rep_a1",
            "password": "correct horse battery",
            "csrf_token": token[1] if token else "",
            "next": "/board",
        },
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/board"
    cookie = next(
        header
        for header in response.headers.get_list("set-cookie")
        if header.startswith(f"{SESSION_COOKIE}=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=43200" in cookie
    assert "rep_a1" in client.get("/board").text


def test_wrong_password_is_refused_and_audited(
    client: TestClient, org: Org, session: Session
) -> None:
    """A wrong password shows the reason, sets no session and leaves a denied row."""
    token = LOGIN_TOKEN.search(client.get("/login").text)
    assert token is not None

    response = client.post(
        "/login",
        data={"username": "rep_a1", "password": "wrong", "csrf_token": token[1]},
        follow_redirects=False,
    )

    assert response.status_code == 401
    assert "用户名或密码错误" in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.resource == "sessions")
    ).all()
    assert [(e.username, e.action, e.result) for e in entries] == [
        ("rep_a1", "login", "denied")
    ]


def test_login_form_without_its_token_is_refused(client: TestClient, org: Org) -> None:
    """A login posted from elsewhere (no form token) does not log anyone in."""
    response = client.post(
        "/login",
        data={"username": "rep_a1", "password": "correct horse battery"},
        follow_redirects=False,
    )

    assert response.status_code == 403
    assert client.get("/board", follow_redirects=False).status_code == 303


def test_anonymous_page_request_goes_to_login(client: TestClient) -> None:
    """Without a session a page redirects to the login form, remembering the page."""
    response = client.get("/opportunities?status=open", follow_redirects=False)

    assert response.status_code == 303
    assert (
        response.headers["location"] == "/login?next=%2Fopportunities%3Fstatus%3Dopen"
    )


def test_login_does_not_redirect_off_site(client: TestClient, org: Org) -> None:
    """A ``next`` pointing at another site is replaced by the home page."""
    token = LOGIN_TOKEN.search(client.get("/login").text)
    assert token is not None

    response = client.post(
        "/login",
        data={
            "username": "rep_a1",
            "password": "correct horse battery",
            "csrf_token": token[1],
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )

    assert response.headers["location"] == "/"


def test_tampered_cookie_is_not_a_session(client: TestClient, org: Org) -> None:
    """Changing one character of the cookie ends the session."""
    log_in(client, "rep_a1")
    cookie = client.cookies[SESSION_COOKIE]
    forged = cookie[:10] + ("A" if cookie[10] != "A" else "B") + cookie[11:]

    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, forged)
    response = client.get("/board", follow_redirects=False)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    control = client.get("/board", follow_redirects=False)

    assert response.status_code == 303
    assert control.status_code == 200


def test_session_expires_after_twelve_hours(
    client: TestClient, org: Org, fixed_clock: FixedClock
) -> None:
    """A session cookie stops working once its expiry has passed."""
    log_in(client, "rep_a1")

    fixed_clock.advance(hours=11, minutes=59)
    before = client.get("/board", follow_redirects=False)
    fixed_clock.advance(minutes=2)
    after = client.get("/board", follow_redirects=False)

    assert before.status_code == 200
    assert after.status_code == 303


def test_logout_ends_the_session(client: TestClient, org: Org) -> None:
    """Logging out clears the cookie and audits the logout."""
    token = log_in(client, "rep_a1")

    response = client.post(
        "/logout", data={"csrf_token": token}, follow_redirects=False
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert client.get("/board", follow_redirects=False).status_code == 303


def test_post_without_csrf_token_is_rejected(
    app: FastAPI,
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """Forms and the board refuse unsafe requests lacking the session's token."""
    log_in(client, "rep_a1")
    discovery = stage_ids(sessions)["discovery"]
    with TestClient(app) as other:
        foreign_token = log_in(other, "rep_a2")

    no_token = client.post(
        "/board/move",
        json={"opportunity_id": deals["deal_a1"], "stage_id": discovery},
        headers={"Accept": "application/json"},
    )
    foreign = client.post(
        "/board/move",
        json={"opportunity_id": deals["deal_a1"], "stage_id": discovery},
        headers={"Accept": "application/json", "X-CSRF-Token": foreign_token},
    )
    logout = client.post("/logout", data={}, follow_redirects=False)
    settings = client.post("/settings/pipeline", data={"pipeline_key": "standard"})

    assert no_token.status_code == 403
    assert no_token.json() == {
        "ok": False,
        "message": "请求缺少有效的安全令牌，请刷新页面后重试",
    }
    assert foreign.status_code == 403
    assert logout.status_code == 403
    assert settings.status_code == 403
    assert _stage_of(session, deals["deal_a1"]) == stage_ids(sessions)["lead"]


def test_api_takes_the_cookie_but_writes_need_the_csrf_header(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """The JSON API reads with the web session; writes also need X-CSRF-Token."""
    token = log_in(client, "rep_a1")
    discovery = stage_ids(sessions)["discovery"]
    url = f"/api/v1/opportunities/{deals['deal_a1']}/stage"

    listed = client.get("/api/v1/opportunities")
    refused = client.post(url, json={"stage_id": discovery})
    accepted = client.post(
        url, json={"stage_id": discovery}, headers={"X-CSRF-Token": token}
    )

    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()["items"]] == ["二期产线改造"]
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert accepted.status_code == 200, accepted.text
    assert _stage_of(session, deals["deal_a1"]) == discovery


def test_bearer_token_writes_need_no_csrf_header(
    client: TestClient, org: Org, deals: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    """An API call with a bearer token is not subject to the cookie's CSRF check."""
    log_in(client, "rep_a1")
    discovery = stage_ids(sessions)["discovery"]

    response = client.post(
        f"/api/v1/opportunities/{deals['deal_a1']}/stage",
        json={"stage_id": discovery},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 200, response.text
