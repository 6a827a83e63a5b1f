"""Staging directories: where a writer copies and hashes files before the atomic rename into the store.

Each `<id>/` has an `<id>.lock` beside it, held with flock while its owner lives, so `sweep` can tell a live
writer's directory from a dead one's without trusting PIDs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from maasctl.errors import writing


@contextlib.contextmanager
def staging_dir(root: Path) -> Iterator[Path]:
    """A fresh directory inside the store, removed on exit unless it was renamed away.

    A `<id>.lock` file beside it is held with flock while the owner lives, so `sweep`
    can tell a live writer's directory from a dead one's without trusting PIDs.
    """
    root.mkdir(parents=True, exist_ok=True)
    sid = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    lock_path = root / f"{sid}.lock"
    # The lock file appears under its final name already locked (made under a temporary name, locked,
    # then renamed), so a sweeper can never take the lock of a writer that is just starting.
    tmp_lock = root / f"{sid}.lock.tmp"
    lock_fd = os.open(tmp_lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    os.rename(tmp_lock, lock_path)
    path = root / sid
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(lock_fd)

def sweep(root: Path, *, dry_run: bool = False) -> list[str]:
    """Remove staging directories whose owner died (their lock file is no longer held)."""
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if entry.suffix == ".lock":
            continue
        if entry.suffix == ".tmp":  # a lock being created, or left by a writer killed in that instant
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.stat().st_mtime > 3600 and not dry_run:
                    entry.unlink()
            continue
        lock_path = root / f"{entry.name}.lock"
        with dead_owner_lock(lock_path) as dead:  # None: the owner never had a lock, or gave it up: dead too
            if dead is False:
                continue  # a live writer
            removed.append(entry.name)
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):  # its owner may have just finished
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                if dead:
                    lock_path.unlink(missing_ok=True)
    # lock files whose directory is gone and whose owner is dead
    for lock_path in root.glob("*.lock"):
        if (root / lock_path.stem).exists() or read_intent(lock_path):
            continue  # a publish intent is settled by doctor.check_models under the write lock
        with dead_owner_lock(lock_path) as dead:
            if dead and not dry_run:
                lock_path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def dead_owner_lock(lock_path: Path) -> Iterator[bool | None]:
    """Try a writer's lock file: yields True while holding it (its owner died), False when a live writer holds
    it (or it cannot be opened: hands off), None when there is no lock file. Holding it keeps a new owner out
    while the dead one's leftovers go."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        yield None
        return
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


# -- publish intents: how a crashed writer's directory is told apart from an index that lost it ------------------
def write_intent(lock_path: Path, name: str, version: int) -> None:
    """Record in the writer's (flock-held) staging lock file which version directory it is about to create."""
    with writing(lock_path), open(lock_path, "w", encoding="utf-8") as f:
        f.write(f"{name}/{version}\n")
        f.flush()
        os.fsync(f.fileno())


def read_intent(lock_path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = lock_path.read_text(encoding="utf-8").strip()
        return text or None
    return None
