"""Streamed sha256: copy a tree while hashing it (one pass over the bytes), hash a tree, digest a file list."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from maasctl.errors import InvalidInput, writing

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, POSIX separators
    size: int
    sha256: str

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: dict) -> FileEntry:
        return cls(str(d["path"]), int(d["size"]), str(d["sha256"]))


def content_sha256(files: Iterable[FileEntry]) -> str:
    """One digest over the sorted (path, size, sha256) list: the identity of a model's content."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\0{f.size}\0{f.sha256}\n".encode())
    return h.hexdigest()


def walk_files(root: Path, *, skip: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Relative file paths and directory paths under root, sorted. Symlinks and special files are refused."""
    files: list[str] = []
    dirs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                raise InvalidInput(f"{Path(dirpath, d)}: symbolic links are not allowed in a model")
            dirs.append((rel_dir / d).as_posix())
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise InvalidInput(f"{full}: symbolic links are not allowed in a model")
            if not stat.S_ISREG(mode):
                raise InvalidInput(f"{full}: not a regular file")
            rel = (rel_dir / name).as_posix()
            if rel not in skip:
                files.append(rel)
    return sorted(files), sorted(dirs)


def hash_file(path: Path) -> FileEntry:
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return FileEntry(path.name, size, h.hexdigest())


def hash_tree(root: Path, *, skip: frozenset[str] = frozenset()) -> list[FileEntry]:
    files, _ = walk_files(root, skip=skip)
    out = []
    for rel in files:
        e = hash_file(root / rel)
        out.append(FileEntry(rel, e.size, e.sha256))
    return out


def copy_tree_hashed(src: Path, dst: Path, *, fsync: bool = True, skip: frozenset[str] = frozenset()) -> list[FileEntry]:
    """Copy src into the existing directory dst and return the sha256 of every file as written.

    Each file is copied in the kernel (copy_file_range, no user-space buffer) and then hashed from the
    destination, so the digest describes exactly the bytes stored, even if the source changes meanwhile.
    This is about twice as fast as a read/hash/write loop on Linux (bench/bench_registry.py); elsewhere, or
    when the kernel refuses, it falls back to that loop. Paths in `skip` are not copied.
    """
    files, dirs = walk_files(src, skip=skip)
    for d in dirs:
        (dst / d).mkdir(parents=True, exist_ok=True)
    entries = []
    for rel in files:
        entry: FileEntry | None = None
        with open(src / rel, "rb", buffering=0) as fin, writing(dst / rel), open(dst / rel, "wb", buffering=0) as fout:
            if not _kernel_copy(fin.fileno(), fout.fileno()):
                fin.seek(0)
                fout.seek(0)
                fout.truncate(0)
                entry = _copy_loop(fin, fout, rel)
            if fsync:
                os.fsync(fout.fileno())
        if entry is None:
            entry = hash_file(dst / rel)
        entries.append(FileEntry(rel, entry.size, entry.sha256))
    if fsync:
        fsync_tree_dirs(dst, dirs)
    return entries


def _kernel_copy(fd_in: int, fd_out: int) -> bool:
    """Copy a whole file with copy_file_range; False when the platform or file system refuses."""
    if not hasattr(os, "copy_file_range"):
        return False
    try:
        while os.copy_file_range(fd_in, fd_out, CHUNK * 16):
            pass
    except OSError:
        return False
    return True


def _copy_loop(fin, fout, rel: str) -> FileEntry:
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := fin.readinto(buf):
        chunk = view[:n]
        h.update(chunk)
        write_all(fout, chunk)
        size += n
    return FileEntry(rel, size, h.hexdigest())


def write_all(raw, data: bytes | memoryview) -> None:
    """Write all of `data` to an unbuffered file. Its write() may take only part (a file system filling up
    does that before it raises ENOSPC on the next call): loop, so nothing is silently cut short."""
    view = memoryview(data)
    while view:
        n = raw.write(view)
        if n is None:  # a non-blocking file that would block: never ours, but never a silent loss either
            raise OSError(errno.EAGAIN, "the file would block")
        view = view[n:]


def fsync_tree_dirs(root: Path, rel_dirs: Iterable[str] = ()) -> None:
    for d in [*rel_dirs, "."]:
        fsync_dir(root / d)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compare_tree(root: Path, expected: Iterable[FileEntry], *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Problems found re-hashing root against expected entries: one human line per file."""
    want = {f.path: f for f in expected}
    try:
        have, _ = walk_files(root, skip=skip)
    except InvalidInput as exc:
        return [str(exc)]
    problems = []
    for rel in sorted(set(want) - set(have)):
        problems.append(f"missing file {rel}")
    for rel in sorted(set(have) - set(want)):
        problems.append(f"unexpected file {rel}")
    for rel in sorted(set(have) & set(want)):
        got = hash_file(root / rel)
        exp = want[rel]
        if got.size != exp.size:
            problems.append(f"size mismatch in {rel}: expected {exp.size} bytes, found {got.size}")
        elif got.sha256 != exp.sha256:
            problems.append(f"sha256 mismatch in {rel}: expected {exp.sha256[:12]}..., found {got.sha256[:12]}...")
    return problems
