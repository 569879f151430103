"""Logging in and out, and choosing the language."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SESSION_COOKIE, SessionDep
from waggle.core.actor import Actor
from waggle.core.errors import Unauthenticated
from waggle.governance import record_audit
from waggle.identity.service import actor_for_user, authenticate
from waggle.web.context import (
    LANG_COOKIE,
    FormDep,
    FormPageDep,
    locale_of,
    safe_next,
    signer_of,
)
from waggle.web.i18n import LOCALES, Translator
from waggle.web.rendering import render
from waggle.web.sessions import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_LIFETIME_SECONDS,
    SESSION_LIFETIME_SECONDS,
    resolve_session,
)

logger = logging.getLogger(__name__)

LANG_COOKIE_SECONDS = 365 * 86_400

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_form(
    request: Request,
    session: SessionDep,
    next_url: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    """Show the login form; a logged-in browser goes straight on."""
    target = safe_next(next_url)
    cookie = request.cookies.get(SESSION_COOKIE)
    if resolve_session(signer_of(request), session, cookie, source_ip=None):
        return RedirectResponse(target, status_code=303)
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    response = _login_page(request, nonce=nonce, next_url=target)
    _set_cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_FORM_LIFETIME_SECONDS)
    return response


@router.post("/login")
def login(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Check the password and start a session; refuse a form from elsewhere."""
    t = Translator(locale_of(request))
    signer = signer_of(request)
    username = str(form.get("username") or "").strip()
    target = safe_next(str(form.get("next") or "/"))
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    if not signer.is_valid_login_token(
        request.cookies.get(LOGIN_COOKIE), str(form.get(CSRF_FIELD) or "")
    ):
        page = _login_page(
            request, nonce=nonce, next_url=target, error=t("login.expired")
        )
        page.status_code = 403
        _set_cookie(request, page, LOGIN_COOKIE, nonce, LOGIN_FORM_LIFETIME_SECONDS)
        return page
    try:
        user = authenticate(session, username, str(form.get("password") or ""))
    except Unauthenticated:
        _audit_login(session, _anonymous(request, username), result="denied")
        page = _login_page(
            request,
            nonce=nonce,
            next_url=target,
            error=t("login.failed"),
            username=username,
        )
        page.status_code = 401
        return page
    actor = actor_for_user(user, source_ip=_client_ip(request), channel="web")
    _audit_login(session, actor, result="ok")
    cookie, _ = signer.issue(user)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, cookie, SESSION_LIFETIME_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    logger.info("web login", extra={"user": user.username})
    return response


@router.post("/logout")
def logout(page: FormPageDep, session: SessionDep) -> Response:
    """End the session in this browser."""
    record_audit(session, page.actor, action="logout", resource="sessions")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{code}")
def choose_language(
    code: str,
    request: Request,
    next_url: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    """Remember the chosen language in a cookie and go back."""
    response = RedirectResponse(safe_next(next_url), status_code=303)
    if code in LOCALES:
        _set_cookie(request, response, LANG_COOKIE, code, LANG_COOKIE_SECONDS)
    return response


def _login_page(
    request: Request,
    *,
    nonce: str,
    next_url: str,
    error: str | None = None,
    username: str = "",
) -> HTMLResponse:
    t = Translator(locale_of(request))
    return render(
        "login.html",
        {
            "t": t,
            "locale": t.locale,
            "error": error,
            "username": username,
            "next_url": next_url,
            "login_token": signer_of(request).login_token(nonce),
            "csrf_field": CSRF_FIELD,
            "here": request.url.path
            + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _anonymous(request: Request, username: str) -> Actor:
    return Actor(
        user_id=None,
        username=username[:80] or "(empty)",
        roles=frozenset(),
        source_ip=_client_ip(request),
        channel="web",
    )


def _audit_login(session: Session, actor: Actor, *, result: str) -> None:
    record_audit(session, actor, action="login", resource="sessions", result=result)
