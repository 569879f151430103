"""What every page request carries: the actor, the locale, the CSRF token.

Page handlers take :data:`PageDep` (any logged-in request) or
:data:`FormPageDep` (an unsafe request whose CSRF token has been checked).
Service errors that a page shows inline go through :func:`abandon` first, so
that nothing half-done is committed and a refusal is still audited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse

from waggle.apikit import SESSION_COOKIE, SessionDep
from waggle.core.actor import Actor
from waggle.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PolicyDenied,
    WaggleError,
)
from waggle.core.settings import Settings
from waggle.crm.models import PipelineStage
from waggle.governance import active_policy, record_denial
from waggle.governance.rls import scope_to_actor
from waggle.web.i18n import LOCALES, Translator
from waggle.web.rendering import Formatter, render
from waggle.web.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SessionSigner,
    WebSession,
    resolve_session,
    with_request_id,
)

LANG_COOKIE = "waggle_lang"


class LoginRequired(Exception):
    """The request has no valid session; the browser goes to the login page."""


class CsrfRejected(Exception):
    """An unsafe request came without the CSRF token of its session."""


def locale_of(request: Request) -> str:
    """Return the language chosen by cookie, else the instance's default."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return str(chosen)
    settings: Settings = request.app.state.settings
    return settings.default_locale if settings.default_locale in LOCALES else "zh-CN"


def signer_of(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.web_signer
    return signer


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def safe_next(target: str | None, default: str = "/") -> str:
    """Return ``target`` if it is a path on this site, else ``default``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


def login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(here, safe='')}"


@dataclass
class PageContext:
    """One logged-in page request."""

    request: Request
    session: Session
    actor: Actor
    web_session: WebSession
    csrf_token: str
    t: Translator
    stages: dict[int, PipelineStage] = field(default_factory=dict)

    @property
    def locale(self) -> str:
        return self.t.locale

    @property
    def fmt(self) -> Formatter:
        return Formatter(self.t, self.stages)

    def may(self, action: str, resource: str) -> bool:
        """Return whether the policy lets the actor do ``action`` on ``resource``."""
        return bool(self.actor.roles & active_policy().roles_allowed(resource, action))

    def render(
        self, template: str, *, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        context = {
            "t": self.t,
            "fmt": self.fmt,
            "locale": self.locale,
            "actor": self.actor,
            "csrf_token": self.csrf_token,
            "csrf_field": CSRF_FIELD,
            "path": self.request.url.path,
            "here": self.request.url.path
            + (f"?{self.request.url.query}" if self.request.url.query else ""),
            "may": self.may,
            **values,
        }
        return render(template, context, status_code=status_code)


def page_context(request: Request, session: SessionDep) -> PageContext:
    """Resolve the session cookie into a page context.

    Raises:
        LoginRequired: no valid session.
    """
    signer = signer_of(request)
    resolved = resolve_session(
        signer,
        session,
        request.cookies.get(SESSION_COOKIE),
        source_ip=request.client.host if request.client else None,
    )
    if resolved is None:
        raise LoginRequired
    actor = with_request_id(resolved[0], request)
    # db_session reads it to audit a refusal that escapes the handler.
    request.state.actor = actor
    scope_to_actor(session, actor)
    return PageContext(
        request=request,
        session=session,
        actor=actor,
        web_session=resolved[1],
        csrf_token=signer.csrf_token(resolved[1]),
        t=Translator(locale_of(request)),
    )


async def submitted_form(request: Request) -> AsyncIterator[FormData]:
    """Yield the submitted form (empty for requests that carry none).

    Uploaded files are spooled to temporary files; they are closed once the
    request is done.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        yield FormData()
        return
    form = await request.form()
    try:
        yield form
    finally:
        await form.close()


FormDep = Annotated[FormData, Depends(submitted_form)]


def checked_page_context(
    request: Request, page: Annotated[PageContext, Depends(page_context)], form: FormDep
) -> PageContext:
    """Return the page context of an unsafe request with a valid CSRF token.

    Raises:
        CsrfRejected: the token is missing or belongs to another session.
    """
    token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    signer = signer_of(request)
    if not isinstance(token, str) or not signer.is_valid_csrf(page.web_session, token):
        raise CsrfRejected
    return page


PageDep = Annotated[PageContext, Depends(page_context)]
FormPageDep = Annotated[PageContext, Depends(checked_page_context)]


def abandon(session: Session, actor: Actor, error: WaggleError) -> None:
    """Roll back a failed service call; audit it when the policy refused it."""
    session.rollback()
    if isinstance(error, PolicyDenied):
        record_denial(session, actor, error)


def describe_error(
    t: Translator,
    error: WaggleError,
    *,
    stage: PipelineStage | None = None,
) -> str:
    """Return the message a person reads for ``error``, in their language."""
    fmt = Formatter(t, None)
    if error.code == "stage_requirements_unmet":
        fields = list(error.details.get("missing_fields") or [])
        if stage is None:
            return t("error.requirements_any_stage", fields=fmt.fields(fields))
        return t(
            "error.stage_requirements",
            stage=fmt.stage(stage),
            fields=fmt.fields(fields),
        )
    if error.code == "invalid_field":
        name = str(error.details.get("field") or "")
        problem = str(error.details.get("problem") or "")
        return t("error.invalid_field", field=fmt.field(name), detail=problem)
    if error.code == "stage_gate_refused":
        reasons = "; ".join(str(r) for r in error.details.get("reasons") or [])
        return t("error.stage_gate", stage=fmt.stage(stage), reasons=reasons)
    if isinstance(error, PolicyDenied):
        return t("error.policy_denied")
    if isinstance(error, NotFound):
        return t("error.not_found")
    if isinstance(error, Conflict):
        return t("error.conflict", detail=error.message)
    if isinstance(error, InvalidInput):
        return t("error.invalid_input", detail=error.message)
    return t("error.generic", detail=error.message)


def query_text(params: Mapping[str, str], name: str) -> str:
    return (params.get(name) or "").strip()


def query_int(params: Mapping[str, str], name: str) -> int | None:
    """Return an integer query parameter; empty or malformed counts as absent."""
    raw = query_text(params, name)
    try:
        return int(raw) if raw else None
    except ValueError:
        return None
