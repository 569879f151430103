"""``waggle governance rls``: install and check PostgreSQL row-level security."""

from __future__ import annotations

from typing import Annotated

import typer

from waggle.core.settings import load_settings

rls_app = typer.Typer(
    help="PostgreSQL row-level security for the application role.",
    no_args_is_help=True,
)

AppRole = Annotated[
    str, typer.Option("--app-role", help="The database role the application uses.")
]
OwnerUrl = Annotated[
    str | None,
    typer.Option(
        "--owner-url",
        help="Database URL of the tables' owner; default: WAGGLE_DATABASE_URL.",
    ),
]


@rls_app.command("install")
def rls_install(
    app_role: AppRole = "waggle_app",
    password: Annotated[
        str | None,
        typer.Option(
            envvar="WAGGLE_APP_DB_PASSWORD",
            help="Let the role log in with this password (else NOLOGIN).",
        ),
    ] = None,
    owner_url: OwnerUrl = None,
) -> None:
    """Create the role, grant it the tables and force the row policies (idempotent)."""
    from waggle.core.db import make_engine
    from waggle.governance.rls import install_rls

    engine = make_engine(owner_url or load_settings().database_url)
    try:
        report = install_rls(engine, app_role=app_role, password=password)
    finally:
        engine.dispose()
    created = "created" if report.role_created else "kept"
    typer.echo(
        f"role {report.app_role} {created}; {len(report.granted_tables)} tables"
        f" granted, row security forced on {len(report.protected_tables)}:"
        f" {', '.join(report.protected_tables)}"
    )


@rls_app.command("check")
def rls_check(app_role: AppRole = "waggle_app", owner_url: OwnerUrl = None) -> None:
    """Say whether the role is confined; exit 4 (conflict) when it is not."""
    from waggle.cli import exit_code_for
    from waggle.core.db import make_engine
    from waggle.core.errors import Conflict
    from waggle.governance.rls import check_rls

    engine = make_engine(owner_url or load_settings().database_url)
    try:
        with engine.connect() as connection:
            problems = check_rls(connection, app_role=app_role)
    finally:
        engine.dispose()
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if problems:
        raise typer.Exit(code=exit_code_for(Conflict(problems[0])))
    typer.echo(
        f"confined: {app_role} owns nothing, bypasses nothing, audit append-only"
    )
