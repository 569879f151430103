"""``waggle governance aggregate ...``: aggregate-only answers and their lineage.

``ask`` answers a count, sum or average within the policy's aggregate grant
(small groups suppressed, differencing refused) and prints it with its
provenance; ``provenance`` prints a stored answer's provenance with the row
ids the user may read; ``replay`` reproduces it from the rows as they were
(exit code 5 when it cannot be reproduced exactly).
"""

from __future__ import annotations

from typing import Annotated

import typer

from waggle.governance.lineage_cli import (
    NOT_REPRODUCED_EXIT,
    AsUser,
    echo_json,
    parse_pairs,
)

aggregate_app = typer.Typer(
    help="Aggregate-only answers: ask, provenance, replay.", no_args_is_help=True
)

QueryId = Annotated[int, typer.Argument(help="The answered query's id.")]


def register(group: typer.Typer) -> None:
    """Add this module's commands to the ``governance`` group."""
    group.add_typer(aggregate_app, name="aggregate")


@aggregate_app.command("ask")
def ask(
    resource: Annotated[str, typer.Argument(help="contacts, accounts, ...")],
    measure: Annotated[
        str, typer.Option(help="count, sum:FIELD or avg:FIELD as the policy offers.")
    ] = "count",
    group_by: Annotated[
        list[str] | None, typer.Option(help="Group by a dimension; repeat.")
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option(help="DIMENSION=VALUE equality; repeat.")
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Answer an aggregate query as the user may ask it; print it with provenance."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.aggregates import run_aggregate

    with session_scope() as session:
        answer = run_aggregate(
            session,
            resolve_actor(session, as_user),
            resource=resource,
            measure=measure,
            group_by=tuple(group_by or ()),
            filters=parse_pairs(where, "--where"),
        )
        echo_json(answer.as_dict())


@aggregate_app.command("provenance")
def provenance(query_id: QueryId, as_user: AsUser = None) -> None:
    """Print an answer's provenance, listing only the row ids the user may read."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.aggregate_lineage import aggregate_provenance

    with session_scope() as session:
        found = aggregate_provenance(session, resolve_actor(session, as_user), query_id)
        echo_json(found.as_dict())


@aggregate_app.command("replay")
def replay(query_id: QueryId, as_user: AsUser = None) -> None:
    """Reproduce an answer from its rows as they were; exit 5 unless exact."""
    from waggle.cli import resolve_actor, session_scope
    from waggle.governance.aggregate_lineage import replay_aggregate

    with session_scope() as session:
        result = replay_aggregate(session, resolve_actor(session, as_user), query_id)
        echo_json(result.as_dict())
    if not result.is_reproduced:
        raise typer.Exit(NOT_REPRODUCED_EXIT)
