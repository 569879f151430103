"""``waggle insights challenger|report|promote|approve|versions``: the model lifecycle.

``challenger`` trains a LightGBM challenger and its comparison report, on the
closed deals Waggle holds or, with ``--file``, after importing historical
opportunities through the CRM import (same file format and ``--mapping`` as
``waggle import opportunities``). ``report`` prints the headline figures or
writes the JSON and HTML; ``promote`` asks for a promotion, ``approve``
decides it (``--reject`` to refuse), ``versions`` lists the registry.

Training from uploaded history, step by step::

    waggle import accounts accounts.csv --as ops      # the deals' customers
    waggle insights challenger --file history.xlsx --mapping history.yaml \
        --as ops                                      # import, train, report
    waggle insights report lgbm-20261001-12 --html report.html --json report.json
    waggle insights promote lgbm-20261001-12 --reason "AUC +0.05" --as ops
    waggle insights approve lgbm-20261001-12 --as director_east

Each history row is an ``opportunities`` row: ``external_id``, ``name``,
``account_external_id``, ``stage_key`` ``won`` or ``lost`` (the status
follows), ``closed_at`` (the real closing time; the time split uses it),
``created_at``, and for a lost deal ``loss_reason`` (the lost stage requires
it); ``amount`` and ``source`` are features. Behaviour events are not part of
such a file, so a history without them trains on the CRM fields alone.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from waggle.cli import AsUser, out, resolve_actor, session_scope
from waggle.core.clock import as_utc
from waggle.core.errors import InvalidInput
from waggle.crm.mapping import ColumnMapping, load_mapping
from waggle.insights import service
from waggle.insights.champion import HistoryRule
from waggle.insights.lifecycle_api import list_versions

VersionArgument = Annotated[
    str, typer.Argument(help="Version name (lgbm-20261201-7) or id.")
]


def register(group: typer.Typer) -> None:
    """Add this module's commands to the ``insights`` group."""
    group.command("challenger")(challenger)
    group.command("report")(report)
    group.command("promote")(promote)
    group.command("approve")(approve)
    group.command("versions")(versions)


def challenger(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Historical opportunities (CSV or XLSX)."),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="YAML column mapping.")
    ] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or xlsx.")
    ] = None,
    cutoff: Annotated[
        dt.datetime | None, typer.Option(help="Train before, test after this.")
    ] = None,
    until: Annotated[
        dt.datetime | None, typer.Option(help="End of the holdout (default now).")
    ] = None,
    min_won: Annotated[int, typer.Option(help="Won deals needed.")] = 200,
    min_lost: Annotated[int, typer.Option(help="Lost deals needed.")] = 200,
    window_days: Annotated[int, typer.Option(help="History window.")] = 730,
    as_user: AsUser = None,
) -> None:
    """Train a LightGBM challenger and store its report against the champion."""
    training: dict[str, Any] = {
        "cutoff": as_utc(cutoff) if cutoff else None,
        "until": as_utc(until) if until else None,
        "rule": HistoryRule(min_won, min_lost, window_days),
    }
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        if file is None:
            run = service.train_challenger_version(session, actor, **training)
        else:
            run = service.train_challenger_from_file(
                session,
                actor,
                _read(file),
                filename=file.name,
                file_format=file_format,
                mapping=_mapping(mapping),
                **training,
            )
        if run.import_summary is not None:
            summary = run.import_summary
            out.print(
                f"imported {summary.rows_read} rows: {summary.inserted} inserted, "
                f"{summary.updated} updated, {summary.unchanged} unchanged, "
                f"{summary.rejected} rejected (run {summary.run_id})",
                highlight=False,
            )
        out.print(f"{run.version.version} ({run.version.status})", highlight=False)
        _print_figures(run.report.figures)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the file ({exc.strerror})") from exc


def _mapping(path: Path | None) -> ColumnMapping:
    return (
        ColumnMapping() if path is None else load_mapping(_read(path), origin=path.name)
    )


def _print_figures(figures: dict[str, Any]) -> None:
    split = figures["split"]
    out.print(
        f"training {split['training']} deals ({split['training_won']} won), "
        f"holdout {split['holdout']} ({split['holdout_won']} won) "
        f"from {figures['meta']['cutoff']}",
        highlight=False,
    )
    for model in ("champion", "challenger"):
        found = figures["models"][model]
        lift = found["lift"]
        out.print(
            f"{model}: AUC {_figure(found['auc'])} Brier {_figure(found['brier'])} "
            f"lift@10% {_figure(lift['top_10'], 2)} "
            f"lift@20% {_figure(lift['top_20'], 2)}",
            highlight=False,
        )


def _figure(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{float(str(value)):.{digits}f}"


def report(
    version: VersionArgument,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML page here.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON figures here.")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Show a challenger's comparison report, or write it as HTML and JSON."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        found = service.find_version(session, actor, version)
        stored = service.get_report(session, actor, found.id)
        figures, page = dict(stored.figures), stored.html
    if html is not None:
        html.write_text(page, encoding="utf-8")
        out.print(f"wrote {html}", highlight=False)
    if json_path is not None:
        text = json.dumps(figures, ensure_ascii=False, indent=2, sort_keys=True)
        json_path.write_text(text, encoding="utf-8")
        out.print(f"wrote {json_path}", highlight=False)
    _print_figures(figures)


def promote(
    version: VersionArgument,
    reason: Annotated[str | None, typer.Option(help="Why it should win.")] = None,
    as_user: AsUser = None,
) -> None:
    """Ask for a challenger to become the champion (a director approves)."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        found = service.find_version(session, actor, version)
        service.request_promotion(session, actor, found.id, reason=reason)
        out.print(
            f"promotion of {found.version} requested by {actor.username}",
            highlight=False,
        )


def approve(
    version: VersionArgument,
    reject: Annotated[
        bool, typer.Option("--reject", help="Refuse instead of approving.")
    ] = False,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
    as_user: AsUser = None,
) -> None:
    """Approve (or reject) the open promotion of a challenger."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        found = service.find_version(session, actor, version)
        promotion = service.decide_promotion(
            session, actor, found.id, is_approved=not reject, note=note
        )
        out.print(
            f"promotion of {found.version} {promotion.status} by {actor.username}; "
            f"status {found.status}",
            highlight=False,
        )


def versions(as_user: AsUser = None) -> None:
    """List the model registry: every version with its status."""
    with session_scope() as session:
        rows = list_versions(session, resolve_actor(session, as_user))
    for row in rows:
        promotion = "-" if row.promotion is None else row.promotion.status
        cutoff = "-" if row.cutoff is None else f"{row.cutoff:%Y-%m-%d}"
        out.print(
            f"{row.id} {row.version} {row.kind} {row.status} cutoff {cutoff} "
            f"won {row.won_count} lost {row.lost_count} promotion {promotion}",
            highlight=False,
            soft_wrap=True,
        )
