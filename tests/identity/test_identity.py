"""Users, roles and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import PASSWORD, Org
from waggle.core.actor import system_actor
from waggle.core.clock import FixedClock
from waggle.core.errors import Conflict, InvalidInput, Unauthenticated
from waggle.governance.models import AuditEntry
from waggle.identity.models import ApiToken, User
from waggle.identity.service import authenticate, create_user


def test_token_is_stored_only_as_its_digest(
    client: TestClient, org: Org, session: Session
) -> None:
    """The issued secret works once shown, and only its SHA-256 is in the database."""
    response = client.post(
        "/api/v1/tokens", json={"name": "脚本"}, headers=org.headers("rep_a1")
    )
    secret = response.json()["token"]

    stored = session.scalar(select(ApiToken).where(ApiToken.name == "脚本"))
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 201
    assert stored is not None
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {stored.token_hash, stored.prefix}
    assert me.json() == {
        "username": "rep_a1",
        "roles": ["rep"],
        "employee_id": org.employees["rep_a1"],
    }


def test_revoked_or_unknown_tokens_are_refused(
    client: TestClient, org: Org, session: Session
) -> None:
    """A revoked token and a made-up one both answer 401."""
    token = session.scalar(select(ApiToken).join(User).where(User.username == "rep_a1"))
    assert token is not None
    from waggle.core.clock import now

    token.revoked_at = now()
    session.commit()

    revoked = client.get("/api/v1/me", headers=org.headers("rep_a1"))
    unknown = client.get("/api/v1/me", headers={"Authorization": "Bearer wgl_nope"})
    malformed = client.get("/api/v1/me", headers={"Authorization": "Token abc"})

    assert [revoked.status_code, unknown.status_code, malformed.status_code] == [
        401,
        401,
        401,
    ]


def test_rep_cannot_issue_tokens_for_others(client: TestClient, org: Org) -> None:
    """Issuing a token in someone else's name needs the user-admin right."""
    response = client.post(
        "/api/v1/tokens",
        json={"name": "x", "username": "ops"},
        headers=org.headers("rep_a1"),
    )

    assert response.status_code == 403


def test_password_is_hashed_with_argon2id(session: Session, org: Org) -> None:
    """Passwords are stored as argon2id hashes and checked by authenticate."""
    user = authenticate(session, "rep_a1", PASSWORD)

    assert user.password_hash.startswith("$argon2id$")
    with pytest.raises(Unauthenticated):
        authenticate(session, "rep_a1", "wrong password")
    with pytest.raises(Unauthenticated):
        authenticate(session, "nobody", PASSWORD)


@pytest.mark.parametrize(
    ("username", "password", "roles", "error", "message"),
    [
        ("new", "short", ["rep"], InvalidInput, "at least 8 characters"),
        ("new", PASSWORD, ["king"], InvalidInput, "roles ['king'] are not valid"),
        ("new", PASSWORD, [], InvalidInput, "are not valid"),
        ("rep_a1", PASSWORD, ["rep"], Conflict, "already exists"),
    ],
)
def test_bad_users_are_refused_with_the_reason(
    session: Session,
    org: Org,
    username: str,
    password: str,
    roles: list[str],
    error: type[Exception],
    message: str,
) -> None:
    """Short passwords, unknown roles and taken names are refused with the reason."""
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        create_user(
            session, system_actor(), username=username, password=password, roles=roles
        )


def test_only_it_admin_creates_users(client: TestClient, org: Org) -> None:
    """Creating logins is the IT administrator's job."""
    body = {"username": "李娜", "password": PASSWORD, "roles": ["rep"]}

    as_ops = client.post("/api/v1/users", json=body, headers=org.headers("ops"))
    as_admin = client.post("/api/v1/users", json=body, headers=org.headers("admin"))

    assert as_ops.status_code == 403
    assert as_admin.status_code == 201
    assert as_admin.json()["role_names"] == ["rep"]


def _audited(session: Session, resource: str, action: str) -> list[AuditEntry]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.resource == resource, AuditEntry.action == action)
            .order_by(AuditEntry.id)
        )
    )


def test_user_contract(client: TestClient, org: Org, session: Session) -> None:
    """Users are created, read, listed, changed and deactivated, each step audited."""
    headers = org.headers("admin")
    body = {"username": "zhao", "password": PASSWORD, "roles": ["rep"]}

    created = client.post("/api/v1/users", json=body, headers=headers)
    user_id = created.json()["id"]
    read = client.get(f"/api/v1/users/{user_id}", headers=headers)
    listed = client.get("/api/v1/users", headers=headers)
    updated = client.patch(
        f"/api/v1/users/{user_id}",
        json={"roles": ["manager", "rep"], "locale": "en"},
        headers=headers,
    )
    denied = client.patch(
        f"/api/v1/users/{user_id}",
        json={"is_active": False},
        headers=org.headers("ops"),
    )
    deleted = client.delete(f"/api/v1/users/{user_id}", headers=headers)
    after = client.get(f"/api/v1/users/{user_id}", headers=headers)
    missing = client.get("/api/v1/users/999999", headers=headers)

    assert created.status_code == 201
    assert read.json() == created.json()
    assert user_id in [user["id"] for user in listed.json()]
    assert (updated.json()["role_names"], updated.json()["locale"]) == (
        ["manager", "rep"],
        "en",
    )
    assert denied.status_code == 403
    assert deleted.status_code == 204
    assert after.json()["is_active"] is False
    assert missing.json()["error"]["code"] == "not_found"
    for action in ("create", "read", "update", "delete"):
        entries = _audited(session, "users", action)
        assert any(str(user_id) in entry.record_ids for entry in entries), action
    updates = _audited(session, "users", "update")
    assert [(e.username, e.result, e.detail) for e in updates] == [
        ("admin", "ok", "locale,roles"),
        ("ops", "denied", "ops may not update users"),
    ]


def test_a_deactivated_user_can_no_longer_use_a_token_or_log_in(
    client: TestClient, org: Org, session: Session
) -> None:
    """Deactivation refuses the user's tokens and password from then on."""
    user_id = org.actors["rep_a2"].user_id

    client.delete(f"/api/v1/users/{user_id}", headers=org.headers("admin"))

    assert client.get("/api/v1/me", headers=org.headers("rep_a2")).status_code == 401
    session.expire_all()
    with pytest.raises(Unauthenticated):
        authenticate(session, "rep_a2", PASSWORD)
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user_id))
    assert [token.revoked_at is not None for token in tokens] == [True]


def test_users_list_and_revoke_their_own_tokens(
    client: TestClient, org: Org, session: Session
) -> None:
    """A user sees their tokens without secrets, revokes one, and it stops working."""
    issued = client.post(
        "/api/v1/tokens", json={"name": "脚本"}, headers=org.headers("rep_a1")
    ).json()
    new_headers = {"Authorization": f"Bearer {issued['token']}"}

    listed = client.get("/api/v1/tokens", headers=new_headers).json()
    foreign = client.delete(
        f"/api/v1/tokens/{issued['id']}", headers=org.headers("rep_a2")
    )
    others = client.get(
        "/api/v1/tokens", params={"username": "rep_a1"}, headers=org.headers("rep_a2")
    )
    revoked = client.delete(f"/api/v1/tokens/{issued['id']}", headers=new_headers)
    after = client.get("/api/v1/me", headers=new_headers)

    assert [(t["name"], t["revoked_at"]) for t in listed] == [
        ("test", None),
        ("脚本", None),
    ]
    assert all(issued["token"] not in str(token) for token in listed)
    assert [foreign.status_code, others.status_code] == [403, 403]
    assert revoked.status_code == 204
    assert after.status_code == 401
    assert [e.record_ids for e in _audited(session, "api_tokens", "delete")] == [
        [str(issued["id"])]
    ]


def test_token_use_is_noted_at_most_every_five_minutes(
    client: TestClient, org: Org, session: Session, fixed_clock: FixedClock
) -> None:
    """A token's last use moves on only after five minutes, so reads stay reads."""
    first = fixed_clock()

    client.get("/api/v1/me", headers=org.headers("rep_a1"))
    fixed_clock.advance(minutes=4)
    client.get("/api/v1/me", headers=org.headers("rep_a1"))
    session.expire_all()
    noted_early = _last_used(session, "rep_a1")
    fixed_clock.advance(minutes=1)
    client.get("/api/v1/me", headers=org.headers("rep_a1"))
    session.expire_all()

    assert noted_early == first
    assert _last_used(session, "rep_a1") == first + dt.timedelta(minutes=5)


def _last_used(session: Session, username: str) -> dt.datetime | None:
    token = session.scalar(select(ApiToken).join(User).where(User.username == username))
    assert token is not None
    return token.last_used_at
