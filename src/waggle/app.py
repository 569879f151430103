"""The FastAPI application: every context's routers on one engine."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from waggle import __version__
from waggle.apikit import install_error_handlers
from waggle.channels import api as channels_api
from waggle.core.db import make_engine, make_session_factory
from waggle.core.jobs import JobRunner
from waggle.core.settings import Settings, load_settings
from waggle.crm import api as crm_api
from waggle.crm.public_pool import sweep_job
from waggle.governance import api as governance_api
from waggle.governance import catalogue_api, configure_policy, lineage_api
from waggle.governance.audit import checkpoint_job
from waggle.governance.masking import configure_masking_key
from waggle.governance.retention import retention_job
from waggle.governance.rls import enforce_on_sessions, rls_enforced
from waggle.identity import api as identity_api
from waggle.insights import api as insights_api
from waggle.insights import forecast_api, lifecycle_api
from waggle.insights import jobs as insights_jobs
from waggle.rules import api as rules_api
from waggle.rules import experiments_api
from waggle.rules.gates import install_stage_gates
from waggle.rules.live import LiveRules
from waggle.signals import api as signals_api
from waggle.signals import jobs as signals_jobs
from waggle.signals import materials_api
from waggle.signals.stream import subscribe


def create_app(settings: Settings | None = None, *, run_jobs: bool = False) -> FastAPI:
    """Build the application for ``settings`` (default: from the environment).

    With ``run_jobs`` the periodic jobs (public-pool sweep and the like) run on
    a background thread while the application is up; ``waggle serve`` sets it.
    """
    settings = settings or load_settings()
    configure_policy(settings.policy_file)
    configure_masking_key(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        unsubscribers = []
        if run_jobs:
            # Rules see each chunk the pipeline commits, within seconds, and
            # the deals those events concern are rescored.
            unsubscribers.append(subscribe(app.state.live_rules.on_events))
            rescore = insights_jobs.incremental_rescore(app.state.sessions)
            unsubscribers.append(subscribe(rescore))
            app.state.jobs.start(poll_seconds=5)
        yield
        app.state.jobs.stop()
        for unsubscribe in unsubscribers:
            unsubscribe()

    app = FastAPI(
        lifespan=lifespan,
        title="Waggle",
        version=__version__,
        description="Self-hosted sales management. Errors share one body: "
        '{"error": {"code", "message", "details"}}.',
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_session_factory(engine)
    if rls_enforced(engine):
        # Connected as the application role: PostgreSQL holds every request
        # to its actor's rows too, behind the governance seam.
        enforce_on_sessions(app.state.sessions)
    install_stage_gates(app.state.sessions, settings.stage_gates_file)
    app.state.live_rules = LiveRules(app.state.sessions)
    app.state.jobs = periodic_jobs(app.state.sessions, settings)
    app.state.jobs.add(
        "rules-engine", dt.timedelta(seconds=5), app.state.live_rules.tick
    )
    install_error_handlers(app)
    first, then = _context_routers()
    for router in (*first, *catalogue_api.routers(settings), *then):
        app.include_router(router)
    _install_web(app)
    return app


@functools.cache
def _context_routers() -> tuple[tuple[APIRouter, ...], tuple[APIRouter, ...]]:
    """Every context's API routers, built once per process (they hold no state).

    Building them is most of the cost of an application; tests make hundreds.
    The catalogue's routers, which read the settings, go between the two.
    """
    first = (*identity_api.routers(), *crm_api.routers(), *governance_api.routers())
    return first, (
        *signals_api.routers(),
        *channels_api.routers(),
        *materials_api.routers(),
        *rules_api.routers(),
        *experiments_api.routers(),
        *insights_api.routers(),
        *lifecycle_api.routers(),
        *forecast_api.routers(),
        *lineage_api.routers(),
    )


def periodic_jobs(sessions: sessionmaker[Session], settings: Settings) -> JobRunner:
    """Return the runner with every context's periodic jobs registered."""
    runner = JobRunner(sessions)
    runner.add("public-pool-sweep", dt.timedelta(hours=1), sweep_job(settings))
    runner.add("audit-checkpoint", dt.timedelta(minutes=15), checkpoint_job(settings))
    runner.add("retention-sweep", dt.timedelta(days=1), retention_job())
    runner.add("signals-crm", dt.timedelta(seconds=10), signals_jobs.sync_crm_changes)
    runner.add("signals-pull", dt.timedelta(minutes=1), signals_jobs.sync_pull_sources)
    runner.add("signals-rematch", dt.timedelta(minutes=5), signals_jobs.rematch_job())
    runner.add("insights-rescore", dt.timedelta(hours=6), insights_jobs.full_rescore)
    runner.add(
        "customer-health", dt.timedelta(days=1), insights_jobs.customer_health_job
    )
    return runner


def _install_web(app: FastAPI) -> None:
    from waggle.web import install_web

    install_web(app)
