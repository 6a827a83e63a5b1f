"""Copy a version between any two stores (local <-> S3, S3 <-> S3): `maasctl push` and `maasctl pull`."""

from __future__ import annotations

from maasctl.errors import OperationFailed
from maasctl.refs import ModelRef
from maasctl.store import manifest as mf
from maasctl.store.base import ModelStore
from maasctl.store.types import RegisterResult


def copy_version(src: ModelStore, dst: ModelStore, ref: str | ModelRef, *,
                 aliases: list[str] | tuple[str, ...] = ()) -> RegisterResult:
    """Register src's version in dst as its next version (or find its twin: idempotent by content digest).

    The files are read through `open_version` (digests checked, remote ones downloaded into the cache) and
    keep their metadata, lineage, description and tags; the target records where they came from.
    """
    info = src.resolve(ref)
    manifest = src.manifest(info)
    with src.open_version(info) as path:
        result = dst.register(path, info.name, aliases=aliases, description=info.description, tags=info.tags,
                              meta=mf.model_meta(manifest), source_label=f"{src.location} {info.ref}")
    if result.info.sha256 != info.sha256:  # cannot happen unless a file changed under the reader
        raise OperationFailed(f"{info.ref}: the copy in {dst.location} has digest {result.info.sha256[:12]}..., "
                              f"not {info.sha256[:12]}...; run: maasctl verify {result.info.ref}")
    return result
