"""A local cache of remote versions for `serve` and `predict --local`: content-addressed, verified, size-capped.

Layout under `$MAASCTL_CACHE` (else `$XDG_CACHE_HOME/maasctl`, else `~/.cache/maasctl`)::

    versions/<content_sha256>/    a complete version directory (files + maas.json), never written in place
    locks/<content_sha256>.lock   flock: exclusive while filling, shared while a reader uses the directory
    tmp/                          downloads in progress; renamed into versions/ only when every digest matched
    cache.lock                    flock held while evicting

Safe under concurrent processes: one process fills an entry while others wait on its lock; readers hold a
shared lock, so eviction (least recently used first, past `$MAASCTL_CACHE_MAX_BYTES`, default 10 GiB) skips
entries in use. A cache hit is re-hashed before use, like a local store's version.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from maasctl.settings import env_int
from maasctl.store.hashing import FileEntry, compare_tree

DEFAULT_MAX_BYTES = 10 << 30


def cache_root() -> Path:
    env = os.environ.get("MAASCTL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "maasctl"


def max_bytes() -> int:
    return env_int("MAASCTL_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=0)


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class VersionCache:
    def __init__(self, root: Path | None = None, limit: int | None = None) -> None:
        self.root = root or cache_root()
        self.limit = max_bytes() if limit is None else limit
        self._fresh: set[str] = set()  # entries this object filled (digests checked while downloading)

    def entry(self, digest: str) -> Path:
        return self.root / "versions" / digest

    @contextlib.contextmanager
    def open(self, digest: str, entries: list[FileEntry], fill: Callable[[Path], None], *,
             verify: bool = True) -> Iterator[Path]:
        """The cached directory for `digest`, filled by `fill(tmpdir)` on a miss (which must check digests).

        Held (shared lock) for the `with` body; evicts least recently used entries afterwards.
        """
        for d in ("versions", "locks", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        lock = self.root / "locks" / f"{digest}.lock"
        final = self.entry(digest)
        with _flock(lock, fcntl.LOCK_EX) as fd:
            fresh = digest in self._fresh  # filled or checked moments ago by this process (a prefetch): not re-hashed
            self._fresh.discard(digest)
            if final.is_dir() and verify and not fresh:
                if compare_tree(final, entries, skip=frozenset({"maas.json"})):
                    self._remove(final)  # a damaged cache entry: fetch it again
                else:
                    self._fresh.add(digest)
            if not final.is_dir():
                tmp = self.root / "tmp" / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
                tmp.mkdir()
                try:
                    fill(tmp)
                    os.rename(tmp, final)
                    self._fresh.add(digest)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            os.utime(final)  # least recently used = oldest mtime
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                yield final
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        self.evict()

    def _remove(self, path: Path) -> None:
        trash = self.root / "tmp" / f"trash-{uuid.uuid4().hex[:12]}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def evict(self) -> list[str]:
        """Drop least recently used entries not in use until the cache fits its limit."""
        versions = self.root / "versions"
        if not versions.is_dir():
            return []
        removed: list[str] = []
        with _flock(self.root / "cache.lock", fcntl.LOCK_EX):
            entries = []
            for p in versions.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    entries.append((p.stat().st_mtime, p, _tree_size(p)))
            total = sum(e[2] for e in entries)
            for _, path, size in sorted(entries, key=lambda e: e[0]):
                if total <= self.limit:
                    break
                lock = self.root / "locks" / f"{path.name}.lock"
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
                try:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # in use by a reader or being filled
                    with contextlib.suppress(FileNotFoundError):
                        self._remove(path)
                        removed.append(path.name)
                        total -= size
                finally:
                    os.close(fd)
            self._sweep_tmp()
        return removed

    def _sweep_tmp(self, age: float = 3600.0) -> None:
        """Downloads abandoned by killed processes (an hour old) go too."""
        for p in (self.root / "tmp").iterdir() if (self.root / "tmp").is_dir() else []:
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > age:
                    shutil.rmtree(p, ignore_errors=True)
