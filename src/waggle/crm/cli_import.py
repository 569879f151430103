"""Commands to import and export CRM files.

``waggle import RESOURCE FILE`` (one sub-command per resource), ``waggle
import runs``, ``waggle import rejects RUN_ID``, ``waggle import replay
RUN_ID [FILE]`` and ``waggle export RESOURCE FILE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from waggle.cli import AsUser, console, out, resolve_actor, session_scope
from waggle.core.errors import InvalidInput
from waggle.crm.exporting import export_records
from waggle.crm.importing import (
    ImportSummary,
    import_file,
    list_rejects,
    list_runs,
    replay_rejects,
    write_rejects,
)
from waggle.crm.layouts import LAYOUTS
from waggle.crm.mapping import ColumnMapping, load_mapping
from waggle.crm.models import ImportReject
from waggle.crm.tabular import guess_format

import_app = typer.Typer(
    help="Import CSV (UTF-8 or GBK) or XLSX files; upsert by external id.",
    no_args_is_help=True,
)

MappingOption = Annotated[
    Path | None,
    typer.Option("--mapping", help="YAML file mapping your columns to Waggle's."),
]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", help="csv or xlsx (default: from the file name)."),
]
REJECTS_SHOWN = 20


def register(app: typer.Typer) -> None:
    """Add ``import`` and ``export`` to the ``waggle`` command (once)."""
    if any(group.name == "import" for group in app.registered_groups):
        return
    for resource in LAYOUTS:
        import_app.command(resource)(_import_command(resource))
    app.add_typer(import_app, name="import")
    app.command("export")(export_command)


def _import_command(resource: str) -> Callable[..., None]:
    def command(
        file: Annotated[Path, typer.Argument(help="CSV or XLSX file.")],
        mapping: MappingOption = None,
        file_format: FormatOption = None,
        as_user: AsUser = None,
    ) -> None:
        run_import(
            resource, file, mapping=mapping, file_format=file_format, as_user=as_user
        )

    command.__doc__ = f"Import {resource} from FILE."
    return command


def run_import(
    resource: str,
    file: Path,
    *,
    mapping: Path | None,
    file_format: str | None,
    as_user: str | None,
) -> None:
    """Import one file and print its reconciled summary and first rejects."""
    data = _read(file)
    column_mapping = (
        load_mapping(_read(mapping), origin=mapping.name)
        if mapping
        else ColumnMapping()
    )
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        with _progress(f"import {resource}") as advance:
            summary = import_file(
                session,
                actor,
                resource,
                data,
                filename=file.name,
                file_format=file_format,
                mapping=column_mapping,
                progress=advance,
            )
        rejects = list_rejects(session, actor, summary.run_id, limit=REJECTS_SHOWN)
        _print_summary(summary, rejects)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from exc


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def advance(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def _print_summary(summary: ImportSummary, rejects: list[ImportReject]) -> None:
    replay = f" (replay of run {summary.replay_of_id})" if summary.replay_of_id else ""
    encoding = f", {summary.encoding}" if summary.encoding else ""
    lines = [
        f"import run {summary.run_id}{replay}: {summary.resource} from "
        f"{summary.filename} ({summary.file_format}{encoding})",
        f"rows read {summary.rows_read} = inserted {summary.inserted} + updated "
        f"{summary.updated} + unchanged {summary.unchanged} + rejected "
        f"{summary.rejected}" + ("" if summary.reconciles else "  (MISMATCH)"),
    ]
    if summary.unknown_columns:
        lines.append(f"ignored columns: {', '.join(summary.unknown_columns)}")
    if summary.left_open:
        lines.append(f"{summary.left_open} rejects of the earlier run stay open")
    for line in lines:
        _say(line)
    if rejects:
        out.print(_rejects_table(rejects))
        _say(
            f"all rejects: waggle import rejects {summary.run_id} "
            f"[--output fix.csv]; after fixing: waggle import replay "
            f"{summary.run_id} [fix.csv]"
        )


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False)


def _rejects_table(rejects: list[ImportReject]) -> Table:
    table = Table("row", "field", "code", "reason")
    for reject in rejects:
        table.add_row(
            str(reject.row_number),
            reject.field or "",
            reject.code,
            escape(reject.reason),
        )
    return table


@import_app.command("runs")
def runs_command(limit: int = 20, as_user: AsUser = None) -> None:
    """List the latest import runs."""
    with session_scope() as session:
        runs = list_runs(session, resolve_actor(session, as_user), limit=limit)
        table = Table(
            "run", "resource", "file", "read", "ins", "upd", "same", "rej", "by"
        )
        for run in runs:
            table.add_row(
                *(
                    str(value)
                    for value in (
                        run.id,
                        run.resource,
                        run.filename,
                        run.rows_read,
                        run.inserted,
                        run.updated,
                        run.unchanged,
                        run.rejected,
                        run.imported_by,
                    )
                )
            )
        out.print(table)


@import_app.command("rejects")
def rejects_command(
    run_id: int,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the open rejects to this CSV/XLSX file to fix."),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include rejects already replayed.")
    ] = False,
    as_user: AsUser = None,
) -> None:
    """Show a run's rejected rows, or write them to a file to correct."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        if output is not None:
            with output.open("wb") as target:
                count = write_rejects(
                    session,
                    actor,
                    run_id,
                    target,
                    file_format=guess_format(output.name),
                )
            _say(f"{count} open rejects of run {run_id} written to {output}")
            return
        rejects = list_rejects(session, actor, run_id, only_open=not show_all)
        out.print(_rejects_table(rejects))
        out.print(f"{len(rejects)} {'' if show_all else 'open '}rejects")


@import_app.command("replay")
def replay_command(
    run_id: int,
    file: Annotated[
        Path | None,
        typer.Argument(help="Corrected rows; omit to retry the stored rejects."),
    ] = None,
    file_format: FormatOption = None,
    as_user: AsUser = None,
) -> None:
    """Import a run's rejected rows again (as stored, or from a corrected file)."""
    data = _read(file) if file is not None else None
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        with _progress(f"replay run {run_id}") as advance:
            summary = replay_rejects(
                session,
                actor,
                run_id,
                data=data,
                filename=file.name if file else None,
                file_format=file_format,
                progress=advance,
            )
        rejects = list_rejects(session, actor, summary.run_id, limit=REJECTS_SHOWN)
        _print_summary(summary, rejects)


def export_command(
    resource: Annotated[str, typer.Argument(help=", ".join(LAYOUTS))],
    file: Annotated[Path, typer.Argument(help="Where to write (.csv or .xlsx).")],
    file_format: FormatOption = None,
    encoding: Annotated[
        str, typer.Option(help="CSV encoding: utf-8-sig (Excel), utf-8 or gbk.")
    ] = "utf-8-sig",
    as_user: AsUser = None,
) -> None:
    """Export RESOURCE to FILE in the import layout (what your scope shows)."""
    chosen = file_format or guess_format(file.name)
    partial = file.with_name(file.name + ".part")
    try:
        with session_scope() as session:
            actor = resolve_actor(session, as_user)
            with (
                _progress(f"export {resource}") as advance,
                partial.open("wb") as target,
            ):
                summary = export_records(
                    session,
                    actor,
                    resource,
                    target,
                    file_format=chosen,
                    encoding=encoding,
                    progress=advance,
                )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(file)
    _say(f"{summary.rows} {resource} exported to {file}")
