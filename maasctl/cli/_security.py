"""Security options of `serve` (tokens, TLS, signature policy), resolved apart from serve.py's body."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from maasctl.cli import render


def _from_command_line(ctx: typer.Context, param: str) -> bool:
    from typer._click.core import ParameterSource

    return ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE


def resolve_tokens(ctx: typer.Context, token: Optional[str], token_file: Optional[Path]):
    """(token to hand a detached child, TokenTable or None). Checked before anything binds or loads.

    `--token-file` wins over a MAASCTL_TOKEN inherited from the environment (a client's setting); given
    together with `--token` on the command line it is an error. A token typed on the command line works
    but is visible in `ps` to every local user while this command runs: say so."""
    from maasctl.serving.auth import build_table, loose_permissions

    if token and token_file and not _from_command_line(ctx, "token"):
        token = None
    table = build_table(token, token_file)
    if token and _from_command_line(ctx, "token"):
        render.message("warning: --token on the command line is visible to other local users (ps); "
                       "prefer MAASCTL_TOKEN or --token-file")
    if token_file:
        warning = loose_permissions(token_file)
        if warning:
            render.message(warning)
    return token, table
