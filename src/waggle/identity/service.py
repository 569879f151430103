"""Users, roles, API tokens and authentication."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import as_utc, now
from waggle.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from waggle.governance import authorize, record_audit
from waggle.governance.duties import ensure_role_combination
from waggle.identity.models import ApiToken, Employee, Role, User, UserRole
from waggle.identity.passwords import hash_password, verify_password

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "wgl_"  # noqa: S105 (a public marker, not a secret)
MIN_PASSWORD_LENGTH = 8
TOKEN_USE_RESOLUTION = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created API token; ``secret`` is shown once and never stored."""

    token_id: int
    name: str
    secret: str


def create_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    password: str,
    roles: list[str],
    employee_external_id: str | None = None,
    locale: str = "zh-CN",
) -> User:
    """Create a login with roles, optionally tied to an employee.

    Raises:
        InvalidInput: unknown role, short password or unknown employee.
        Conflict: the username is taken, or the roles break separation of
            duties (code ``separation_of_duties``).
    """
    authorize(session, actor, "create", "users")
    _check_new_user(username, password, roles)
    ensure_role_combination(roles, username=username)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    employee_id = _employee_id(session, employee_external_id)
    user = User(
        username=username,
        password_hash=hash_password(password),
        employee_id=employee_id,
        locale=locale,
        roles=[UserRole(role=role) for role in sorted(set(roles))],
    )
    session.add(user)
    session.flush()
    record_audit(
        session, actor, action="create", resource="users", record_ids=[user.id]
    )
    return user


def _check_new_user(username: str, password: str, roles: list[str]) -> None:
    if not username.strip():
        raise InvalidInput("user.username: must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"user {username}: password must have at least "
            f"{MIN_PASSWORD_LENGTH} characters"
        )
    known = {role.value for role in Role}
    unknown = sorted(set(roles) - known)
    if unknown or not roles:
        raise InvalidInput(
            f"user {username}: roles {unknown or '[]'} are not valid, "
            f"expected some of {', '.join(sorted(known))}"
        )


def _employee_id(session: Session, external_id: str | None) -> int | None:
    if external_id is None:
        return None
    employee_id = session.scalar(
        select(Employee.id).where(Employee.external_id == external_id)
    )
    if employee_id is None:
        raise InvalidInput(f"user.employee: no employee with id {external_id!r}")
    return employee_id


def list_users(session: Session, actor: Actor) -> list[User]:
    """Return every login, oldest first."""
    authorize(session, actor, "read", "users")
    users = list(session.scalars(select(User).order_by(User.id)))
    record_audit(
        session,
        actor,
        action="read",
        resource="users",
        record_ids=[user.id for user in users],
    )
    return users


def get_user(session: Session, actor: Actor, user_id: int) -> User:
    """Return one login.

    Raises:
        NotFound: no user has that id.
    """
    authorize(session, actor, "read", "users")
    user = _load_user(session, user_id)
    record_audit(session, actor, action="read", resource="users", record_ids=[user_id])
    return user


def update_user(
    session: Session, actor: Actor, user_id: int, changes: dict[str, Any]
) -> User:
    """Change a login's roles, language, password or active flag.

    A new password ends the user's web sessions (their cookies carry a mark
    of the old hash); deactivating a user also revokes their API tokens.

    Raises:
        NotFound: no user has that id.
        InvalidInput: unknown roles or a short password.
        Conflict: the roles break separation of duties.
    """
    authorize(session, actor, "update", "users")
    user = _load_user(session, user_id)
    changed = []
    if "roles" in changes:
        roles = sorted(set(changes["roles"]))
        _check_new_user(user.username, "x" * MIN_PASSWORD_LENGTH, roles)
        ensure_role_combination(roles, username=user.username)
        if roles != user.role_names:
            user.roles = [UserRole(role=role) for role in roles]
            changed.append("roles")
    if "password" in changes:
        _check_new_user(user.username, changes["password"], user.role_names)
        user.password_hash = hash_password(changes["password"])
        changed.append("password")
    for name in ("locale", "is_active"):
        if name in changes and getattr(user, name) != changes[name]:
            setattr(user, name, changes[name])
            changed.append(name)
    if changes.get("is_active") is False:
        _revoke_all_tokens(session, user)
    session.flush()
    record_audit(
        session,
        actor,
        action="update",
        resource="users",
        record_ids=[user_id],
        detail=",".join(sorted(changed)) or "unchanged",
    )
    return user


def deactivate_user(session: Session, actor: Actor, user_id: int) -> User:
    """Disable a login and revoke its tokens; the row stays for the audit trail.

    Audit entries name users by id, so a user is never deleted outright.

    Raises:
        NotFound: no user has that id.
    """
    authorize(session, actor, "delete", "users")
    user = _load_user(session, user_id)
    user.is_active = False
    _revoke_all_tokens(session, user)
    session.flush()
    record_audit(
        session, actor, action="delete", resource="users", record_ids=[user_id]
    )
    return user


def _load_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def _revoke_all_tokens(session: Session, user: User) -> None:
    tokens = session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)
        )
    )
    for token in tokens:
        token.revoked_at = now()


def create_token(
    session: Session, actor: Actor, *, username: str, name: str
) -> IssuedToken:
    """Issue an API token for ``username``; users may issue their own.

    Raises:
        NotFound: no such user.
        PolicyDenied: issuing for someone else without the right.
    """
    if username != actor.username:
        authorize(session, actor, "update", "users")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name, prefix=secret[:10], token_hash=_digest(secret)
    )
    session.add(token)
    session.flush()
    record_audit(
        session, actor, action="create", resource="api_tokens", record_ids=[token.id]
    )
    return IssuedToken(token_id=token.id, name=name, secret=secret)


def list_tokens(session: Session, actor: Actor, *, username: str) -> list[ApiToken]:
    """Return the tokens of ``username`` (never their secrets); users see their own.

    Raises:
        NotFound: no such user.
        PolicyDenied: listing someone else's tokens without the right.
    """
    if username != actor.username:
        authorize(session, actor, "read", "users")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    tokens = list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
        )
    )
    record_audit(
        session,
        actor,
        action="read",
        resource="api_tokens",
        record_ids=[token.id for token in tokens],
    )
    return tokens


def revoke_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Revoke a token at once; users may revoke their own.

    Raises:
        NotFound: no token has that id.
        PolicyDenied: revoking someone else's token without the right.
    """
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"API token {token_id} does not exist")
    if token.user_id != actor.user_id:
        authorize(session, actor, "update", "users")
    if token.revoked_at is None:
        token.revoked_at = now()
    session.flush()
    record_audit(
        session, actor, action="delete", resource="api_tokens", record_ids=[token_id]
    )
    return token


def actor_for_token(
    session: Session, secret: str, *, source_ip: str | None = None
) -> Actor:
    """Resolve a bearer token to its actor.

    Raises:
        Unauthenticated: unknown, revoked, or belonging to a disabled user.
    """
    token = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(secret))
    )
    if token is None or token.revoked_at is not None or not token.user.is_active:
        raise Unauthenticated("the API token is not valid")
    _note_use(token)
    return actor_for_user(token.user, source_ip=source_ip)


def _note_use(token: ApiToken) -> None:
    """Record when a token was last used, to the nearest few minutes.

    Writing on every request would make each read a write that holds
    SQLite's single write lock from the first query to the commit, so that
    concurrent requests queue behind one another.
    """
    used_at = now()
    last = token.last_used_at
    if last is None or used_at - as_utc(last) >= TOKEN_USE_RESOLUTION:
        token.last_used_at = used_at


def authenticate(session: Session, username: str, password: str) -> User:
    """Check a username and password.

    Raises:
        Unauthenticated: wrong username or password, or a disabled user.
    """
    user = session.scalar(select(User).where(User.username == username))
    if (
        user is None
        or not user.is_active
        or not verify_password(user.password_hash, password)
    ):
        raise Unauthenticated("wrong username or password")
    return user


def actor_for_user(
    user: User, *, source_ip: str | None = None, channel: str = "api"
) -> Actor:
    return Actor(
        user_id=user.id,
        username=user.username,
        roles=frozenset(user.role_names),
        employee_id=user.employee_id,
        source_ip=source_ip,
        channel=channel,
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
