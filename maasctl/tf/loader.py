"""Load a stored SavedModel and call its signatures with NumPy arrays (shared by serve and predict --local)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.store.savedmodel import Signature, read_signatures
from maasctl.tensors import DEFAULT_SIGNATURE
from maasctl.tf import load_tensorflow

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore


class LoadedModel:
    """A SavedModel opened with `tf.saved_model.load`, with its signature table read from the proto."""

    def __init__(self, path: Path, signatures: dict[str, Signature], module: Any) -> None:
        self.path = path
        self.signatures = signatures
        self._module = module
        self._functions = {name: module.signatures[name] for name in signatures if name in module.signatures}

    def predict(self, inputs: dict[str, np.ndarray], signature: str = DEFAULT_SIGNATURE) -> dict[str, np.ndarray]:
        """Call one signature; inputs must already match its names and dtypes (the caller validates)."""
        tf = load_tensorflow()
        try:
            fn = self._functions[signature]
        except KeyError:
            raise InvalidInput(f"unknown signature '{signature}' (available: {', '.join(self._functions)})") from None
        tensors = {k: tf.convert_to_tensor(v) for k, v in inputs.items()}
        result = fn(**tensors)
        return {k: v.numpy() for k, v in result.items()}


def load_model(path: str | Path, *, check: list[str] | None = None) -> LoadedModel:
    """Open a SavedModel directory. `check` is a list of digest problems found beforehand: any refuses the load."""
    path = Path(path)
    if check:
        raise OperationFailed(f"refusing to load {path}: {check[0]}" + (f" (+{len(check) - 1} more)" if len(check) > 1 else ""))
    signatures = read_signatures(path)
    tf = load_tensorflow()
    try:
        module = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types; the message is what matters
        raise OperationFailed(f"cannot load SavedModel {path}: {str(exc).splitlines()[0]}") from None
    return LoadedModel(path, signatures, module)


def load_version(store: ModelStore, ref: str) -> tuple[Any, LoadedModel]:
    """Resolve a ref in a store, check every file against its recorded digest, then load it."""
    info = store.resolve(ref)
    with store.open_version(info) as path:
        return info, load_model(path)
