"""Security options of `serve` (tokens, TLS, signature policy), resolved apart from serve.py's body."""

from __future__ import annotations

from pathlib import Path

import typer

from maasctl.cli import render


def _from_command_line(ctx: typer.Context, param: str) -> bool:
    from typer._click.core import ParameterSource

    return ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE


def resolve_tokens(ctx: typer.Context, token: str | None, token_file: Path | None):
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


def resolve_signing(require_signed: bool, keys: list[Path], store, refs, backend: str = "maasctl"):
    """The trusted keys of `serve --require-signed` (None without it), after checking that every version
    to serve now is signed by one of them: refuse to start otherwise."""
    from maasctl.errors import InvalidInput

    if not require_signed:
        if keys:
            raise InvalidInput("--key is for --require-signed")
        return None
    if backend != "maasctl":
        raise InvalidInput("--require-signed needs --backend maasctl (tensorflow_model_server checks no signature)")
    from maasctl.serving.policy import check_refs
    from maasctl.store.signing import trusted_keys

    trusted = trusted_keys(keys)
    if not trusted:
        raise InvalidInput("--require-signed needs a trusted public key: --key PUBLIC.pem or MAASCTL_TRUSTED_KEYS")
    check_refs(store, refs, trusted)
    return trusted


def resolve_tls(cert: Path | None, key: Path | None, backend: str, tokens=None):
    """TlsFiles or None; a missing, unreadable or mismatched file is InvalidInput (exit 2) before binding.
    tensorflow_model_server checks no token and speaks no TLS on its REST port: refuse rather than serve
    without the protection asked for."""
    from maasctl.errors import InvalidInput
    from maasctl.serving.tls import tls_files

    if tokens is not None and backend == "tfserving":
        raise InvalidInput("--token/--token-file need --backend maasctl (tensorflow_model_server's REST API "
                           "checks no token; put an authenticating proxy in front)")
    files = tls_files(cert, key)
    if files is not None and backend != "maasctl":
        raise InvalidInput("--tls-cert/--tls-key need --backend maasctl (for tensorflow_model_server, put a "
                           "TLS-terminating proxy in front)")
    return files
