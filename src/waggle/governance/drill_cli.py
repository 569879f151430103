"""The ``waggle drill`` command: the sovereignty drill with a report on screen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from waggle.core.actor import Actor, system_actor
from waggle.core.errors import InvalidInput, NotFound
from waggle.governance.drill import DrillReport, run_drill
from waggle.governance.packages import COMPLIANCE_OFFICER, Signer

PHASE_LABELS = {
    "export": "导出 export",
    "import": "导入 import",
    "compare": "比对 compare",
}


def drill(
    out: Annotated[
        Path | None,
        typer.Option(help="New or empty folder; default <data dir>/drills/<id>."),
    ] = None,
    target_url: Annotated[
        str | None,
        typer.Option(help="An empty database to import into; default a new SQLite."),
    ] = None,
    file_format: Annotated[
        str, typer.Option("--format", help="csv, or parquet if pyarrow is installed.")
    ] = "csv",
    approver: Annotated[
        str | None,
        typer.Option(help="Name of the compliance officer approving the package."),
    ] = None,
    approver_key: Annotated[
        Path | None,
        typer.Option(
            help="The compliance officer's private key PEM (with --approver)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON.")
    ] = False,
    as_user: Annotated[str | None, typer.Option("--as")] = None,
) -> None:
    """Export everything, import it into a fresh instance and compare (主权演练).

    Exits 0 only when every table and the audit chain match; 1 otherwise,
    naming the first mismatch.
    """
    from waggle.cli import settings

    config = settings()
    actor, signer = _actor(as_user), _approver(approver, approver_key)
    progress = _ProgressDisplay()
    try:
        report = run_drill(
            config,
            actor,
            out=out,
            target_url=target_url,
            file_format=file_format,
            approver=signer,
            progress=progress,
        )
    finally:
        progress.stop()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        _show(report)
    if not report.is_ok:
        typer.echo(f"mismatch: {report.first_mismatch}", err=True)
    raise typer.Exit(code=0 if report.is_ok else 1)


def _actor(username: str | None) -> Actor:
    if username is None:
        return system_actor("sovereignty-drill")
    from waggle.cli import resolve_actor, session_scope

    with session_scope() as session:
        return resolve_actor(session, username)


def _approver(name: str | None, key_path: Path | None) -> Signer | None:
    """Return the approving signer from the options, or ``None`` for the default.

    Raises:
        InvalidInput: only one of the two options was given.
        NotFound: the key file cannot be read.
    """
    if name is None and key_path is None:
        return None
    if name is None or key_path is None:
        raise InvalidInput("drill: --approver and --approver-key go together")
    from waggle.governance.crypto import load_signing_key

    try:
        pem = key_path.read_bytes()
    except OSError as exc:
        raise NotFound(f"drill: approver key {key_path} cannot be read") from exc
    return Signer(name=name, role=COMPLIANCE_OFFICER, key=load_signing_key(pem))


class _ProgressDisplay:
    """One Rich bar per phase, advanced as rows are exported, loaded, compared."""

    def __init__(self) -> None:
        from waggle.cli import console

        self.bar = Progress(
            TextColumn("{task.description:<30}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.label = ""

    def phase(self, name: str, total_rows: int) -> None:
        if self.task is None:
            self.bar.start()
        else:
            self.bar.update(self.task, description=self.label)
        self.label = PHASE_LABELS.get(name, name)
        self.task = self.bar.add_task(self.label, total=total_rows)

    def rows(self, table: str, count: int) -> None:
        if self.task is not None:
            self.bar.update(
                self.task, advance=count, description=f"{self.label} {table}"[:30]
            )

    def stop(self) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=self.label)
            self.bar.stop()


def _show(report: DrillReport) -> None:
    from waggle.cli import out

    table = Table(title=f"主权演练 sovereignty drill {report.drill_id}")
    table.add_column("table")
    table.add_column("source rows", justify="right")
    table.add_column("target rows", justify="right")
    table.add_column("digest equal", justify="center")
    for compared in report.comparison.tables:
        table.add_row(
            compared.name,
            f"{compared.source_rows:,}",
            f"{compared.target_rows:,}",
            "yes" if compared.digest_equal else "[red]no[/red]",
        )
    out.print(table)
    _show_summary(report)


def _show_summary(report: DrillReport) -> None:
    from waggle.cli import out

    totals, chain = report.totals(), report.comparison.chain
    checkpoint = {True: "matches", False: "DIFFERS", None: "none signed"}
    seconds = "  ".join(
        f"{phase} {value:.2f} s" for phase, value in report.phases.items()
    )
    lines = [
        f"tables {totals['tables_matched']}/{totals['tables']} matched, rows"
        f" {totals['rows_matched']:,}/{totals['source_rows']:,}"
        f" ({totals['completeness_rows']:.2%}); target rows {totals['target_rows']:,}",
        f"audit chain on the target: {'verified' if chain.is_verified else 'FAILED'}"
        f" ({chain.entries} entries, {chain.signatures_checked} signatures);"
        f" last signed checkpoint: {checkpoint[chain.checkpoint_matched]}",
        f"time: {seconds}  total {sum(report.phases.values()):.2f} s",
        f"package: {report.package}  (check with: waggle verify {report.package})",
        *(f"note: {note}" for note in [*chain.notes, *report.notes]),
    ]
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)
