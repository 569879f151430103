"""The ``waggle rules`` commands: validate, apply, list, run, backtest, firings."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from waggle.cli import AsUser, out, resolve_actor, session_scope, settings
from waggle.core.clock import now
from waggle.core.db import make_engine, make_session_factory
from waggle.core.errors import InvalidInput
from waggle.rules import service
from waggle.rules.language import load_rules_text, rule_to_data
from waggle.rules.wording import preview

rules_app = typer.Typer(help="Low-code rules and interventions.", no_args_is_help=True)
experiment_app = typer.Typer(help="A/B experiments of rules.", no_args_is_help=True)
rules_app.add_typer(experiment_app, name="experiment")


def register_commands(app: typer.Typer) -> None:
    """Add ``rules`` to the ``waggle`` command (once)."""
    if not any(group.name == "rules" for group in app.registered_groups):
        app.add_typer(rules_app, name="rules")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"rules file {path}: {exc}") from exc


@rules_app.command("validate")
def validate(path: Path) -> None:
    """Check a rules file and print each rule in plain words (zh-CN and en)."""
    for rule in load_rules_text(_text(path), source=path.name):
        words = preview(rule)
        out.print(f"{rule.key}: {words['zh-CN']}", highlight=False, soft_wrap=True)
        out.print(
            f"{' ' * len(rule.key)}  {words['en']}", highlight=False, soft_wrap=True
        )


@rules_app.command("apply")
def apply(path: Path, as_user: AsUser = None) -> None:
    """Save the rules of a YAML file (all or nothing); the engine takes them up live."""
    with session_scope() as session:
        records = service.apply_rules_text(
            session, resolve_actor(session, as_user), _text(path), source=path.name
        )
        for record in records:
            out.print(f"{record.key}: revision {record.revision}", highlight=False)


@rules_app.command("templates")
def templates(
    enable: Annotated[bool, typer.Option(help="Switch the templates on.")] = False,
    as_user: AsUser = None,
) -> None:
    """Install the built-in rules (stalled, ghosted, single-threaded, ...)."""
    with session_scope() as session:
        records = service.install_templates(
            session, resolve_actor(session, as_user), enable=enable
        )
        for record in records:
            state = "on" if record.is_enabled else "off"
            out.print(f"{record.key}: {state}", highlight=False)


@rules_app.command("list")
def list_rules(as_user: AsUser = None) -> None:
    """List the saved rules."""
    with session_scope() as session:
        records = service.list_rules(session, resolve_actor(session, as_user))
        table = Table("key", "on", "revision", "when")
        for record in records:
            rule = service.rule_from_record(record)
            table.add_row(
                record.key,
                "yes" if record.is_enabled else "no",
                str(record.revision),
                escape(preview(rule)["en"]),
            )
    out.print(table)


@rules_app.command("enable")
def enable(key: str, off: bool = False, as_user: AsUser = None) -> None:
    """Switch a rule on (``--off``: off)."""
    with session_scope() as session:
        record = service.set_enabled(
            session, resolve_actor(session, as_user), key, enabled=not off
        )
        out.print(f"{record.key}: {'on' if record.is_enabled else 'off'}")


@rules_app.command("run")
def run(
    limit: Annotated[int, typer.Option(help="Events per run.")] = 5000,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Repeat until no event is left.")
    ] = False,
) -> None:
    """Run the live engine over new events once (``waggle serve`` runs it always)."""
    from waggle.rules.live import build_runner

    engine = make_engine(settings().database_url)
    try:
        runner = build_runner(make_session_factory(engine))
        events = firings = 0
        while True:
            report = runner.run_once(limit=limit)
            events += report.events
            firings += report.firings
            if not until_idle or report.events == 0:
                break
    finally:
        engine.dispose()
    out.print(f"events {events}, firings {firings}, cursor {report.last_event_id}")


@rules_app.command("backtest")
def backtest(
    target: Annotated[str, typer.Argument(help="A saved rule's key, or a YAML file.")],
    days: Annotated[int, typer.Option(help="How far back.")] = 90,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Run a rule over history: how often it would have fired, and the outcomes."""
    until = now()
    since = until - dt.timedelta(days=days)
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        data = _rule_data(session, actor, target)
        report = service.run_backtest(session, actor, data, since=since, until=until)
    if as_json:
        out.print_json(json.dumps(report.as_dict(firing_limit=50), ensure_ascii=False))
        return
    out.print(
        f"{report.rule_key}: {len(report.firings)} firings on "
        f"{len(report.deals_fired)} deals from {report.events_read} events "
        f"({since.date()} .. {until.date()}); by status {report.by_status}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table("group", "deals", "closed", "won", "win rate", "cycle (days)")
    for label, group in (("fired", report.fired), ("others", report.others)):
        if group is not None:
            rate = "-" if group.win_rate is None else f"{group.win_rate:.1%}"
            cycle = "-" if group.mean_cycle_days is None else f"{group.mean_cycle_days}"
            table.add_row(
                label, str(group.deals), str(group.closed), str(group.won), rate, cycle
            )
    out.print(table)


def _rule_data(session, actor, target: str):  # type: ignore[no-untyped-def]
    path = Path(target)
    if path.suffix in (".yaml", ".yml") and path.exists():
        rules = load_rules_text(_text(path), source=path.name)
        return rule_to_data(rules[0])
    return service.get_rule(session, actor, target).definition


@rules_app.command("firings")
def firings(
    rule: Annotated[str | None, typer.Option(help="Only this rule.")] = None,
    limit: int = 30,
    as_user: AsUser = None,
) -> None:
    """Show the most recent firings with why they fired."""
    with session_scope() as session:
        rows = service.list_firings(
            session, resolve_actor(session, as_user), rule_key=rule, limit=limit
        )
        table = Table("id", "rule", "deal", "at", "status", "why")
        for row in rows:
            table.add_row(
                str(row.id),
                row.rule_key,
                str(row.opportunity_id or "-"),
                row.fired_at.strftime("%Y-%m-%d %H:%M"),
                row.status,
                escape(row.explanation.get("zh-CN", "")),
            )
    out.print(table)


@experiment_app.command("report")
def experiment_report(
    key: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Print an experiment's report: effect, interval, p-value, CUPED, warnings."""
    from waggle.rules.experiments import experiment_report as build

    with session_scope() as session:
        report = build(session, resolve_actor(session, as_user), key)
    data = report.as_dict()
    if as_json:
        out.print_json(json.dumps(data, ensure_ascii=False, default=str))
        return
    for line in _report_lines(data):
        out.print(line, highlight=False, soft_wrap=True)


def _report_lines(data: dict) -> list[str]:  # type: ignore[type-arg]
    lines: list[str] = []
    headline = data.get("headline") or {}
    lines.extend(str(text) for text in headline.values())
    for name in ("warnings",):
        for warning in data.get(name) or []:
            lines.append(f"! {warning}")
    return lines or [json.dumps(data, ensure_ascii=False, default=str)]
