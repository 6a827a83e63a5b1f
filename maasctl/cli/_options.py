"""Options shared by every command, declared once, and the per-invocation context object.

Each shared option's flags, metavar, environment variable and completion live here; a command passes only
the help sentence that is its own (`name: Annotated[str | None, name_option("Model name.")] = None`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from maasctl.cli._complete import complete_model, complete_ref
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
DebugOpt = Annotated[bool, typer.Option("--debug", envvar="MAASCTL_DEBUG", help="Show tracebacks for errors.")]
REF_HELP = "NAME, NAME@VERSION or NAME@ALIAS."


def name_option(help: str) -> Any:
    """`--name/-n NAME`: a model name, completed from the store."""
    return typer.Option("--name", "-n", metavar="NAME", help=help, autocompletion=complete_model)


def alias_option(help: str) -> Any:
    """`--alias/-a ALIAS` (repeatable)."""
    return typer.Option("--alias", "-a", metavar="ALIAS", help=help)


def token_option(help: str) -> Any:
    """`--token TOKEN`, also from $MAASCTL_TOKEN (a token on the command line is visible to local users)."""
    return typer.Option("--token", envvar="MAASCTL_TOKEN", show_envvar=True, metavar="TOKEN", help=help)


def ref_argument(help: str = REF_HELP, *, metavar: str = "REF") -> Any:
    """A REF argument (NAME[@VERSION|@ALIAS]), completed from the store."""
    return typer.Argument(metavar=metavar, help=help, autocompletion=complete_ref)


def choice_option(*decls: str, choices: tuple[str, ...], help: str) -> Any:
    """An option taking one of `choices`: shown as `[a|b|c]` in help and offered by shell completion.

    The value stays a plain string that the library checks (one error message, from the library)."""

    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete)]

    return typer.Option(*decls, metavar="[" + "|".join(choices) + "]", help=help, autocompletion=complete)


# --store and --debug after the subcommand too (`maasctl list --store DIR`): every command gets hidden copies
# that update the root's AppState. Their help stays on the root (`maasctl --help`), said once.
_LateStore = Annotated[str | None, typer.Option("--store", hidden=True, metavar="PATH|s3://BUCKET/PREFIX",
                                                     help="Artifact store directory (also before the command).")]
_LateDebug = Annotated[bool, typer.Option("--debug", hidden=True, help="Show tracebacks (also before the command).")]


def with_global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as a typer command that also accepts the global options after the command name."""
    sig = inspect.signature(func, eval_str=True)
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()]
    # typer passes the context to one parameter only: reuse the command's own, if it has one
    ctx_name = next((p.name for p in params if p.annotation is typer.Context), None)
    extra = [inspect.Parameter("global_store", inspect.Parameter.KEYWORD_ONLY, annotation=_LateStore, default=None),
             inspect.Parameter("global_debug", inspect.Parameter.KEYWORD_ONLY, annotation=_LateDebug, default=False)]
    if ctx_name is None:
        extra.append(inspect.Parameter("global_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        store, debug = kwargs.pop("global_store"), kwargs.pop("global_debug")
        ctx = kwargs[ctx_name] if ctx_name is not None else kwargs.pop("global_ctx")
        app_state = state(ctx)
        if store is not None:
            app_state.store_path = store
        if debug:
            app_state.debug = True
        return func(**kwargs)

    command.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params + extra}
    return command
