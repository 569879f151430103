"""Assemble the web UI on the application: pages, static files, sessions, errors."""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from waggle.apikit import status_for
from waggle.core.errors import WaggleError
from waggle.core.settings import Settings
from waggle.web import (
    auth,
    board,
    dashboard,
    details,
    governance_pages,
    insights_pages,
    lineage_pages,
    lists,
    pipeline_form,
    rules_pages,
    signals_pages,
)
from waggle.web.context import (
    CsrfRejected,
    LoginRequired,
    describe_error,
    locale_of,
    login_url,
    wants_json,
)
from waggle.web.i18n import Translator
from waggle.web.rendering import render
from waggle.web.sessions import ApiCsrfGuard, SessionSigner, cookie_actor_loader

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the pages, the static assets and the session hooks on ``app``."""
    settings: Settings = app.state.settings
    signer = SessionSigner(settings.secret_key)
    app.state.web_signer = signer
    app.state.cookie_actor = cookie_actor_loader(signer)
    app.add_middleware(ApiCsrfGuard, signer=signer)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (
        auth,
        dashboard,
        board,
        lists,
        details,
        pipeline_form,
        signals_pages,
        rules_pages,
        insights_pages,
        governance_pages,
        lineage_pages,
    ):
        app.include_router(module.router)
    _install_error_pages(app)


def _install_error_pages(app: FastAPI) -> None:
    api_handler = app.exception_handlers.get(WaggleError)

    @app.exception_handler(WaggleError)
    async def domain_error(request: Request, error: WaggleError) -> Response:
        if request.url.path.startswith("/api/") and api_handler is not None:
            outcome = api_handler(request, error)
            return await outcome if inspect.isawaitable(outcome) else outcome
        return _error_page(request, error, status_code=status_for(error))

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, error: LoginRequired) -> Response:
        if wants_json(request) or request.headers.get("hx-request") == "true":
            target = login_url(request)
            return JSONResponse(
                {"ok": False, "message": "login required", "login": target},
                status_code=401,
                headers={"HX-Redirect": target},
            )
        return RedirectResponse(login_url(request), status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, error: CsrfRejected) -> Response:
        t = Translator(locale_of(request))
        if wants_json(request):
            return JSONResponse(
                {"ok": False, "message": t("error.csrf")}, status_code=403
            )
        return _error_page(request, None, status_code=403, message=t("error.csrf"))


def _error_page(
    request: Request,
    error: WaggleError | None,
    *,
    status_code: int,
    message: str | None = None,
) -> Response:
    t = Translator(locale_of(request))
    text = message or (describe_error(t, error) if error else t("error.title"))
    return render(
        "error.html",
        {
            "t": t,
            "locale": t.locale,
            "message": text,
            "status_code": status_code,
            "here": request.url.path,
        },
        status_code=status_code,
    )
