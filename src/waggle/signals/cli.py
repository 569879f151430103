"""The ``waggle signals`` commands: ingest, sync, status, quarantine, replay, links.

Ingestion runs as the local operator unless ``--as`` names a user; every
batch prints counts that reconcile (received = accepted + quarantined +
duplicates).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from waggle.cli import AsUser, out, resolve_actor, session_scope, settings
from waggle.core.clock import now
from waggle.core.db import make_engine, make_session_factory
from waggle.core.errors import InvalidInput
from waggle.signals import service
from waggle.signals.connectors import connector_names, read_records
from waggle.signals.ingest import BatchReport, ingest_batch

signals_app = typer.Typer(
    help="Behaviour signals: connectors, sync status, quarantine.",
    no_args_is_help=True,
)
sources_app = typer.Typer(help="Configured sources.", no_args_is_help=True)
links_app = typer.Typer(help="Platform identity links.", no_args_is_help=True)
signals_app.add_typer(sources_app, name="sources")
signals_app.add_typer(links_app, name="links")

ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="YAML file with the connector's settings."),
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="A configured source to use.")
]


def register_commands(app: typer.Typer) -> None:
    """Add ``signals`` to the ``waggle`` command (once)."""
    if not any(group.name == "signals" for group in app.registered_groups):
        app.add_typer(signals_app, name="signals")


@contextmanager
def _sessions() -> Iterator[sessionmaker[Session]]:
    """A session factory for chunked work, its engine disposed afterwards."""
    engine = make_engine(settings().database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"settings file {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise InvalidInput(f"settings file {path}: expected a mapping of settings")
    return loaded


@signals_app.command("connectors")
def list_connectors() -> None:
    """List the connectors Waggle has."""
    for name in connector_names():
        out.print(name)


@signals_app.command("ingest")
def ingest(
    connector: str,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to read.")],
    config: ConfigFile = None,
    source: SourceOption = None,
    chunk: Annotated[int, typer.Option(help="Records per transaction.")] = 500,
    as_user: AsUser = None,
) -> None:
    """Read files with CONNECTOR and ingest them; prints the reconciled counts."""
    settings_map = _config(config)
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        pipeline = service.build_pipeline(
            session, connector, source_name=source, config=settings_map
        )
    with _sessions() as sessions:
        for path in paths:
            records = read_records(connector, path, settings_map)
            with _ProgressLine(f"{connector} {path.name}") as advance:
                report = ingest_batch(
                    sessions,
                    actor,
                    pipeline,
                    records,
                    label=str(path)[:300],
                    chunk_size=chunk,
                    progress=advance,
                )
            _print_report(report, title=str(path))


class _ProgressLine:
    """A Rich progress line counting records as chunks commit."""

    def __init__(self, label: str):
        self.bar = Progress(
            TextColumn(escape(label)),
            BarColumn(),
            MofNCompleteColumn(),
            transient=True,
        )
        self.task = self.bar.add_task(label, total=None)

    def __enter__(self) -> Any:
        self.bar.start()
        return lambda count: self.bar.advance(self.task, count)

    def __exit__(self, *_: object) -> None:
        self.bar.stop()


def _print_report(report: BatchReport, *, title: str) -> None:
    out.print(
        f"batch {report.batch_id} ({escape(title)}): received {report.received} = "
        f"accepted {report.accepted} + quarantined {report.quarantined} + "
        f"duplicates {report.duplicates}; events stored {report.events_stored}",
        highlight=False,
        soft_wrap=True,
    )


@signals_app.command("status")
def status(as_user: AsUser = None) -> None:
    """Show each connector's sync status: last success, lag, errors, quarantine."""
    with session_scope() as session:
        rows = service.sync_status(session, resolve_actor(session, as_user))
    table = Table(
        "connector",
        "sources",
        "last success",
        "lag",
        "received",
        "quarantined",
        "errors",
        "last error",
    )
    for row in rows:
        table.add_row(
            row.connector,
            ", ".join(row.sources),
            _when(row.last_success_at),
            _duration(row.lag_seconds),
            str(row.received),
            str(row.quarantined_open),
            str(row.error_count),
            escape(row.last_error or ""),
        )
    out.print(table)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@signals_app.command("quarantine")
def quarantine(
    status_filter: Annotated[
        str, typer.Option("--status", help="open, replayed, discarded or all.")
    ] = "open",
    connector: Annotated[str | None, typer.Option()] = None,
    limit: int = 50,
    as_user: AsUser = None,
) -> None:
    """List quarantined records with their reasons."""
    wanted = None if status_filter == "all" else status_filter
    with session_scope() as session:
        entries = service.list_quarantine(
            session,
            resolve_actor(session, as_user),
            status=wanted,
            connector=connector,
            limit=limit,
        )
    table = Table("id", "connector", "code", "reason", "status", "attempts")
    for entry in entries:
        table.add_row(
            str(entry.id),
            entry.connector,
            entry.reason_code,
            escape(entry.reason),
            entry.status,
            str(entry.attempts),
        )
    out.print(table)


@signals_app.command("replay")
def replay(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Quarantine ids; none: all open.")
    ] = None,
    config: ConfigFile = None,
    as_user: AsUser = None,
) -> None:
    """Parse quarantined records again (after fixing settings or mappings)."""
    from waggle.signals.api import replay_open_entries

    with session_scope() as session:
        actor = resolve_actor(session, as_user)
    with _sessions() as sessions:
        reports = replay_open_entries(
            sessions, actor, ids=list(ids) if ids else None, config=_config(config)
        )
    if not reports:
        out.print("nothing to replay")
    for report in reports:
        _print_report(report, title=f"replay {report.connector}")


@signals_app.command("sync")
def sync(name: str, as_user: AsUser = None) -> None:
    """Pull a configured source once (its cursor moves only on success)."""
    from waggle.signals.jobs import pull_source_for, sync_crm_changes
    from waggle.signals.sync import sync_source

    with _sessions() as sessions:
        if name == "crm":
            result = sync_crm_changes(sessions)
        else:
            with session_scope() as session:
                actor = resolve_actor(session, as_user)
                source = service.source_named(session, name)
                pipeline = service.build_pipeline(
                    session, source.connector, source_name=name
                )
                pull = pull_source_for(source.connector, source.config)
            result = sync_source(sessions, actor, name, pull=pull, pipeline=pipeline)
    if result.error is not None:
        from waggle.core.errors import UpstreamFailure

        raise UpstreamFailure(f"source {name}: {result.error}")
    if result.report is not None:
        _print_report(result.report, title=f"sync {name}")


@signals_app.command("rematch")
def rematch(as_user: AsUser = None) -> None:
    """Match unmatched and partial events again with today's directory."""
    with session_scope() as session:
        result = service.rematch_events(session, resolve_actor(session, as_user))
    out.print(
        f"examined {result.examined}, improved {result.improved}; still unmatched "
        f"{result.still_unmatched}, partial {result.still_partial}"
    )


@signals_app.command("coverage")
def coverage(
    weeks: Annotated[int, typer.Option(help="How many weeks back.")] = 4,
    as_user: AsUser = None,
) -> None:
    """Per rep and week: interactions captured automatically versus by hand."""
    until = now()
    with session_scope() as session:
        rows = service.coverage_report(
            session,
            resolve_actor(session, as_user),
            since=until - dt.timedelta(weeks=weeks),
            until=until,
        )
    table = Table("employee", "week", "automatic", "manual", "captured")
    for row in rows:
        share = row.captured_share
        table.add_row(
            str(row.employee_id),
            row.week,
            str(row.automatic_total),
            str(row.manual_total),
            "-" if share is None else f"{share:.0%}",
        )
    out.print(table)


@sources_app.command("add")
def sources_add(
    name: str, connector: str, config: ConfigFile = None, as_user: AsUser = None
) -> None:
    """Configure a source (an IMAP mailbox, a callback app) from a YAML file."""
    with session_scope() as session:
        source = service.create_source(
            session,
            resolve_actor(session, as_user),
            name=name,
            connector=connector,
            config=_config(config),
        )
        out.print(f"source {source.name} ({source.connector}) configured")


@sources_app.command("list")
def sources_list(as_user: AsUser = None) -> None:
    """List configured sources with their cursor and errors."""
    with session_scope() as session:
        sources = service.list_sources(session, resolve_actor(session, as_user))
        table = Table("name", "connector", "enabled", "last success", "errors")
        for source in sources:
            table.add_row(
                source.name,
                source.connector,
                "yes" if source.is_enabled else "no",
                _when(source.last_success_at),
                str(source.error_count),
            )
    out.print(table)


@links_app.command("add")
def links_add(
    platform: str,
    external_id: str,
    employee: Annotated[int | None, typer.Option(help="Employee id.")] = None,
    contact: Annotated[int | None, typer.Option(help="Contact id.")] = None,
    account: Annotated[int | None, typer.Option(help="Account id (rooms).")] = None,
    opportunity: Annotated[
        int | None, typer.Option(help="Opportunity id (rooms).")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Tie a platform identity to a person, or a group chat to an account or deal."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        link = service.create_link(
            session,
            actor,
            platform=platform,
            external_id=external_id,
            employee_id=employee,
            contact_id=contact,
            account_id=account,
            opportunity_id=opportunity,
        )
        result = service.rematch_events(session, actor)
        out.print(f"link {link.id} created; {result.improved} waiting events matched")


@signals_app.command("demo")
def demo_stream(
    events: Annotated[
        int | None, typer.Option(help="Stop after this many events (default: all).")
    ] = None,
    seed: int = 7,
    as_user: AsUser = None,
) -> None:
    """Ingest the demo company's two-year behaviour stream (after `waggle demo`)."""
    from waggle.signals.demo_feed import feed_demo_stream

    with session_scope() as session:
        actor = resolve_actor(session, as_user)
    with _sessions() as sessions, _ProgressLine("demo events") as advance:
        report = feed_demo_stream(
            sessions, actor, events=events, seed=seed, progress=advance
        )
    _print_report(report, title="demo stream")
