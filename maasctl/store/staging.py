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

from maasctl.store import doctor


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
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            fd = None  # the owner never had a lock, or already gave it up: the dir is dead
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer
            removed.append(entry.name)
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):  # its owner may have just finished
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                if fd is not None:
                    with contextlib.suppress(FileNotFoundError):
                        lock_path.unlink()
        finally:
            if fd is not None:
                os.close(fd)
    # lock files whose directory is gone and whose owner is dead
    for lock_path in root.glob("*.lock"):
        if (root / lock_path.stem).exists() or doctor.read_intent(lock_path):
            continue  # a publish intent is settled by doctor.check_models under the write lock
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not dry_run:
                lock_path.unlink()
        except (BlockingIOError, FileNotFoundError):
            pass
        finally:
            os.close(fd)
    return removed
