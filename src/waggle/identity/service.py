"""Users, roles, API tokens and authentication."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from waggle.governance import authorize, record_audit
from waggle.identity.models import ApiToken, Employee, Role, User, UserRole
from waggle.identity.passwords import hash_password, verify_password

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "wgl_"  # noqa: S105 (a public marker, not a secret)
MIN_PASSWORD_LENGTH = 8


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
        Conflict: the username is taken.
    """
    authorize(session, actor, "create", "users")
    _check_new_user(username, password, roles)
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
    token.last_used_at = now()
    return actor_for_user(token.user, source_ip=source_ip)


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
