"""The FastAPI application: every context's routers on one engine."""

from __future__ import annotations

from fastapi import FastAPI

from waggle import __version__
from waggle.apikit import install_error_handlers
from waggle.core.db import make_engine, make_session_factory
from waggle.core.settings import Settings, load_settings
from waggle.crm import api as crm_api
from waggle.governance import configure_policy
from waggle.identity import api as identity_api


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    configure_policy(settings.policy_file)
    app = FastAPI(
        title="Waggle",
        version=__version__,
        description="Self-hosted sales management. Errors share one body: "
        '{"error": {"code", "message", "details"}}.',
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_session_factory(engine)
    install_error_handlers(app)
    for router in [*identity_api.routers(), *crm_api.routers()]:
        app.include_router(router)
    _install_web(app)
    return app


def _install_web(app: FastAPI) -> None:
    from waggle.web import install_web

    install_web(app)
