"""Pin one version of an S3 store into an immutable deployment prefix KServe can download as is.

Layout under the store's prefix::

    deployments/<name>/<N>-<sha12>/<N>/...            the version's files, copied server-side (CopyObject)
    deployments/<name>/<N>-<sha12>/<N>/maas.json      written last, create-only: the prefix is complete

KServe's storage initializer copies everything under `storageUri` by plain string prefix and TF Serving serves
the highest numeric folder it finds, so the prefix holds exactly one version folder and `storageUri` ends in
`/`. The prefix is named by version and content, so re-deploying the same version reuses it (no copy), moving
an alias gives a new prefix (a new `storageUri`: KServe rolls the pods), and a rollback points back at the
lower version's prefix. Deployment prefixes are never rewritten; `gc` leaves them alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.refs import ModelRef, parse_ref
from maasctl.store import manifest as mf
from maasctl.store.base import ModelStore
from maasctl.store.s3io import LostRace
from maasctl.store.types import VersionInfo


@dataclass(frozen=True)
class PinnedVersion:
    """A version copied into its deployment prefix."""

    info: VersionInfo
    bucket: str
    prefix: str       # the key prefix of the deployment (ends in "/"), above the version folder
    copied: int       # objects copied by this call (0 when the prefix was already complete)

    @property
    def storage_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.info.name, "version": self.info.version, "sha256": self.info.sha256,
                "ref": self.info.ref, "storage_uri": self.storage_uri, "copied": self.copied}


def require_s3(store: ModelStore, ref: str | ModelRef) -> Any:
    """The S3Store a deployment reads from; InvalidInput (exit 2) for a local store."""
    from maasctl.store.s3 import S3Store

    if not isinstance(store, S3Store):
        raise InvalidInput(f"deploy reads versions from an S3 store, and {store.location} is a local directory "
                           f"a cluster cannot read: push it to an S3 store first (maasctl push {ref} --to "
                           f"s3://BUCKET/PREFIX), then deploy with --store s3://BUCKET/PREFIX")
    return store


def deployment_prefix(store: Any, info: VersionInfo) -> str:
    return store.loc.key("deployments", info.name, f"{info.version}-{info.sha256[:12]}") + "/"


def pin_version(store: ModelStore, ref: str | ModelRef) -> PinnedVersion:
    """Resolve ref in the S3 store and copy that version into its deployment prefix (idempotent)."""
    s3store = require_s3(store, ref)
    info = s3store.resolve(parse_ref(ref) if isinstance(ref, str) else ref)
    manifest = s3store.manifest(info)
    prefix = deployment_prefix(s3store, info)
    src = s3store.loc.key("models", info.name, str(info.version)) + "/"
    dst = f"{prefix}{info.version}/"
    s3 = s3store.s3
    marker = dst + mf.MANIFEST_NAME
    if s3.get(marker) is not None:
        _check_complete(s3, dst, manifest, f"s3://{s3.bucket}/{dst}")
        return PinnedVersion(info, s3.bucket, prefix, 0)
    entries = mf.file_entries(manifest)
    s3store._map(lambda e: s3.copy(src + e.path, dst + e.path), entries)
    _check_complete(s3, dst, manifest, f"s3://{s3.bucket}/{dst}", with_marker=False)
    try:
        s3.put(marker, mf.dumps(manifest), if_none_match=True)
    except LostRace:  # a concurrent deploy of the same version committed first: same content, same files
        pass
    return PinnedVersion(info, s3.bucket, prefix, len(entries))


def _check_complete(s3: Any, dst: str, manifest: dict[str, Any], where: str, *, with_marker: bool = True) -> None:
    """Every file of the manifest is there with its size, and nothing else (sizes: the copy is server-side
    from objects whose digests the store checked at upload; a full re-hash is `maasctl verify`)."""
    have = {o["Key"][len(dst):]: o["Size"] for o in s3.objects(dst)}
    if with_marker:
        have.pop(mf.MANIFEST_NAME, None)
    want = {f["path"]: f["size"] for f in manifest["files"]}
    if have != want:
        wrong = sorted(set(have.items()) ^ set(want.items()))
        raise OperationFailed(f"deployment prefix {where} does not match the version's maas.json "
                              f"(first difference: {wrong[0][0]}); it was changed by hand: remove it and deploy again")

