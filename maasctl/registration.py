"""Register from any source: a SavedModel directory, a package file, or a training run id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, NotFound
from maasctl.store import RegisterResult, Store


def register_source(store: Store, source: str, name: str | None, **options: Any) -> RegisterResult:
    """Dispatch on what SOURCE is; every path ends in `Store.publish`, so the rules are the same."""
    path = Path(source)
    if path.is_dir():
        if not name:
            raise InvalidInput(f"--name is required when registering a SavedModel directory ({source})")
        return store.register(path, name, **options)
    if path.is_file():
        from maasctl.package.build import register_package

        return register_package(store, path, name, **options)
    from maasctl.training.runs import is_run_ref, register_run

    if not path.exists() and is_run_ref(store, source):
        return register_run(store, source, name, **options)
    raise NotFound(f"{source}: no such directory, package file or run id (see: maasctl runs list)")
