"""Commands ``waggle governance retention`` and ``waggle governance field-keys``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

retention_app = typer.Typer(help="Retention rules: show them, apply them.")
field_keys_app = typer.Typer(help="Data keys of field encryption: rotate, shred.")

RulesFile = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        envvar="WAGGLE_RETENTION_FILE",
        help="Retention rules YAML; default: the shipped rules.",
    ),
]
AsUser = Annotated[
    str | None, typer.Option("--as", help="Act as this user; their policy applies.")
]


def register_retention_commands(governance_app: typer.Typer) -> None:
    """Add the ``retention`` and ``field-keys`` groups (once) to ``governance_app``."""
    present = {group.name for group in governance_app.registered_groups}
    if "retention" not in present:
        governance_app.add_typer(retention_app, name="retention")
    if "field-keys" not in present:
        governance_app.add_typer(field_keys_app, name="field-keys")


@retention_app.command("show")
def retention_show(
    rules: RulesFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the retention rules in force, one line each."""
    from waggle.governance.retention import (
        describe_rule,
        load_retention_rules,
        rules_as_json,
    )

    loaded = load_retention_rules(rules)
    if as_json:
        typer.echo(rules_as_json(loaded))
        return
    typer.echo(f"retention rules from {loaded.source}:")
    for rule in loaded.rules:
        typer.echo(f"  {rule.id}  {rule.kind}: {describe_rule(rule)}")


@retention_app.command("apply")
def retention_apply(
    rules: RulesFile = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_user: AsUser = None,
) -> None:
    """Apply the retention rules now and print the records touched per rule."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.retention import apply_retention, load_retention_rules

    loaded = load_retention_rules(rules)
    with session_scope() as session:
        report = apply_retention(
            session, resolve_actor(session, as_user), dry_run=dry_run, rules=loaded
        )
    if as_json:
        outcomes = [
            {"rule": o.rule_id, "kind": o.kind, "counts": o.counts}
            for o in report.outcomes
        ]
        typer.echo(json.dumps({"dry_run": dry_run, "rules": outcomes}))
        return
    verb = "would change" if dry_run else "changed"
    for outcome in report.outcomes:
        counts = ", ".join(f"{n} {name}" for name, n in sorted(outcome.counts.items()))
        typer.echo(f"{outcome.rule_id}: {verb} {counts or 'nothing'}")


@field_keys_app.command("list")
def field_keys_list(as_user: AsUser = None) -> None:
    """List the data keys with their suite and status (never the key material)."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.field_crypto import list_field_keys

    with session_scope() as session:
        for key in list_field_keys(session, resolve_actor(session, as_user)):
            typer.echo(
                f"{key.key_id}  {key.suite}  {key.status}"
                f"  created {key.created_at.isoformat()}"
            )


@field_keys_app.command("rotate")
def field_keys_rotate(as_user: AsUser = None) -> None:
    """Make a new data key current and re-encrypt every sealed value to it."""
    from waggle.cli import resolve_actor, session_scope, settings
    from waggle.governance.field_crypto import rotate_field_keys

    config = settings()
    with session_scope() as session:
        report = rotate_field_keys(
            session, resolve_actor(session, as_user), settings=config
        )
    typer.echo(
        f"new key {report.new_key_id}: {report.re_encrypted} values re-encrypted,"
        f" {report.unreadable} unreadable (shredded keys)"
    )


@field_keys_app.command("shred")
def field_keys_shred(
    key_id: Annotated[str, typer.Argument(help="The data key to destroy.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the values are lost for good.")
    ] = False,
    as_user: AsUser = None,
) -> None:
    """Destroy one data key; every value sealed under it becomes unreadable."""
    from waggle.cli import resolve_actor, session_scope, settings
    from waggle.governance.field_crypto import shred_key

    if not yes:
        typer.echo("refused: shredding cannot be undone; pass --yes", err=True)
        raise typer.Exit(code=2)
    config = settings()
    with session_scope() as session:
        report = shred_key(
            session, resolve_actor(session, as_user), key_id, settings=config
        )
    typer.echo(f"shredded {report.key_id}: {report.unreadable} values now unreadable")
