"""The S3 store: a bucket prefix is the registry, with no server and no lock service (design.md §6).

Bucket layout under `s3://BUCKET/PREFIX/` (README "An S3 bucket as the registry")::

    models/<name>/<N>/...                     the version's files, as in a local store (TF Serving layout)
    models/<name>/<N>/maas.json               the commit marker: written last, create-only (If-None-Match: *)
    models/<name>/<N>/maas.sig                its signature bundle, if signed (outside the hashed files)
    _maas/<name>/claims/<N>.json              version claims: create-only, so two writers never share N
    _maas/<name>/content/<sha256>.json        content claims while identical content uploads (s3publish.py)
    _maas/<name>/index.json                   the version index: a self-repairing cache (s3index.py)
    _maas/<name>/aliases/<alias>.json         {version, seq, event}: moved by compare-and-swap (If-Match: etag)
    _maas/<name>/events/<ns>-<kind>-<id>.json immutable event log (who: user@host, when, from, to)

A version is visible only once its `maas.json` exists, and it is written only after every file is uploaded.
A writer killed mid-upload leaves a claim and some objects but no marker; `gc` removes them once the claim
is older than the lease (it first marks the claim abandoned with a compare-and-swap, and a writer re-reads
its claim right before committing, so a slow writer cannot commit files gc is deleting).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from maasctl.errors import Conflict, InvalidInput, NotFound, OperationFailed
from maasctl.refs import ModelRef, check_alias, check_name, parse_ref
from maasctl.store import manifest as mf
from maasctl.store.base import StoreDefaults, check_expected, refusal
from maasctl.store.cache import VersionCache
from maasctl.store.hashing import FileEntry, hash_file, hash_tree
from maasctl.store.local import LocalStore
from maasctl.store.s3index import Entry, VersionIndex, summarize
from maasctl.store.s3io import S3, Location, LostRace
from maasctl.store.types import (
    EVENT_FIELDS,
    GcReport,
    ModelSummary,
    RegisterResult,
    VerifyReport,
    VersionInfo,
    utcnow,
    who,
)

WORKERS = 8
ALIAS_ATTEMPTS = 200
DEFAULT_LEASE = 3600.0


def open_s3_store(spec: str) -> S3Store:
    from maasctl.store.s3io import EXTRA_HINT, boto3

    if boto3 is None:
        raise OperationFailed(EXTRA_HINT)
    return S3Store(spec)


def local_home() -> Path:
    """Where a remote store's runs, staging and server records live (runs stay local)."""
    import os

    return Path(os.environ.get("MAASCTL_LOCAL_HOME") or Path.home() / ".maasctl").expanduser()


class S3Store(StoreDefaults):
    """The registry in `s3://BUCKET/PREFIX` (a store.base.ModelStore). Nothing is contacted until used."""

    poll_seconds = 10.0

    def __init__(self, spec: str) -> None:
        self.loc = Location.parse(spec)
        self._s3: S3 | None = None
        self.local = LocalStore(local_home())
        self.root = self.local.root
        self.cache = VersionCache()
        self._manifests: dict[tuple[str, int], dict[str, Any]] = {}
        self._indexes: dict[str, VersionIndex] = {}
        self._prefetched: set[str] = set()

    # -- places --------------------------------------------------------------------------------------
    @property
    def s3(self) -> S3:
        if self._s3 is None:
            self._s3 = S3(self.loc)
        return self._s3

    @property
    def location(self) -> str:
        return self.loc.url

    @property
    def runs_dir(self) -> Path:
        return self.local.runs_dir

    @property
    def staging_root(self) -> Path:
        return self.local.staging_root

    @property
    def servers_dir(self) -> Path:
        tag = hashlib.sha256(self.location.encode()).hexdigest()[:12]
        return self.local.servers_dir / f"s3-{tag}"

    @property
    def models_dir(self) -> Path:
        raise InvalidInput(f"--backend tfserving serves a local store; {self.location} is remote "
                           f"(copy the versions first: maasctl pull NAME@VERSION --from {self.location})")

    def index_mismatch(self) -> list[str]:
        return []  # the maas.json objects are the registry; the S3 index (a cache) repairs itself on read

    def staging(self) -> contextlib.AbstractContextManager[Path]:
        return self.local.staging()

    def sweep_staging(self, *, dry_run: bool = False) -> list[str]:
        return self.local.sweep_staging(dry_run=dry_run)

    def _vprefix(self, name: str, version: int) -> str:
        return self.loc.key("models", name, str(version)) + "/"

    def _reg(self, name: str, *parts: str) -> str:
        return self.loc.key("_maas", name, *parts)

    def _uri(self, name: str, version: int) -> str:
        return f"s3://{self.loc.bucket}/{self._vprefix(name, version)}"

    # -- reading -------------------------------------------------------------------------------------
    def _index(self, name: str) -> VersionIndex:
        if name not in self._indexes:
            self._indexes[name] = VersionIndex(self.s3, self._reg(name, "index.json"),
                                               self.loc.key("models", name) + "/",
                                               lambda v: self._fetch_manifest(name, v), self._map)
        return self._indexes[name]

    def _committed(self, name: str) -> dict[int, Entry]:
        """{version: index entry} of the visible (committed) versions of name (store/s3index.py)."""
        return self._index(name).committed()

    def _fetch_manifest(self, name: str, version: int) -> tuple[dict[str, Any], str] | None:
        """(manifest, ETag) of a committed version, or None when it has no maas.json (not committed)."""
        key = self._vprefix(name, version) + mf.MANIFEST_NAME
        got = self.s3.get(key)
        if got is None:
            return None
        doc = mf.parse_manifest(got[0], f"s3://{self.loc.bucket}/{key}")
        self._manifests[(name, version)] = doc
        return doc, got[1]

    def _manifest_of(self, name: str, version: int) -> dict[str, Any]:
        """The committed manifest (immutable: memoized)."""
        memo = self._manifests.get((name, version))
        if memo is not None:
            return memo
        got = self._fetch_manifest(name, version)
        if got is None:
            raise NotFound(f"model '{name}' has no version {version}")
        return got[0]

    def _info(self, name: str, version: int, entry: Entry, aliases: list[str]) -> VersionInfo:
        return VersionInfo(
            name=name, version=version, created_at=entry["created_at"], sha256=entry["content_sha256"],
            size=entry["size"], path=Path(self._vprefix(name, version)), source=entry["source"],
            description=entry["description"], tags=entry["tags"], metrics=entry["metrics"],
            lineage=entry["lineage"], meta=entry["meta"], aliases=aliases, uri=self._uri(name, version))

    def _alias_docs(self, name: str) -> dict[str, tuple[dict[str, Any], str]]:
        """{alias: (doc, etag)} including removed ones (version None)."""
        prefix = self._reg(name, "aliases") + "/"
        keys = [o["Key"] for o in self.s3.objects(prefix) if o["Key"].endswith(".json")]
        out = {}
        for key, got in zip(keys, self._map(self.s3.get_json, keys)):
            if got is not None:
                out[key[len(prefix):-len(".json")]] = got
        return out

    def aliases(self, name: str) -> dict[str, int]:
        docs = self._alias_docs(name)
        return {a: d["version"] for a, (d, _) in sorted(docs.items()) if d.get("version") is not None}

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        if len(items) < 2:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(min(WORKERS * 2, len(items))) as pool:
            return list(pool.map(fn, items))

    def _model_names(self) -> list[str]:
        return sorted(self.s3.list_dirs(self.loc.key("models") + "/"))

    def _missing_model(self, name: str) -> NotFound:
        every = self._model_names()
        names = [n for n, c in zip(every, self._map(self._committed, every)) if c]
        if not names:
            return NotFound(f"model '{name}' not found: the store at {self.location} has no models. "
                            f"See: maasctl register --help")
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        more = " ..." if len(names) > 10 else ""
        return NotFound(f"model '{name}' not found ({hint}models: {', '.join(names[:10])}{more})")

    def resolve(self, ref: str | ModelRef) -> VersionInfo:
        """NAME@N and NAME@ALIAS read that version's maas.json itself; NAME reads the index (+1 LIST)."""
        if isinstance(ref, str):
            ref = parse_ref(ref)
        name = ref.name
        if ref.version is None and ref.alias is None:
            committed, aliases = self._map(lambda f: f(), [lambda: self._committed(name),
                                                           lambda: self.aliases(name)])
            if not committed:
                raise self._missing_model(name)
            version = max(committed)
            entry = committed[version]
        else:
            wanted = ref.version
            got, aliases = self._map(lambda f: f(), [
                lambda: self._fetch_manifest(name, wanted) if wanted is not None else None,
                lambda: self.aliases(name)])
            if ref.alias is not None:
                if ref.alias not in aliases:
                    if not self._committed(name):
                        raise self._missing_model(name)
                    have = f"aliases: {', '.join(aliases)}" if aliases else "it has no aliases"
                    raise NotFound(f"model '{name}' has no alias '{ref.alias}' ({have}). "
                                   f"See: maasctl alias set {name}@VERSION {ref.alias}")
                version = aliases[ref.alias]
                got = self._fetch_manifest(name, version)
                if got is None:
                    raise NotFound(f"alias {name}@{ref.alias} points at version {version}, which is gone")
            elif got is None:
                committed = self._committed(name)
                if not committed:
                    raise self._missing_model(name)
                raise NotFound(f"model '{name}' has no version {wanted} (latest is {max(committed)}). "
                               f"See: maasctl list {name}")
            else:
                version = wanted
            entry = summarize(*got)
        names = sorted(a for a, v in aliases.items() if v == version)
        return self._info(name, version, entry, names)

    def list_models(self) -> list[ModelSummary]:
        def one(name: str) -> ModelSummary | None:
            committed, aliases = self._map(lambda f: f(), [lambda: self._committed(name),
                                                           lambda: self.aliases(name)])
            if not committed:
                return None
            return ModelSummary(name, max(committed), len(committed), aliases,
                                committed[min(committed)]["created_at"])

        return [m for m in self._map(one, self._model_names()) if m is not None]

    def list_versions(self, name: str) -> list[VersionInfo]:
        check_name(name)
        committed, aliases = self._map(lambda f: f(), [lambda: self._committed(name), lambda: self.aliases(name)])
        if not committed:
            raise self._missing_model(name)
        by_version: dict[int, list[str]] = {}
        for a, v in aliases.items():
            by_version.setdefault(v, []).append(a)
        return [self._info(name, v, e, by_version.get(v, [])) for v, e in committed.items()]

    def snapshot(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        wanted = names if names is not None else self._model_names()
        views = self._map(lambda n: self._map(lambda f: f(), [lambda: list(self._committed(n)),
                                                             lambda: self.aliases(n)]), wanted)
        return {n: {"versions": v, "aliases": a} for n, (v, a) in zip(wanted, views)}

    def manifest(self, info: VersionInfo) -> dict[str, Any]:
        return self._manifest_of(info.name, info.version)

    # -- events --------------------------------------------------------------------------------------
    def _event(self, name: str, event: str, *, key: str | None = None, **fields: Any) -> dict[str, Any]:
        at = utcnow()
        doc = {"at": at, "event": event, "version": None, "alias": None, "from_version": None,
               "to_version": None, "who": who(), **fields}
        doc["key"] = key or f"{time.time_ns():020d}-{event}-{uuid.uuid4().hex[:8]}.json"  # sorts by time
        return doc

    def _record(self, name: str, event: dict[str, Any]) -> None:
        """Write an event object once (create-only: a second writer of the same event finds it there)."""
        body = {k: v for k, v in event.items() if k != "key"}
        with contextlib.suppress(LostRace):
            self.s3.put_json(self._reg(name, "events", event["key"]), body, if_none_match=True)

    def history(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        check_name(name)
        if not self.s3.objects(self._reg(name, "claims") + "/"):
            raise self._missing_model(name)
        prefix = self._reg(name, "events") + "/"
        keys = [o["Key"] for o in self.s3.objects(prefix)]
        events = {k[len(prefix):]: got[0] for k, got in zip(keys, self._map(self.s3.get_json, keys)) if got}
        for doc, _ in self._alias_docs(name).values():  # a mover killed before writing its event object
            ev = doc.get("event")
            if ev and ev["key"] not in events:
                events[ev["key"]] = {k: v for k, v in ev.items() if k != "key"}
        out = [events[k] for k in sorted(events)]
        return [{f: e.get(f) for f in EVENT_FIELDS} for e in out if alias is None or e.get("alias") == alias]

    # -- aliases -------------------------------------------------------------------------------------
    def _move_alias(self, name: str, alias: str, version: int | None, *, expect: int | None = None) -> int | None:
        """Compare-and-swap the alias object to `version` (None removes it); returns the previous version."""
        key = self._reg(name, "aliases", f"{alias}.json")
        token = uuid.uuid4().hex
        for attempt in range(ALIAS_ATTEMPTS):
            got = self.s3.get_json(key)
            cur, etag = got if got else ({}, None)
            if cur.get("token") == token:  # our write landed but its response was lost
                return cur["event"]["from_version"]
            if cur.get("event"):
                self._record(name, cur["event"])  # keep the log complete even if that mover died
            old = cur.get("version")
            if expect is not None:
                check_expected(name, alias, old, expect)
            if version is None and old is None:
                self.resolve(ModelRef(name, alias=alias))  # raises the helpful NotFound
            if old == version:
                return old
            seq = int(cur.get("seq", 0)) + 1
            kind = "alias_removed" if version is None else "alias_set"
            ev = self._event(name, kind, alias=alias, from_version=old, to_version=version)
            ev["key"] = f"{time.time_ns():020d}-alias-{alias}-{seq:010d}.json"
            doc = {"alias": alias, "version": version, "seq": seq, "token": token, "event": ev}
            try:
                if etag is None:
                    self.s3.put_json(key, doc, if_none_match=True)
                else:
                    self.s3.put_json(key, doc, if_match=etag)
            except LostRace:
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
                continue
            self._record(name, ev)
            return old
        raise OperationFailed(f"could not move {name}@{alias}: {ALIAS_ATTEMPTS} attempts lost to other writers")

    def set_alias(self, ref: str | ModelRef, alias: str, *,
                  expect_version: int | None = None) -> tuple[VersionInfo, int | None]:
        check_alias(alias)
        info = self.resolve(ref)
        old = self._move_alias(info.name, alias, info.version, expect=expect_version)
        return self.resolve(ModelRef(info.name, version=info.version)), old

    def remove_alias(self, name: str, alias: str) -> int:
        check_name(name)
        check_alias(alias)
        old = self._move_alias(name, alias, None)
        assert old is not None
        return old

    # -- writing -------------------------------------------------------------------------------------
    def register(self, source: str | Path, name: str, *, aliases: list[str] | tuple[str, ...] = (),
                 description: str = "", tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                 source_label: str | None = None, new_version: bool = False,
                 check: Callable[[Path], None] | None = None, bundle: bytes | None = None) -> RegisterResult:
        from maasctl.store.savedmodel import read_signatures

        check_name(name)
        for a in aliases:
            check_alias(a)
        src = Path(source)
        signatures = read_signatures(src)
        files = hash_tree(src, skip=mf.RESERVED)
        return self.publish(src, files, name, signatures=signatures, aliases=aliases, description=description,
                            tags=tags, meta=meta, source_label=source_label or str(src.resolve()),
                            new_version=new_version, check=check, bundle=bundle)

    def publish(self, staged: Path, files: list[FileEntry], name: str, *, signatures: dict[str, Any],
                aliases: list[str] | tuple[str, ...] = (), description: str = "",
                tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                source_label: str = "", new_version: bool = False,
                check: Callable[[Path], None] | None = None, bundle: bytes | None = None,
                progress: Callable[[int], None] | None = None) -> RegisterResult:
        """Claim a number, upload every file, then commit with a create-only maas.json (store/s3publish.py).
        `bundle` is a signature to keep with the version (else staged/maas.sig, if there)."""
        from maasctl.store import s3publish

        check_name(name)
        for a in aliases:
            check_alias(a)
        if check is not None:
            check(staged)
        return s3publish.publish(self, staged, files, name, signatures=signatures, aliases=aliases,
                                 description=description, tags=tags, meta=meta, source_label=source_label,
                                 new_version=new_version, bundle=bundle, progress=progress)

    def _twin(self, name: str, digest: str) -> int | None:
        committed = self._committed(name)
        return next((v for v, e in committed.items() if e["content_sha256"] == digest), None)

    def _claim(self, name: str) -> tuple[int, str]:
        """The next version number, taken with a create-only claim object (never shared, never reused)."""
        prefix = self._reg(name, "claims") + "/"
        taken = [int(o["Key"][len(prefix):].split(".")[0]) for o in self.s3.objects(prefix)
                 if o["Key"][len(prefix):].split(".")[0].isdigit()]
        version = max(taken, default=0) + 1
        token = uuid.uuid4().hex
        while True:
            key = f"{prefix}{version:010d}.json"
            doc = {"version": version, "who": who(), "at": utcnow(), "token": token}
            try:
                self.s3.put_json(key, doc, if_none_match=True)
                return version, key
            except LostRace:
                got = self.s3.get_json(key)
                if got is not None and got[0].get("token") == token:
                    return version, key
                version += 1

    def remove(self, ref: str | ModelRef, *, force: bool = False) -> VersionInfo:
        if isinstance(ref, str):
            ref = parse_ref(ref)
        if ref.version is None and ref.alias is None:  # never guess "latest" for a removal (as locally)
            raise InvalidInput(f"say which version to remove: {self.resolve(ref).ref} (a bare name means the "
                               f"latest, which rm does not assume)")
        info = self.resolve(ref)
        if info.aliases and not force:
            raise Conflict(f"{info.ref} is pointed at by alias(es) {', '.join(info.aliases)}; move them first "
                           f"(maasctl alias set {info.name}@VERSION ALIAS) or use --force")
        for a in info.aliases:
            self._move_alias(info.name, a, None)
        prefix = self._vprefix(info.name, info.version)
        self._index(info.name).drop(info.version)  # out of the index, then invisible, then the files
        self.s3.delete([prefix + mf.MANIFEST_NAME])
        self._record(info.name, self._event(info.name, "removed", version=info.version))
        self.s3.delete([o["Key"] for o in self.s3.objects(prefix)])
        self._manifests.pop((info.name, info.version), None)
        return info

    # -- files, integrity and gc -------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_version(self, info: VersionInfo, *, verify: bool = True,
                     progress: Callable[[int], None] | None = None) -> Iterator[Path]:
        """The version in the local cache (downloaded on a miss, every digest checked before use)."""
        manifest = self.manifest(info)
        entries = mf.file_entries(manifest)

        def fill(tmp: Path) -> None:
            problems = self._download(info, entries, tmp, progress)
            if problems:
                raise OperationFailed(refusal(info.uri, problems))
            mf.write_manifest(tmp, manifest)

        with self.cache.open(info.sha256, entries, fill, verify=verify) as path:
            yield path

    def prefetch(self, info: VersionInfo) -> None:
        """Download into the cache on a daemon thread (once per version); a failure is left for the real
        open_version to report."""
        import threading

        if info.sha256 in self._prefetched:
            return
        self._prefetched.add(info.sha256)

        def fetch() -> None:
            with contextlib.suppress(Exception), self.open_version(info):
                pass

        threading.Thread(target=fetch, name=f"maasctl-prefetch-{info.ref}", daemon=True).start()

    def _download(self, info: VersionInfo, entries: list[FileEntry], into: Path,
                  progress: Callable[[int], None] | None = None) -> list[str]:
        prefix = self._vprefix(info.name, info.version)

        def one(e: FileEntry) -> str | None:
            dest = into / e.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.s3.get_file(prefix + e.path, str(dest), e.size, progress)
            except NotFound:
                return f"missing object {info.uri}{e.path}"
            got = hash_file(dest)
            if (got.size, got.sha256) != (e.size, e.sha256):
                return f"sha256 mismatch in {info.uri}{e.path}: expected {e.sha256[:12]}..., found {got.sha256[:12]}..."
            return None

        return [p for p in self._map(one, sorted(entries, key=lambda e: -e.size)) if p]

    def signature(self, info: VersionInfo) -> bytes | None:
        """The version's maas.sig object (beside its files, outside the hashed ones), None when unsigned."""
        got = self.s3.get(self._vprefix(info.name, info.version) + mf.SIGNATURE_NAME)
        return got[0] if got else None

    def set_signature(self, info: VersionInfo, bundle: bytes) -> None:
        self.s3.put(self._vprefix(info.name, info.version) + mf.SIGNATURE_NAME, bundle)

    def check_version(self, info: VersionInfo) -> list[str]:
        """Re-download and re-hash every object of a version against its maas.json; one line per problem."""
        try:
            manifest = self._manifest_of(info.name, info.version)
        except InvalidInput as exc:
            return [str(exc)]
        entries = mf.file_entries(manifest)
        prefix = self._vprefix(info.name, info.version)
        have = {o["Key"][len(prefix):] for o in self.s3.objects(prefix)} - mf.RESERVED
        problems = [f"unexpected object {info.uri}{rel}" for rel in sorted(have - {e.path for e in entries})]
        import tempfile

        with tempfile.TemporaryDirectory(prefix="maasctl-verify-") as tmp:
            problems += self._download(info, entries, Path(tmp))
        return problems

    def verify(self, ref: str | ModelRef | None = None) -> list[VerifyReport]:
        infos = [self.resolve(ref)] if ref is not None else \
            [v for m in self.list_models() for v in self.list_versions(m.name)]
        return [VerifyReport(i.ref, self.check_version(i)) for i in infos]

    def gc(self, *, keep: int | None = None, dry_run: bool = False,
           lease_seconds: float | None = None) -> GcReport:
        """Local scratch, then uploads abandoned longer than the lease, then (--keep) old unaliased versions."""
        lease = DEFAULT_LEASE if lease_seconds is None else lease_seconds
        report = GcReport(dry_run=dry_run)
        report.staging = self.sweep_staging(dry_run=dry_run)
        if keep is not None:
            if keep < 1:
                raise InvalidInput(f"--keep must be at least 1 (got {keep})")
            for m in self.list_models():
                for v in self.list_versions(m.name)[:-keep]:
                    if v.aliases:
                        continue
                    if not dry_run:
                        try:
                            self.remove(v.ref)
                        except (Conflict, NotFound):
                            continue
                    report.versions.append(v.ref)
        cutoff = time.time() - lease
        names = sorted(set(self.s3.list_dirs(self.loc.key("_maas") + "/")) | set(self._model_names()))
        for name in names:
            if not dry_run:
                self._index(name).rebuild()
            report.orphans += self._gc_claims(name, cutoff, dry_run)
        for key, upload_id in self.s3.stale_uploads(self.loc.prefix, cutoff):
            report.staging.append(f"multipart upload of {key}")
            if not dry_run:
                self.s3.abort_upload(key, upload_id)
        return report

    def _gc_claims(self, name: str, cutoff: float, dry_run: bool) -> list[str]:
        committed = self._committed(name)
        prefix = self._reg(name, "claims") + "/"
        removed = []
        for obj in self.s3.objects(prefix):
            stem = obj["Key"][len(prefix):].split(".")[0]
            if not stem.isdigit() or int(stem) in committed:
                continue
            if obj["LastModified"].astimezone(timezone.utc) > datetime.fromtimestamp(cutoff, timezone.utc):
                continue  # a writer may still be uploading
            version = int(stem)
            leftovers = [o["Key"] for o in self.s3.objects(self._vprefix(name, version))]
            if leftovers:
                removed.append(f"{name}/{version}")
            if dry_run:
                continue
            got = self.s3.get_json(obj["Key"])
            if got is not None and not got[0].get("abandoned"):
                try:  # take the claim away from a writer that might still be alive, then delete
                    self.s3.put_json(obj["Key"], {**got[0], "abandoned": utcnow()}, if_match=got[1])
                except LostRace:
                    continue
            if self.s3.get(self._vprefix(name, version) + mf.MANIFEST_NAME) is not None:
                continue  # committed in the meantime after all
            if leftovers:
                self.s3.delete(leftovers)
        return removed
