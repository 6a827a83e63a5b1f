"""Publishing a version into the S3 store: the commit protocol (README "An S3 bucket as the registry").

1. Identical content already committed: that version (`created: false`, aliases moved), as a local store does.
2. A content claim `_maas/<name>/content/<sha256>.json`, create-only: of several writers of identical content
   at the same instant exactly one uploads; the others wait and then get its version (`created: false`), so
   a race never makes two versions of one content (a local store's write lock gives the same). The holder
   rewrites the claim every HEARTBEAT s; a claim unchanged for STALE s (its writer died), or whose writer ran on
   this machine and is gone, is taken over by compare-and-swap. `--new-version` skips 1-2.
3. A version claim `_maas/<name>/claims/<N>.json`, create-only: the number, never shared, never reused.
4. Every file (and the signature bundle) uploaded in parallel; small files in one PUT each.
5. In parallel: the version claim re-read (gc may have reclaimed an upload that outlived its lease) and the
   content claim sealed with the version (compare-and-swap: a writer that lost its claim backs off).
6. The commit: `maas.json`, create-only. Then, in parallel: the index entry, the event, the aliases.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maasctl.errors import OperationFailed
from maasctl.refs import ModelRef
from maasctl.store import manifest as mf
from maasctl.store.hashing import FileEntry, content_sha256
from maasctl.store.s3index import summarize
from maasctl.store.s3io import LostRace
from maasctl.store.types import RegisterResult, utcnow, who

if TYPE_CHECKING:
    from maasctl.store.s3 import S3Store

HEARTBEAT = 5.0
STALE = 30.0
Progress = Callable[[int], None]


class _Taken(Exception):
    """Our content claim was taken over (we looked dead): start again (and most likely find the twin)."""


class ContentClaim:
    """The right to upload one content digest under one name (step 2 above)."""

    def __init__(self, store: S3Store, name: str, digest: str) -> None:
        self.s3 = store.s3
        self.key = store._reg(name, "content", f"{digest}.json")
        self.token = uuid.uuid4().hex
        self.who = who()
        self.etag: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._released = False

    def _doc(self, **extra: Any) -> dict[str, Any]:
        return {"token": self.token, "who": self.who, "at": utcnow(), "host": socket.gethostname(),
                "pid": os.getpid(), **extra}

    def take(self, over: str | None = None) -> bool:
        """Create the claim (or replace the stale one whose ETag is `over`); False when another writer won."""
        try:
            if over is None:
                self.etag = self.s3.put_json(self.key, self._doc(), if_none_match=True)
            else:
                self.etag = self.s3.put_json(self.key, self._doc(), if_match=over)
        except LostRace:
            return False
        self._thread = threading.Thread(target=self._beat, name="maasctl-content-claim", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        beat = 0
        while not self._stop.wait(HEARTBEAT):
            beat += 1
            with self._lock:
                if self._stop.is_set() or self.etag is None:
                    return
                try:
                    self.etag = self.s3.put_json(self.key, self._doc(beat=beat), if_match=self.etag)
                except LostRace:
                    self.etag = None  # taken over: seal() will say so
                    return
                except Exception:  # noqa: BLE001, S112 - a failed beat is retried at the next one
                    continue

    def seal(self, version: int) -> None:
        """Record the version being committed (compare-and-swap); _Taken if another writer took the claim."""
        self._stop.set()
        with self._lock:
            if self.etag is None:
                raise _Taken
            try:
                self.etag = self.s3.put_json(self.key, self._doc(version=version, sealed=True), if_match=self.etag)
            except LostRace:
                self.etag = None
                raise _Taken from None

    def release(self, *, ours: bool = False) -> None:
        """Stop beating and delete the claim if it is still ours (`ours`: known to be, e.g. sealed and
        committed; otherwise it is read first)."""
        if self._released:
            return
        self._released = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with contextlib.suppress(Exception):
            if not ours:
                got = self.s3.get_json(self.key)
                if got is None or got[0].get("token") != self.token:
                    return
            self.s3.delete([self.key])


def _dead_here(doc: dict[str, Any]) -> bool:
    """The claim's writer ran on this host and its process no longer exists (e.g. a killed push re-run)."""
    pid = doc.get("pid")
    if doc.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


def acquire(store: S3Store, name: str, digest: str) -> ContentClaim | int:
    """The content claim for `digest`, or the committed version that holds it (waiting for a live writer).
    The first try looks for the twin and takes the claim at once (one round trip); the caller checks for a
    twin again once it holds the claim (a holder releases only after committing, so that check sees it)."""
    claim = ContentClaim(store, name, digest)
    seen: tuple[str, float] | None = None
    delay = 0.02
    twin, taken = store._map(lambda f: f(), [lambda: store._twin(name, digest), claim.take])
    if twin is not None:
        if taken:
            claim.release(ours=True)
        return twin
    while not taken:
        got = store.s3.get_json(claim.key)
        if got is not None:
            if _dead_here(got[0]):  # its writer ran on this machine and is gone: no need to wait
                taken = claim.take(over=got[1])
            elif seen is None or seen[0] != got[1]:
                seen = (got[1], time.monotonic())
            elif time.monotonic() - seen[1] > STALE:  # no heartbeat for STALE s: that writer is gone
                taken = claim.take(over=got[1])
                seen = None
            if taken:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        twin = store._twin(name, digest)
        if twin is not None:
            return twin
        taken = claim.take()
    return claim


def publish(store: S3Store, staged: Path, files: list[FileEntry], name: str, *, signatures: dict[str, Any],
            aliases: list[str] | tuple[str, ...], description: str, tags: dict[str, str] | None,
            meta: dict[str, Any] | None, source_label: str, new_version: bool, bundle: bytes | None,
            progress: Progress | None) -> RegisterResult:
    digest = content_sha256(files)
    if bundle is None and (staged / mf.SIGNATURE_NAME).is_file():
        bundle = (staged / mf.SIGNATURE_NAME).read_bytes()
    for _ in range(5):
        if new_version:
            return _commit(store, staged, files, name, None, store._claim(name), signatures=signatures,
                           aliases=aliases, description=description, tags=tags, meta=meta,
                           source_label=source_label, bundle=bundle, progress=progress)
        got = acquire(store, name, digest)
        if isinstance(got, int):
            return adopt(store, name, got, aliases, bundle)
        claim = got
        try:
            # holding the claim: the twin check that counts, while the version number is claimed
            twin, (version, claim_key) = store._map(lambda f: f(), [lambda: store._twin(name, digest),
                                                                    lambda: store._claim(name)])
            if twin is not None:
                store.s3.delete([claim_key])  # unused: the number goes back
                claim.release(ours=True)
                return adopt(store, name, twin, aliases, bundle)
            return _commit(store, staged, files, name, claim, (version, claim_key), signatures=signatures,
                           aliases=aliases, description=description, tags=tags, meta=meta,
                           source_label=source_label, bundle=bundle, progress=progress)
        except _Taken:
            continue
        finally:
            claim.release()
    raise OperationFailed(f"could not register {name}: identical uploads kept taking over each other; retry")


def adopt(store: S3Store, name: str, version: int, aliases: list[str] | tuple[str, ...],
          bundle: bytes | None) -> RegisterResult:
    """Identical content is already `version`: give it our signature if it has none, move the aliases."""
    if bundle is not None:
        with contextlib.suppress(LostRace):
            store.s3.put(store._vprefix(name, version) + mf.SIGNATURE_NAME, bundle, if_none_match=True)
    store._map(lambda a: store._move_alias(name, a, version), list(aliases))
    return RegisterResult(store.resolve(ModelRef(name, version=version)), created=False)


def _commit(store: S3Store, staged: Path, files: list[FileEntry], name: str, claim: ContentClaim | None,
            claimed: tuple[int, str], *, signatures: dict[str, Any], aliases: list[str] | tuple[str, ...],
            description: str, tags: dict[str, str] | None, meta: dict[str, Any] | None, source_label: str,
            bundle: bytes | None, progress: Progress | None) -> RegisterResult:
    s3 = store.s3
    version, claim_key = claimed
    prefix = store._vprefix(name, version)

    def upload(f: FileEntry | None) -> None:
        if f is None:
            assert bundle is not None
            s3.put(prefix + mf.SIGNATURE_NAME, bundle)
        else:
            s3.put_file(str(staged / f.path), prefix + f.path, f.size, progress)

    def claim_alive() -> None:
        got = s3.get_json(claim_key)
        if got is None or got[0].get("abandoned"):
            raise OperationFailed(f"{name}@{version}: the upload outlived its lease and gc reclaimed it; "
                                  f"register again")

    manifest = mf.build_manifest(name, files, signatures, meta, version=version, created_at=utcnow(),
                                 description=description, tags=dict(tags or {}), source=source_label)
    body = mf.dumps(manifest)
    try:
        jobs: list[FileEntry | None] = [*sorted(files, key=lambda f: -f.size)]  # big ones first
        store._map(upload, [*jobs, None] if bundle is not None else jobs)
        store._map(lambda f: f(), [claim_alive] + ([lambda: claim.seal(version)] if claim is not None else []))
        try:
            etag = s3.put(prefix + mf.MANIFEST_NAME, body, if_none_match=True)
        except LostRace:  # a lost response to our own write reads back as ours
            got = s3.get(prefix + mf.MANIFEST_NAME)
            if got is None or got[0] != body:
                raise OperationFailed(f"{name}@{version} was committed by another writer") from None
            etag = got[1]
    except BaseException:
        with contextlib.suppress(Exception):  # best effort; a SIGKILL's leftovers are gc's
            s3.delete([o["Key"] for o in s3.objects(prefix)])
            if not s3.objects(prefix):  # nothing of ours left: the number goes back, as in a local store
                s3.delete([claim_key])
        raise
    store._manifests[(name, version)] = manifest
    entry = summarize(manifest, etag)
    index = store._index(name)
    store._map(lambda f: f(), [lambda: index.add(version, entry),
                               lambda: store._record(name, store._event(name, "registered", version=version)),
                               *[(lambda a=a: store._move_alias(name, a, version)) for a in aliases],
                               *([lambda: claim.release(ours=True)] if claim is not None else [])])
    return RegisterResult(store._info(name, version, entry, sorted(set(aliases))), created=True)
