"""Options shared by every command, declared once, and the per-invocation context object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from maasctl.store import Store


@dataclass
class AppState:
    store_path: Path | None
    debug: bool = False

    @property
    def store(self) -> Store:
        return Store(self.store_path)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if obj is None:  # command invoked without the root callback (e.g. in tests)
        obj = ctx.find_root().obj = AppState(None)
    return obj


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", envvar="MAASCTL_HOME", show_envvar=True,
                 help="Artifact store directory [default: ~/.maasctl].", file_okay=False),
]
