"""The ``waggle insights`` commands: train, score, explain."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from waggle.cli import AsUser, out, resolve_actor, session_scope
from waggle.core.clock import as_utc
from waggle.insights import service
from waggle.insights.champion import HistoryRule

insights_app = typer.Typer(
    help="Win model, health scores and explanations.", no_args_is_help=True
)


def register_commands(app: typer.Typer) -> None:
    """Add ``insights`` to the ``waggle`` command (the CLI calls this once)."""
    from waggle.insights import forecast_cli, lifecycle_cli

    lifecycle_cli.register(insights_app)
    forecast_cli.register(insights_app)
    app.add_typer(insights_app, name="insights")


@insights_app.command("train")
def train(
    cutoff: Annotated[
        dt.datetime | None, typer.Option(help="Train on deals closed before this.")
    ] = None,
    min_won: Annotated[int, typer.Option(help="Won deals needed.")] = 200,
    min_lost: Annotated[int, typer.Option(help="Lost deals needed.")] = 200,
    window_days: Annotated[int, typer.Option(help="History window.")] = 730,
    as_user: AsUser = None,
) -> None:
    """Train the naive-Bayes win model (with too little history: stage defaults)."""
    with session_scope() as session:
        report = service.train_champion(
            session,
            resolve_actor(session, as_user),
            as_utc(cutoff) if cutoff else None,
            rule=HistoryRule(min_won, min_lost, window_days),
        )
        out.print(
            f"{report.version.version} ({report.version.kind}): "
            f"won {report.won}, lost {report.lost}",
            highlight=False,
        )
        if report.note:
            out.print(f"{report.note['zh-CN']} / {report.note['en']}", highlight=False)
        if report.calibration:
            error = report.calibration["expected_calibration_error"]
            out.print(
                f"holdout calibration error {error:.3f} over "
                f"{report.calibration['count']} deals",
                highlight=False,
            )


@insights_app.command("score")
def score(
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Repeat; default all open.")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Score opportunities and store each one's latest health."""
    with session_scope() as session:
        stored = service.score_opportunities(
            session, resolve_actor(session, as_user), ids or None
        )
        out.print(f"{len(stored)} opportunities scored", highlight=False)


@insights_app.command("explain")
def explain(
    opportunity_id: int,
    locale: Annotated[str, typer.Option(help="zh-CN or en.")] = "zh-CN",
    as_user: AsUser = None,
) -> None:
    """Show an opportunity's health, the rep's probability and the top factors."""
    with session_scope() as session:
        insight = service.explain_opportunity(
            session, resolve_actor(session, as_user), opportunity_id
        )
    manual = (
        "-" if insight.manual_probability is None else f"{insight.manual_probability}%"
    )
    out.print(
        f"opportunity {insight.opportunity_id}: health {insight.health} "
        f"(P(win) {insight.probability:.1%}, manual {manual}, "
        f"model {insight.model_version})",
        highlight=False,
    )
    if insight.note:
        out.print(insight.note["zh-CN" if locale == "zh-CN" else "en"], highlight=False)
    for factor in (*insight.explanation.positive, *insight.explanation.negative):
        out.print(f"  {factor.line(locale)}", highlight=False, soft_wrap=True)
