"""``waggle insights forecast ...`` and the customer-health and manager commands."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from waggle.cli import AsUser, out, resolve_actor, session_scope
from waggle.core.clock import as_utc
from waggle.insights import customer_health, forecast, forecast_lineage, manager

Locale = Annotated[str, typer.Option(help="zh-CN or en.")]
AsOf = Annotated[
    dt.datetime | None,
    typer.Option("--as-of", help="Compute as of this instant (UTC); default now."),
]


def _instant(value: dt.datetime | None) -> dt.datetime | None:
    return as_utc(value) if value else None


def register(group: typer.Typer) -> None:
    """Add this module's commands to the ``insights`` group."""
    group.command("forecast")(forecast_command)
    group.command("backtest")(backtest_command)
    group.command("customer-health")(customer_health_command)
    group.command("anomalies")(anomalies_command)
    group.command("regions")(regions_command)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def forecast_command(
    period: Annotated[
        str | None, typer.Argument(help="2026-Q1 or 2026-M03; default this quarter.")
    ] = None,
    level: Annotated[str, typer.Option(help="rep, team or region.")] = "rep",
    as_of: AsOf = None,
    as_user: AsUser = None,
    lineage: Annotated[
        bool, typer.Option(help="Store each headline figure's provenance.")
    ] = False,
) -> None:
    """Show forecast categories, the weighted pipeline and the roll-up to quota."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        result = forecast.build_forecast(session, actor, period, as_of=_instant(as_of))
        ids = (
            forecast_lineage.headline_lineage(session, actor, result) if lineage else {}
        )
    out.print(f"forecast {result.period} ({result.starts_on} - {result.ends_on})")
    for name, amount in forecast_lineage.headline_values(result).items():
        shown = f"  lineage {ids[name]}" if name in ids else ""
        out.print(f"  {name:<10} {amount:>16,.2f}{shown}", highlight=False)
    out.print(f"{level}  quota  closed  weighted  attainment  projected")
    for line in result.rollup:
        if line.level == level:
            out.print(
                f"  {line.name}  {line.quota:,.2f}  {line.closed:,.2f}  "
                f"{line.weighted:,.2f}  {_percent(line.attainment)}  "
                f"{_percent(line.projected_attainment)}",
                highlight=False,
            )


def backtest_command(
    granularity: Annotated[str, typer.Option(help="month or quarter.")] = "month",
    periods: Annotated[int, typer.Option(help="How many past periods.")] = 12,
    as_of: AsOf = None,
    as_user: AsUser = None,
) -> None:
    """Replay past forecasts from what was known then; per-period error and MAPE."""
    with session_scope() as session:
        result = forecast.backtest(
            session,
            resolve_actor(session, as_user),
            granularity=granularity,
            count=periods,
            as_of=_instant(as_of),
        )
    for item in result.periods:
        band = {True: "in band", False: "OUT of band", None: "no win"}
        out.print(
            f"{item.period}  forecast {item.forecast:,.2f}  actual {item.actual:,.2f}"
            f"  error {_percent(item.error)}  {band[item.is_within_band]}",
            highlight=False,
        )
    out.print(f"MAPE {_percent(result.mape)} (band +/-10%)", highlight=False)


def customer_health_command(
    account_id: Annotated[
        int | None, typer.Argument(help="One account; default all in scope.")
    ] = None,
    thresholds: Annotated[
        Path | None, typer.Option(help="A thresholds YAML file to use instead.")
    ] = None,
    signals: Annotated[
        bool, typer.Option("--signals", help="List the signals and exit.")
    ] = False,
    store: Annotated[
        bool, typer.Option("--store", help="Store the results as the latest snapshot.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Riskiest accounts shown.")] = 20,
    locale: Locale = "zh-CN",
    as_of: AsOf = None,
    as_user: AsUser = None,
) -> None:
    """Show accounts' renewal and churn risk with the reasons in the manager's words."""
    if signals:
        for key, source, zh, en in customer_health.SIGNALS:
            label = zh if locale == "zh-CN" else en
            out.print(f"{key}  [{source}]  {label}", highlight=False)
        return
    chosen = customer_health.load_thresholds(thresholds)
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        ids = None if account_id is None else [account_id]
        if store:
            stored = customer_health.store_customer_health(
                session, actor, as_of=_instant(as_of), thresholds=chosen
            )
            out.print(f"{stored} accounts stored", highlight=False)
            return
        items = customer_health.assess_accounts(
            session, actor, ids, as_of=_instant(as_of), thresholds=chosen
        )
    items.sort(key=lambda item: (-item.risk, item.account_id))
    for item in items[:limit]:
        out.print(
            f"{item.account_id} {item.name}: health {item.health} "
            f"(risk {item.risk}, {item.level})",
            highlight=False,
        )
        for reason in item.reasons:
            out.print(f"  {reason.line(locale)}", highlight=False, soft_wrap=True)
    out.print(
        f"{len(items)} accounts; distribution {customer_health.distribution(items)}",
        highlight=False,
    )


def anomalies_command(
    threshold: Annotated[
        float, typer.Option(help="Robust z-score at which a value departs.")
    ] = manager.THRESHOLD,
    locale: Locale = "zh-CN",
    as_of: AsOf = None,
    as_user: AsUser = None,
) -> None:
    """List reps and deals whose behaviour departs from their peers, and why."""
    with session_scope() as session:
        found = manager.find_anomalies(
            session,
            resolve_actor(session, as_user),
            threshold=threshold,
            as_of=_instant(as_of),
        )
    for item in found:
        out.print(
            f"{item.kind} {item.subject_id} {item.name}: {item.reason[locale]}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"{len(found)} departures", highlight=False)


def regions_command(
    region_a: Annotated[str | None, typer.Argument(help="Region code.")] = None,
    region_b: Annotated[str | None, typer.Argument(help="Region code.")] = None,
    locale: Locale = "zh-CN",
    as_of: AsOf = None,
    as_user: AsUser = None,
) -> None:
    """Split the win-rate gap of two regions into mix and rate effects per factor."""
    with session_scope() as session:
        result = manager.compare_regions(
            session,
            resolve_actor(session, as_user),
            region_a,
            region_b,
            as_of=_instant(as_of),
        )
    if result is None:
        out.print("fewer than two regions with closed deals in scope")
        return
    out.print(
        f"{result.region_a} {float(result.rate_a):.1%} vs {result.region_b} "
        f"{float(result.rate_b):.1%}: gap {float(result.gap) * 100:+.1f} points",
        highlight=False,
    )
    for factor in result.factors:
        out.print(f"  {factor.summary()[locale]}", highlight=False, soft_wrap=True)
