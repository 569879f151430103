"""Users, roles and API tokens."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import PASSWORD, Org
from waggle.core.actor import system_actor
from waggle.core.errors import Conflict, InvalidInput, Unauthenticated
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
