"""Dynamic shell completion of model names, refs, aliases and run ids, read from the store.

These callbacks run on every TAB press (the shell calls `maasctl` with `_MAASCTL_COMPLETE` set), so they
stay cheap: one SQLite read or one directory listing, no TensorFlow, and they never raise — a broken or
missing store completes to nothing instead of printing a traceback into the user's prompt.

They are typer `autocompletion=` callbacks: (ctx, incomplete) -> [(value, help), ...].
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from maasctl.store import ModelStore

Items = list[tuple[str, str]]


class FileCompletion(str):
    """A completion value meaning "complete file names starting with this" (see cli/completion.py).

    typer's autocompletion wrapper only passes strings and (value, help) tuples through, so the request
    for file-name completion travels as a marked string; the shell scripts expand it with the shell's own
    file completion, which handles quoting, `~` and directories better than Python could.
    """

    kind = "file"


def store_from_context(ctx: typer.Context | None) -> ModelStore:
    """The store the command line being completed points at: --store, else $MAASCTL_HOME, else ~/.maasctl.

    At completion time the root callback does not run, so the parsed (resilient) --store value is read
    from the root context's params rather than from ctx.obj.
    """
    from maasctl.store import open_store

    root: Any = None
    if ctx is not None:
        root_ctx = ctx.find_root()
        root = (ctx.params or {}).get("global_store")  # `maasctl show --store DIR ...` (after the command)
        if root is None:
            root = root_ctx.params.get("store") if root_ctx.params else None
        if root is None and root_ctx.obj is not None:
            root = getattr(root_ctx.obj, "store_path", None)
    return open_store(root)


def _safe(fn: Callable[[typer.Context | None, str], Items]) -> Callable[[typer.Context, str], Items]:
    def wrapper(ctx: typer.Context, incomplete: str) -> Items:
        try:
            return fn(ctx, incomplete or "")
        except Exception:  # completion must never break the user's prompt
            if os.environ.get("MAASCTL_DEBUG"):
                raise
            return []

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.__annotations__ = {"ctx": typer.Context, "incomplete": str, "return": Items}
    return wrapper


def model_items(store: ModelStore, incomplete: str) -> Items:
    return [(m.name, f"{m.count} version(s), latest {m.latest}") for m in store.list_models()
            if m.name.startswith(incomplete)]


def ref_items(store: ModelStore, incomplete: str) -> Items:
    """NAME, NAME@ALIAS and NAME@VERSION for every model whose name matches what is typed so far."""
    name_part, at, _ = incomplete.partition("@")
    if at:
        names = [name_part]
    else:
        names = [m.name for m in store.list_models() if m.name.startswith(name_part)]
    if not names:
        return []
    snap = store.snapshot(names)
    out: Items = []
    for name in names:
        entry = snap.get(name) or {}
        versions = sorted(entry.get("versions") or [])
        if not versions:
            continue
        out.append((name, f"latest (version {versions[-1]})"))
        for alias, version in sorted((entry.get("aliases") or {}).items()):
            out.append((f"{name}@{alias}", f"alias -> version {version}"))
        for version in reversed(versions):
            out.append((f"{name}@{version}", "version"))
    return [item for item in out if item[0].startswith(incomplete)]


def run_items(store: ModelStore, incomplete: str) -> Items:
    """Run ids, newest first (ids sort by creation time)."""
    runs_dir: Path = store.runs_dir
    if not runs_dir.is_dir():
        return []
    ids = sorted((p.name for p in runs_dir.iterdir()
                  if p.name.startswith(incomplete) and not p.name.startswith(".") and (p / "run.json").is_file()),
                 reverse=True)
    return [(run_id, "run") for run_id in ids]


@_safe
def complete_model(ctx: typer.Context | None, incomplete: str) -> Items:
    """Model names in the store."""
    return model_items(store_from_context(ctx), incomplete)


@_safe
def complete_ref(ctx: typer.Context | None, incomplete: str) -> Items:
    """Model refs: NAME, NAME@ALIAS, NAME@VERSION."""
    return ref_items(store_from_context(ctx), incomplete)


@_safe
def complete_alias(ctx: typer.Context | None, incomplete: str) -> Items:
    """Aliases of the model named by the command's NAME argument (alias rm/history NAME ALIAS), or by its REF
    argument's name part (alias set REF ALIAS: the aliases one may move)."""
    params = (ctx.params or {}) if ctx is not None else {}
    name = params.get("name") or (params.get("ref") or "").partition("@")[0]
    if not name:
        return []
    aliases = store_from_context(ctx).aliases(name)
    return [(a, f"-> version {v}") for a, v in sorted(aliases.items()) if a.startswith(incomplete)]


@_safe
def complete_run(ctx: typer.Context | None, incomplete: str) -> Items:
    """Run ids in the store, newest first."""
    return run_items(store_from_context(ctx), incomplete)


@_safe
def complete_source(ctx: typer.Context | None, incomplete: str) -> Items:
    """What `register` and `package` accept: run ids, plus file names (directories and .maas files)."""
    return [*run_items(store_from_context(ctx), incomplete), (FileCompletion(incomplete), "")]



@_safe
def complete_file(ctx: typer.Context | None, incomplete: str) -> Items:
    """File names, for file arguments declared as plain strings (e.g. predict --input)."""
    return [(FileCompletion(incomplete), "")]


@_safe
def complete_run_or_ref(ctx: typer.Context | None, incomplete: str) -> Items:
    """What `package` and `inspect` accept: run ids, model refs, and file names."""
    store = store_from_context(ctx)
    return [*run_items(store, incomplete), *ref_items(store, incomplete), (FileCompletion(incomplete), "")]


@_safe
def complete_server(ctx: typer.Context | None, incomplete: str) -> Items:
    """Ids of this store's running detached servers (maasctl stop ID)."""
    from maasctl.serving.records import list_servers

    return [(s.id, f"{s.url} {' '.join(s.refs)}".strip()) for s in list_servers(store_from_context(ctx))
            if s.id.startswith(incomplete)]


@_safe
def complete_ref_or_file(ctx: typer.Context | None, incomplete: str) -> Items:
    """What `inspect` accepts: model refs and file names (.maas packages)."""
    return [*ref_items(store_from_context(ctx), incomplete), (FileCompletion(incomplete), "")]
