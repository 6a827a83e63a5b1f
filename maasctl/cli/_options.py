"""Options shared by every command, declared once, and the per-invocation context object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from maasctl.store import ModelStore, open_store


@dataclass
class AppState:
    store_path: str | None
    debug: bool = False

    @property
    def store(self) -> ModelStore:
        return open_store(self.store_path)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if obj is None:  # command invoked without the root callback (e.g. in tests)
        obj = ctx.find_root().obj = AppState(None)
    return obj


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="MAASCTL_HOME", show_envvar=True, metavar="PATH|s3://BUCKET/PREFIX",
                 help="Artifact store: a directory, or a bucket prefix (needs maasctl[s3]) [default: ~/.maasctl]."),
]
