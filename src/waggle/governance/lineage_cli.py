"""``waggle governance lineage ...``: provenance of figures.

``compute`` computes a figure and stores its provenance, ``show`` prints a
provenance, ``records`` the source records with their field edits, and
``replay`` reproduces the figure from its provenance (exit code 5 when it
cannot be reproduced exactly).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

lineage_app = typer.Typer(
    help="Lineage of figures: provenance, drill-down, replay.", no_args_is_help=True
)

AsUser = Annotated[
    str | None, typer.Option("--as", help="Act as this user; their policy applies.")
]
FigureId = Annotated[int, typer.Argument(help="The figure's provenance id.")]
NOT_REPRODUCED_EXIT = 5


def register(group: typer.Typer) -> None:
    """Add this module's commands to the ``governance`` group."""
    group.add_typer(lineage_app, name="lineage")


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON, Chinese as it is."""
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True))


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """Return ``FIELD=VALUE`` options as a dict, JSON values decoded.

    Raises:
        InvalidInput: a pair without ``=`` or without a field.
    """
    from waggle.core.errors import InvalidInput

    found: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"{option}: expected FIELD=VALUE, got {pair!r}")
        try:
            found[name] = json.loads(raw)
        except ValueError:
            found[name] = raw
    return found


@lineage_app.command("compute")
def compute(
    resource: Annotated[str, typer.Argument(help="accounts, opportunities, ...")],
    name: Annotated[str, typer.Option(help="What the figure is called.")] = "figure",
    measure: Annotated[
        str, typer.Option(help="count, sum:FIELD, avg:FIELD, share, weighted:F:W")
    ] = "count",
    where: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=VALUE (JSON for numbers and lists); repeat."),
    ] = None,
    group_by: Annotated[list[str] | None, typer.Option(help="Group by FIELD.")] = None,
    part: Annotated[
        list[str] | None, typer.Option(help="A share's numerator FIELD=VALUE.")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Compute a figure as the user may see it and store its provenance."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.lineage import FigureSpec, compute_figure
    from waggle.governance.lineage_api import provenance_body

    spec = FigureSpec(
        resource=resource,
        measure=measure,
        filters=parse_pairs(where, "--where"),
        group_by=tuple(group_by or ()),
        part=parse_pairs(part, "--part"),
    )
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        figure = compute_figure(session, actor, name=name, spec=spec)
        body = provenance_body(session, actor, figure, is_new=True)
    echo_json(body)


@lineage_app.command("show")
def show(figure_id: FigureId, as_user: AsUser = None) -> None:
    """Print a figure's provenance and whether it is intact."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.lineage import get_figure
    from waggle.governance.lineage_api import provenance_body

    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        figure = get_figure(session, actor, figure_id)
        echo_json(provenance_body(session, actor, figure))


@lineage_app.command("records")
def records(figure_id: FigureId, as_user: AsUser = None) -> None:
    """Print the source records the user may read, with their field edits."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.lineage import drill_down

    with session_scope() as session:
        found = drill_down(session, resolve_actor(session, as_user), figure_id)
        echo_json(found.as_dict())


@lineage_app.command("replay")
def replay(figure_id: FigureId, as_user: AsUser = None) -> None:
    """Reproduce a figure from its provenance; exit 5 unless exactly reproduced."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.lineage import replay_figure

    with session_scope() as session:
        result = replay_figure(session, resolve_actor(session, as_user), figure_id)
    echo_json(result.as_dict())
    if not result.is_reproduced:
        raise typer.Exit(NOT_REPRODUCED_EXIT)
