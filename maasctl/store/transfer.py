"""Copy a version between any two stores (local <-> S3, S3 <-> S3): `maasctl push` and `maasctl pull`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maasctl.errors import OperationFailed
from maasctl.refs import ModelRef
from maasctl.store import manifest as mf
from maasctl.store.base import ModelStore
from maasctl.store.types import RegisterResult

# progress(phase, total bytes) -> a callback told how many more bytes went by (from any thread)
Progress = Callable[[str, int], Callable[[int], None]]


def _is_local(store: ModelStore) -> bool:
    from maasctl.store.local import LocalStore

    return isinstance(store, LocalStore)


def copy_version(src: ModelStore, dst: ModelStore, ref: str | ModelRef, *,
                 aliases: list[str] | tuple[str, ...] = (), progress: Progress | None = None) -> RegisterResult:
    """Register src's version in dst as its next version (or find its twin: idempotent by content digest).

    The files are read through `open_version` (digests checked, remote ones downloaded into the cache) and
    keep their metadata, lineage, description, tags and signature bundle; the target records where they
    came from. Into a remote store the checked files are uploaded as they are (no second hashing pass).
    """
    info = src.resolve(ref)
    manifest = src.manifest(info)
    bundle = src.signature(info)
    options: dict[str, Any] = {"aliases": aliases, "description": info.description, "tags": info.tags,
               "meta": mf.model_meta(manifest), "source_label": f"{src.location} {info.ref}"}
    down = progress("downloading", info.size) if progress is not None and not _is_local(src) else None
    with src.open_version(info, progress=down) as path:
        if _is_local(dst):
            result = dst.register(path, info.name, bundle=bundle, **options)
        else:
            up = progress("uploading", info.size) if progress is not None else None
            result = dst.publish(path, mf.file_entries(manifest), info.name,
                                 signatures=manifest.get("signatures") or {}, bundle=bundle, progress=up,
                                 **options)
    if result.info.sha256 != info.sha256:  # cannot happen unless a file changed under the reader
        raise OperationFailed(f"{info.ref}: the copy in {dst.location} has digest {result.info.sha256[:12]}..., "
                              f"not {info.sha256[:12]}...; run: maasctl verify {result.info.ref}")
    return result
