"""Web sessions: signed cookies, CSRF tokens and the API's cookie guard.

Sessions are stateless signed cookies rather than rows. A cookie carries the
user id, a random session id, an expiry and a mark derived from the user's
password hash, all signed with HMAC-SHA256 under a key derived from
``settings.secret_key``. Each request re-reads the user, so disabling a user or
changing the password ends every session at once; no table, no cleanup job,
and any number of stateless processes can check a cookie. The price: logging
out clears the cookie in that browser but cannot revoke a copy taken earlier,
which stays valid until its expiry (:data:`SESSION_LIFETIME`).

CSRF: every form and HTMX request carries a token derived from the session id
(a hidden field, or the ``X-CSRF-Token`` header that HTMX sends from the
``hx-headers`` of the page body). JSON API calls authenticated by the cookie
need the same header for every unsafe method; bearer-token calls do not,
because a browser never adds an ``Authorization`` header on its own.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from waggle.apikit import SESSION_COOKIE, error_body
from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.identity.models import User
from waggle.identity.service import actor_for_user

logger = logging.getLogger(__name__)

SESSION_LIFETIME_SECONDS = 12 * 3600
LOGIN_COOKIE = "waggle_login"
LOGIN_FORM_LIFETIME_SECONDS = 3600
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMAT = "v1"

CookieActor = Callable[[Session, str, str | None], Actor | None]


@dataclass(frozen=True)
class WebSession:
    """What a valid session cookie says: whose session it is and until when."""

    user_id: int
    session_id: str
    expires_at: int
    password_mark: str


class SessionSigner:
    """Issue and check session cookies, CSRF tokens and login-form tokens."""

    def __init__(self, secret_key: str):
        root = secret_key.encode("utf-8")
        self._session_key = _derive(root, "waggle web session")
        self._csrf_key = _derive(root, "waggle web csrf")
        self._password_key = _derive(root, "waggle web password mark")

    def issue(self, user: User) -> tuple[str, WebSession]:
        """Return a new cookie value for ``user`` and the session it encodes."""
        web_session = WebSession(
            user_id=user.id,
            session_id=secrets.token_hex(16),
            expires_at=int(now().timestamp()) + SESSION_LIFETIME_SECONDS,
            password_mark=self.password_mark(user),
        )
        payload = json.dumps(
            {
                "u": web_session.user_id,
                "s": web_session.session_id,
                "e": web_session.expires_at,
                "p": web_session.password_mark,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        body = _encode(payload)
        return f"{_FORMAT}.{body}.{self._sign(body)}", web_session

    def read(self, cookie: str) -> WebSession | None:
        """Return the session of a cookie, or ``None`` if forged, damaged or expired."""
        version, _, rest = cookie.partition(".")
        body, _, signature = rest.partition(".")
        if version != _FORMAT or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(_decode(body))
            web_session = WebSession(
                user_id=int(data["u"]),
                session_id=str(data["s"]),
                expires_at=int(data["e"]),
                password_mark=str(data["p"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if web_session.expires_at <= int(now().timestamp()):
            return None
        return web_session

    def password_mark(self, user: User) -> str:
        """Return a short fingerprint of the password hash; a new password ends it."""
        digest = hmac.new(
            self._password_key, user.password_hash.encode("utf-8"), hashlib.sha256
        )
        return digest.hexdigest()[:16]

    def csrf_token(self, web_session: WebSession) -> str:
        """Return the CSRF token of a session (the same for its whole life)."""
        return self._mac(self._csrf_key, f"session:{web_session.session_id}")

    def is_valid_csrf(self, web_session: WebSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(
            str(token), self.csrf_token(web_session)
        )

    def login_token(self, nonce: str) -> str:
        """Return the token the login form must echo for the browser's nonce."""
        return self._mac(self._csrf_key, f"login:{nonce}")

    def is_valid_login_token(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(str(token), self.login_token(nonce))

    def _sign(self, body: str) -> str:
        return self._mac(self._session_key, body)

    @staticmethod
    def _mac(key: bytes, message: str) -> str:
        digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
        return _encode(digest)


def _derive(root: bytes, purpose: str) -> bytes:
    return hmac.new(root, purpose.encode("utf-8"), hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("damaged session cookie") from exc


def resolve_session(
    signer: SessionSigner,
    session: Session,
    cookie: str | None,
    *,
    source_ip: str | None,
) -> tuple[Actor, WebSession] | None:
    """Return the actor and session behind a cookie, or ``None`` if it is not valid.

    The user is read again on every request: a disabled user or a changed
    password invalidates the cookie.
    """
    web_session = signer.read(cookie) if cookie else None
    if web_session is None:
        return None
    user = session.get(User, web_session.user_id)
    if user is None or not user.is_active:
        return None
    if not hmac.compare_digest(signer.password_mark(user), web_session.password_mark):
        return None
    actor = actor_for_user(user, source_ip=source_ip, channel="web")
    return actor, web_session


def cookie_actor_loader(signer: SessionSigner) -> CookieActor:
    """Return the ``app.state.cookie_actor`` hook the JSON API authenticates with."""

    def load(session: Session, cookie: str, source_ip: str | None) -> Actor | None:
        resolved = resolve_session(signer, session, cookie, source_ip=source_ip)
        return resolved[0] if resolved else None

    return load


def with_request_id(actor: Actor, connection: HTTPConnection) -> Actor:
    request_id = connection.headers.get("x-request-id") or uuid.uuid4().hex
    return dataclasses.replace(actor, request_id=request_id)


class ApiCsrfGuard:
    """Refuse unsafe API calls that ride on the session cookie without the token.

    A request with an ``Authorization`` header, or without the session cookie,
    passes untouched: the API authenticates (or refuses) it on its own.
    """

    def __init__(self, app: ASGIApp, signer: SessionSigner):
        self.app = app
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._passes(HTTPConnection(scope)):
            await self.app(scope, receive, send)
            return
        logger.warning(
            "csrf token missing on api call", extra={"path": scope.get("path")}
        )
        response = JSONResponse(
            error_body(
                "csrf_failed",
                "a request authenticated by the session cookie must send the "
                "X-CSRF-Token header of that session",
            ),
            status_code=403,
        )
        await response(scope, receive, send)

    def _passes(self, connection: HTTPConnection) -> bool:
        if not connection.url.path.startswith("/api/"):
            return True
        if connection.scope.get("method", "GET") in SAFE_METHODS:
            return True
        cookie = connection.cookies.get(SESSION_COOKIE)
        if "authorization" in connection.headers or not cookie:
            return True
        web_session = self.signer.read(cookie)
        if web_session is None:
            # Not a session at all: the API will answer 401 by itself.
            return True
        return self.signer.is_valid_csrf(
            web_session, connection.headers.get(CSRF_HEADER)
        )
