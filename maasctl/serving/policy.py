"""The signature policy of `serve --require-signed`: a version loads only if a trusted key signed its files.

The check runs in the loader, so a refused version is a failed load like any other: the Manager keeps the
old version serving (labels included) and /readyz names the version and the reason.
"""

from __future__ import annotations

from typing import Any

from maasctl.refs import ModelRef
from maasctl.serving.manager import Loader
from maasctl.store.signing import TrustedKey, verify_version


def signed_loader(store: Any, keys: list[TrustedKey], inner: Loader) -> Loader:
    """`inner` (the CLI's TensorFlow loader) behind the signature check."""

    def load(name: str, version: int) -> tuple[Any, dict[str, Any]]:
        info = store.resolve(ModelRef(name, version=version))
        verify_version(store, info, keys, "serve --require-signed loads only signed versions")
        return inner(name, version)

    return load


def check_refs(store: Any, refs: list[ModelRef], keys: list[TrustedKey]) -> None:
    """Refuse to start when a version to serve now is not signed by a trusted key (one line, exit 1)."""
    for ref in refs:
        info = store.resolve(ref)
        verify_version(store, info, keys, "serve --require-signed loads only signed versions")
