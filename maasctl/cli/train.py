"""The `train` command group (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def attach(app: typer.Typer) -> None:
    """Register this module's commands on the root app."""
