"""CRM commands: import and export, the public pool, duplicates."""

from __future__ import annotations

import typer


def register_commands(app: typer.Typer) -> None:
    """Add the CRM's commands to the ``waggle`` command."""
    from waggle.crm.cli_import import register as register_import
    from waggle.crm.cli_pool import register as register_pool

    register_import(app)
    register_pool(app)
