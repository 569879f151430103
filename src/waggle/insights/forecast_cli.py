"""``waggle insights forecast ...`` and the customer-health and manager commands."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add this module's commands to the ``insights`` group."""
