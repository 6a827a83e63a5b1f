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
AliasOpt = Annotated[list[str], typer.Option("--alias", "-a", metavar="ALIAS",
                                             help="Point ALIAS at the version in the target (repeatable).")]


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
    json_out: JsonOpt = False,
) -> None:
    """Copy a version from this store into another one.

    It becomes the other store's next version (idempotent by content).

    Example: maasctl push iris@3 --to s3://ml-models/registry --alias production
    """
    from maasctl.store import open_store
    from maasctl.store.transfer import copy_version

    _done(copy_version(state(ctx).store, open_store(to), ref, aliases=alias), json_out)


def pull(
    ctx: typer.Context,
    ref: RefArg,
    from_: Annotated[str, typer.Option("--from", metavar="STORE",
                                       help="Source store: a directory or s3://BUCKET/PREFIX.")],
    alias: AliasOpt = [],  # noqa: B006 - typer copies the default; never mutated
    json_out: JsonOpt = False,
) -> None:
    """Copy a version from another store into this one.

    It becomes this store's next version (idempotent by content).

    Example: maasctl pull iris@production --from s3://ml-models/registry
    """
    from maasctl.store import open_store
    from maasctl.store.transfer import copy_version

    _done(copy_version(open_store(from_), state(ctx).store, ref, aliases=alias), json_out)


def attach(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
