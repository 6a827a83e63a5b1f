"""Transfer commands: push and pull a version between stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_ref
from maasctl.cli._options import JsonOpt, state

if TYPE_CHECKING:
    from maasctl.store import RegisterResult

RefArg = Annotated[str, typer.Argument(metavar="REF", help="NAME, NAME@VERSION or NAME@ALIAS.",
                                       autocompletion=complete_ref)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (there is none off a terminal or "
                                                            "with --json either).")]
AliasOpt = Annotated[list[str], typer.Option("--alias", "-a", metavar="ALIAS",
                                             help="Point ALIAS at the version in the target (repeatable).")]


def _copy(src, dst, ref: str, aliases: list[str], quiet: bool, json_out: bool) -> RegisterResult:
    """copy_version with byte progress bars on stderr when it is a terminal (not with --quiet or --json)."""
    import sys

    from maasctl.store.transfer import copy_version

    if quiet or json_out or not sys.stderr.isatty():
        return copy_version(src, dst, ref, aliases=aliases)
    from maasctl.cli.progress import BytesProgress

    bar = BytesProgress()
    try:
        return copy_version(src, dst, ref, aliases=aliases, progress=bar.phase)
    finally:
        bar.stop()


def _done(result: RegisterResult, json_out: bool) -> None:
    if json_out:
        render.emit_json(result.to_json())
        return
    if not result.created:
        render.message(f"identical content is already registered as {result.info.ref}")
    print(result.info.ref)


def push(
    ctx: typer.Context,
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", metavar="STORE", help="Target store: a directory or s3://BUCKET/PREFIX.")],
    alias: AliasOpt = [],  # noqa: B006 - typer copies the default; never mutated
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy a version from this store into another one.

    It becomes the other store's next version (idempotent by content), signature included. A progress bar
    shows on a terminal for transfers over a second.

    Example: maasctl push iris@3 --to s3://ml-models/registry --alias production
    """
    from maasctl.store import open_store

    _done(_copy(state(ctx).store, open_store(to), ref, alias, quiet, json_out), json_out)


def pull(
    ctx: typer.Context,
    ref: RefArg,
    from_: Annotated[str, typer.Option("--from", metavar="STORE",
                                       help="Source store: a directory or s3://BUCKET/PREFIX.")],
    alias: AliasOpt = [],  # noqa: B006 - typer copies the default; never mutated
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy a version from another store into this one.

    It becomes this store's next version (idempotent by content), signature included. A progress bar
    shows on a terminal for transfers over a second.

    Example: maasctl pull iris@production --from s3://ml-models/registry
    """
    from maasctl.store import open_store

    _done(_copy(open_store(from_), state(ctx).store, ref, alias, quiet, json_out), json_out)


def attach(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
