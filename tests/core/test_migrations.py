"""Migrations build the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from waggle.core.db import Base
from waggle.core.migrate import downgrade, upgrade


def test_upgrade_from_empty_matches_the_models(engine: Engine) -> None:
    """After `upgrade head` on an empty database, models and schema do not differ."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_downgrade_to_base_and_upgrade_again(database_url: str, engine: Engine) -> None:
    """The schema can be removed and rebuilt, leaving every model table in place."""
    if database_url.startswith("postgresql"):
        engine.dispose()
    downgrade(database_url, "base")
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    upgrade(database_url)

    assert remaining == set()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
