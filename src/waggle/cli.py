"""The ``waggle`` command: mounts every context's commands.

Domain errors end the command with a one-line message on stderr and an exit
code per kind (see :data:`EXIT_CODES`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor, system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PolicyDenied,
    UpstreamFailure,
    WaggleError,
)
from waggle.core.settings import Settings, load_settings
from waggle.governance import configure_policy
from waggle.governance.masking import configure_masking_key
from waggle.governance.rls import enforce_on_sessions, rls_enforced, scope_to_actor

EXIT_CODES: list[tuple[type[WaggleError], int]] = [
    (NotFound, 3),
    (Conflict, 4),
    (InvalidInput, 5),
    (PolicyDenied, 6),
    (UpstreamFailure, 7),
    (WaggleError, 1),
]

app = typer.Typer(help="Waggle: self-hosted sales management.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users and logins.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Pipelines and stages.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(pipeline_app, name="pipeline")

console = Console(stderr=True)
out = Console()


def settings() -> Settings:
    loaded = load_settings()
    configure_policy(loaded.policy_file)
    configure_masking_key(loaded)
    return loaded


@contextmanager
def session_scope() -> Iterator[Session]:
    """A committed-on-success session on the configured database."""
    from waggle.rules.gates import install_stage_gates

    config = settings()
    engine = make_engine(config.database_url)
    try:
        sessions = make_session_factory(engine)
        if rls_enforced(engine):
            enforce_on_sessions(sessions)
        install_stage_gates(sessions, config.stage_gates_file)
        with transaction(sessions) as session:
            yield session
    finally:
        engine.dispose()


def resolve_actor(session: Session, username: str | None) -> Actor:
    """Act as ``username`` (policy applies), or as the local operator."""
    if username is None:
        return system_actor("cli")
    from waggle.identity.models import User
    from waggle.identity.service import actor_for_user

    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    actor = actor_for_user(user, channel="cli")
    scope_to_actor(session, actor)
    return actor


AsUser = Annotated[
    str | None, typer.Option("--as", help="Act as this user; their policy applies.")
]


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the database schema, and install the default pipeline."""
    from waggle.core.migrate import upgrade
    from waggle.crm.pipelines import ensure_default_pipeline
    from waggle.governance.chain import ensure_chain_head

    config = settings()
    if config.database_url.startswith("sqlite"):
        config.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(config.database_url, revision)
    with session_scope() as session:
        ensure_chain_head(session, suite=config.crypto_suite)
        ensure_default_pipeline(session, system_actor("cli"))
    out.print(f"database at {revision}")


@user_app.command("create")
def user_create(
    username: str,
    role: Annotated[
        list[str], typer.Option("--role", help="Repeat for several roles.")
    ],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ],
    employee: Annotated[str | None, typer.Option(help="Employee external id.")] = None,
    locale: str = "zh-CN",
    as_user: AsUser = None,
) -> None:
    """Create a login with one or more roles."""
    from waggle.identity.service import create_user

    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        user = create_user(
            session,
            actor,
            username=username,
            password=password,
            roles=role,
            employee_external_id=employee,
            locale=locale,
        )
        out.print(
            f"user {user.username} created with roles {', '.join(user.role_names)}"
        )


@token_app.command("create")
def token_create(username: str, name: str = "cli", as_user: AsUser = None) -> None:
    """Issue an API token; the secret is printed once and never stored."""
    from waggle.identity.service import create_token

    with session_scope() as session:
        issued = create_token(
            session, resolve_actor(session, as_user), username=username, name=name
        )
    out.print(issued.secret)


@pipeline_app.command("apply")
def pipeline_apply(path: Path, as_user: AsUser = None) -> None:
    """Create or update a pipeline from a YAML file."""
    from waggle.crm.pipelines import apply_pipeline, load_pipeline_file

    definition = load_pipeline_file(path)
    with session_scope() as session:
        pipeline = apply_pipeline(session, resolve_actor(session, as_user), definition)
        out.print(f"pipeline {pipeline.key}: {len(pipeline.stages)} stages")


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    feed_demo_signals: Annotated[
        bool,
        typer.Option(
            "--feed-demo-signals",
            help="Ingest the demo company's behaviour stream in the background.",
        ),
    ] = False,
) -> None:
    """Serve the web UI and the API."""
    import uvicorn

    from waggle.app import create_app
    from waggle.core.logs import configure_logging

    config = settings()
    configure_logging()
    application = create_app(config, run_jobs=True)
    if feed_demo_signals:
        from waggle.signals.demo_feed import start_demo_feed

        start_demo_feed(application.state.sessions)
    uvicorn.run(
        application,
        host=host or config.host,
        port=port or config.port,
        log_level="info",
    )


def register(extension: Callable[[typer.Typer], None]) -> None:
    """Let a context add its commands to the ``waggle`` command."""
    extension(app)


@functools.cache
def _load_extensions() -> None:
    # Once per process: each context adds its groups to ``app``, and adding
    # them again would register every command twice.
    from waggle.crm.cli import register_commands as crm_commands
    from waggle.demo.cli import register_commands as demo_commands
    from waggle.governance.cli import register_commands as governance_commands
    from waggle.insights.cli import register_commands as insights_commands
    from waggle.rules.cli import register_commands as rules_commands
    from waggle.signals.cli import register_commands as signals_commands

    extensions = (
        crm_commands,
        demo_commands,
        governance_commands,
        signals_commands,
        rules_commands,
        insights_commands,
    )
    for extension in extensions:
        register(extension)


def exit_code_for(error: WaggleError) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; domain errors become one line on stderr and an exit code."""
    _load_extensions()
    try:
        return app(args=argv, standalone_mode=False)
    except WaggleError as error:
        console.print(
            f"[red]error[/red] ({error.code}): {error.message}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(exit_code_for(error))
    except typer.Abort:
        console.print("aborted")
        sys.exit(1)
    except Exception as error:  # click usage errors carry their own exit codes
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
