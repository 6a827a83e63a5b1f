"""Register from any source: a SavedModel directory, a package file, or a training run id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, NotFound
from maasctl.store import ModelStore, RegisterResult


def register_source(store: ModelStore, source: str, name: str | None, *, feature_names: list[str] | None = None,
                    **options: Any) -> RegisterResult:
    """Dispatch on what SOURCE is; every path ends in `Store.publish`, so the rules are the same.

    `feature_names` (a SavedModel directory only: runs and packages record their own) name the input columns."""
    path = Path(source)
    if path.is_dir():
        if not name:
            raise InvalidInput(f"--name is required when registering a SavedModel directory ({source})")
        if feature_names is not None:
            options["meta"] = {**(options.get("meta") or {}), "feature_names": _checked_features(path, feature_names)}
        return store.register(path, name, **options)
    if feature_names is not None:
        raise InvalidInput(f"--features is for a SavedModel directory; {source} is a package or run, which "
                           f"records its feature names itself")
    if path.is_file():
        from maasctl.package.build import register_package

        return register_package(store, path, name, **options)
    from maasctl.training.runs import is_run_ref, register_run

    if not path.exists() and is_run_ref(store, source):
        return register_run(store, source, name, **options)
    raise NotFound(f"{source}: no such directory, package file or run id (see: maasctl runs list)")


def _checked_features(path: Path, names: list[str]) -> list[str]:
    """--features against the serving signature: distinct, non-empty, as many as the input has columns."""
    from maasctl.store.savedmodel import read_signatures

    if not names or any(not n for n in names):
        raise InvalidInput(f"--features {','.join(names)}: give comma-separated, non-empty names")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise InvalidInput(f"--features: '{dup}' appears twice")
    sig = read_signatures(path).get("serving_default") or {}
    inputs = sig.get("inputs") or {}
    if len(inputs) == 1:
        shape = next(iter(inputs.values())).get("shape")
        width = shape[1] if shape and len(shape) == 2 else 1 if shape and len(shape) == 1 else None
    else:
        width = len(inputs) or None
    if width is not None and width > 0 and width != len(names):
        raise InvalidInput(f"--features: {len(names)} names, the model's serving_default input takes {width} "
                           f"columns ({path})")
    return names
