"""Pin one version of an S3 store into an immutable deployment prefix KServe can download as is.

Layout under the store's prefix::

    deployments/<name>/<N>-<sha12>/<N>/...            the version's files, copied server-side (CopyObject)
    deployments/<name>/<N>-<sha12>/<N>/maas.json      written last, create-only: the prefix is complete
    deployments/<name>/_pins/<N>-<sha12>              rewritten by every deploy of it: when it was last deployed

KServe's storage initializer copies everything under `storageUri` by plain string prefix and TF Serving serves
the highest numeric folder it finds, so the prefix holds exactly one version folder and `storageUri` ends in
`/`. The prefix is named by version and content, so re-deploying the same version reuses it (no copy), moving
an alias gives a new prefix (a new `storageUri`: KServe rolls the pods), and a rollback points back at the
lower version's prefix. Deployment prefixes are never rewritten; `gc` leaves them alone, `deploy gc` removes
old ones (`gc_deployments`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maasctl.errors import InvalidInput, NotFound, OperationFailed
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
    pin_note = _pin_key(s3store, info.name, prefix)
    if s3.get(marker) is not None:
        _check_complete(s3, dst, manifest, f"s3://{s3.bucket}/{dst}")
        _note_deploy(s3, pin_note, info)
        return PinnedVersion(info, s3.bucket, prefix, 0)
    entries = mf.file_entries(manifest)
    s3store._map(lambda e: s3.copy(src + e.path, dst + e.path), entries)
    _check_complete(s3, dst, manifest, f"s3://{s3.bucket}/{dst}", with_marker=False)
    try:
        s3.put(marker, mf.dumps(manifest), if_none_match=True)
    except LostRace:  # a concurrent deploy of the same version committed first: same content, same files
        pass
    _note_deploy(s3, pin_note, info)
    return PinnedVersion(info, s3.bucket, prefix, len(entries))


def _note_deploy(s3: Any, key: str, info: VersionInfo) -> None:
    import time

    s3.put_json(key, {"ref": info.ref, "deployed_at": time.time()})  # sub-second: LastModified has whole seconds


def _pin_key(s3store: Any, name: str, prefix: str) -> str:
    """Outside every storageUri (KServe copies by prefix), so no pod ever downloads it."""
    return s3store.loc.key("deployments", name, PINS, prefix.rstrip("/").rsplit("/", 1)[1])


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



PINS = "_pins"
INCOMPLETE_LEASE_S = 3600.0  # an unfinished prefix younger than this may be a deploy still copying


@dataclass(frozen=True)
class DeploymentsGc:
    """What `deploy gc` kept and removed (or would remove, with dry_run)."""

    name: str
    kept: list[str]      # storage URIs, newest first
    removed: list[str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kept": self.kept, "removed": self.removed, "dry_run": self.dry_run}


def gc_deployments(store: ModelStore, name: str, *, keep: int, dry_run: bool = False,
                   now: float | None = None) -> DeploymentsGc:
    """Remove old deployment prefixes of model `name`: keep the `keep` most recently deployed (so the last
    deploy's, which the InferenceService was applied with, always), and those of the versions a re-deploy
    would pin now (the latest version and every alias's). A prefix whose copy never finished is removed after
    a lease."""
    import time

    if keep < 1:
        raise InvalidInput(f"--keep must be at least 1 (got {keep}): a running InferenceService may still need "
                           "its prefix")
    s3store = require_s3(store, name)
    s3 = s3store.s3
    root = s3store.loc.key("deployments", name) + "/"
    groups: dict[str, list[dict[str, Any]]] = {}
    deployed: dict[str, float] = {}
    for obj in s3.objects(root):
        top, _, rest = obj["Key"][len(root):].partition("/")
        if top == PINS:
            deployed[rest] = obj["LastModified"].timestamp()
            got = s3.get_json(obj["Key"])
            if got is not None and isinstance(got[0].get("deployed_at"), (int, float)):
                deployed[rest] = float(got[0]["deployed_at"])
        else:
            groups.setdefault(top, []).append(obj)
    try:
        infos = s3store.list_versions(name)
    except NotFound:
        if not groups:
            raise
        infos = []  # the model is gone; its prefixes are not
    by_version = {i.version: i for i in infos}
    in_use = {max(by_version)} if by_version else set()
    in_use |= set(s3store.aliases(name).values()) if infos else set()
    protected = {f"{v}-{by_version[v].sha256[:12]}" for v in in_use if v in by_version}
    now = time.time() if now is None else now
    complete, stale = [], []
    for d, objs in groups.items():
        version = d.split("-", 1)[0]
        marker = next((o for o in objs if o["Key"] == f"{root}{d}/{version}/{mf.MANIFEST_NAME}"), None)
        if marker is not None:
            when = deployed.get(d, marker["LastModified"].timestamp())
            complete.append((when, int(version) if version.isdigit() else -1, d))
        elif now - max(o["LastModified"].timestamp() for o in objs) > INCOMPLETE_LEASE_S and d not in protected:
            stale.append(d)
    complete.sort(reverse=True)  # last deployed first (the version number breaks ties within a second)
    kept = [d for i, (_, _, d) in enumerate(complete) if i < keep or d in protected]
    removed = [d for _, _, d in complete if d not in kept] + sorted(stale)
    if not dry_run:
        for d in removed:  # the commit marker first: a reader never sees a complete-looking partial prefix
            keys = sorted((o["Key"] for o in groups[d]), key=lambda k: not k.endswith("/" + mf.MANIFEST_NAME))
            s3.delete(keys[:1])
            s3.delete(keys[1:] + ([f"{root}{PINS}/{d}"] if d in deployed else []))
    uri = f"s3://{s3.bucket}/{root}"
    return DeploymentsGc(name, [f"{uri}{d}/" for d in kept], [f"{uri}{d}/" for d in removed], dry_run)
