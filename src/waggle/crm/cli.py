"""CRM commands: import, export, public pool."""

from __future__ import annotations

import typer


def register_commands(app: typer.Typer) -> None:
    """Add the CRM's commands to the ``waggle`` command."""
    return None
