"""``waggle governance lineage ...``: provenance of figures."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add this module's commands to the ``governance`` group."""
