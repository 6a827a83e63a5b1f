"""The `.maas` archive itself: a reproducible one-pass tar+gzip writer and a guarded streaming reader.


Format: a tar archive, gzip-compressed by default, whose first entry is `maas.json` (the manifest, see
maasctl.store.manifest) followed by `saved_model/...` (directories and files, sorted by path). Every header has
mtime 0, uid/gid 0, empty owner names and mode 0644 (files) / 0755 (directories); the gzip header has
mtime 0 and no file name. Packaging the same source twice therefore gives byte-identical files.

One pass over the model bytes. The manifest lists every file's sha256, so it can only be written after
the files were read, yet it must come first (so `inspect` and a streaming `register` see it before any
data). Its length is known in advance (every digest is 64 hex characters), so the writer leaves a hole
of exactly that size, streams the files (hashing and compressing each chunk as it goes by), then writes
the manifest into the hole. For gzip the hole holds the gzip header and the manifest's tar entry as
stored (uncompressed) deflate blocks, whose size depends only on the input length; the compressed body
continues the same deflate stream, and the trailer's CRC-32 combines the head's and the body's. The
result is one ordinary gzip member that every gzip reader accepts.

Reading never trusts the archive: `register_package` streams it, checks every entry itself (paths, types,
duplicates, sizes, digests, limits) and writes only into a store staging directory, which is removed
unless the version is published.

"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from maasctl.errors import InvalidInput, NotFound, OperationFailed, writing
from maasctl.settings import env_int
from maasctl.store import manifest as mf
from maasctl.store.hashing import CHUNK, FileEntry, fsync_tree_dirs, write_all

PACKAGE_SUFFIX = ".maas"
MODEL_DIR = "saved_model"
COMPRESSIONS = ("gzip", "none")
DEFAULT_COMPRESSION = "gzip"
GZIP_LEVEL = 6  # gzip(1)'s default, so `tar czf` is a like-for-like baseline
DEFAULT_MAX_EXTRACT_BYTES = 20 * 1024 ** 3
DEFAULT_MAX_ENTRIES = 100_000
MAX_MANIFEST_BYTES = 64 * 1024 ** 2
MAX_METADATA_HEADER = 1024 ** 2  # pax / GNU long-name headers are read into memory by tarfile
ENV_MAX_BYTES = "MAASCTL_MAX_EXTRACT_BYTES"
ENV_MAX_ENTRIES = "MAASCTL_MAX_ENTRIES"

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, OS unknown
_STORED_MAX = 0xFFFF
_READ_CHUNK = 1024 * 1024


def _tar_header(name: str, size: int, is_dir: bool) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = 0o755 if is_dir else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(n: int) -> int:
    return -n % _BLOCK


def head_tar_len(manifest_len: int) -> int:
    return len(_tar_header(mf.MANIFEST_NAME, manifest_len, False)) + manifest_len + _pad(manifest_len)


def head_length(manifest_len: int, compression: str) -> int:
    raw = head_tar_len(manifest_len)
    if compression == "none":
        return raw
    return len(GZIP_HEADER) + raw + 5 * math.ceil(raw / _STORED_MAX)


def raw_head(manifest_bytes: bytes) -> bytes:
    """The tar bytes of the `maas.json` entry."""
    return (_tar_header(mf.MANIFEST_NAME, len(manifest_bytes), False) + manifest_bytes
            + b"\0" * _pad(len(manifest_bytes)))


def stored_blocks(data: bytes) -> bytes:
    """`data` as non-final stored (uncompressed) deflate blocks: the length depends only on len(data), and
    the deflate stream of the body continues right after them (it starts on a byte boundary)."""
    out = bytearray()
    for pos in range(0, len(data), _STORED_MAX):
        chunk = data[pos:pos + _STORED_MAX]
        out += b"\0" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    return bytes(out)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    i = 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine, which Python lacks)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = [_gf2_times(odd, odd[n]) for n in range(32)]  # two zero bits
    odd = [_gf2_times(even, even[n]) for n in range(32)]  # four zero bits
    while True:  # apply len2 zero bytes to crc1, squaring the operator for each bit of len2
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def write_body(f: BinaryIO, root: Path, files: list[str], dirs: list[str], sizes: dict[str, int],
                compression: str, *, tar_offset: int) -> tuple[list[FileEntry], int, int]:
    """Stream `saved_model/...` entries after the head, hashing each chunk as it is written.

    Returns the entries and, for gzip, the CRC-32 and length of the uncompressed body (for the trailer).
    """
    if compression == "none":
        return _write_entries(f, root, files, dirs, sizes, tar_offset), 0, 0
    sink = _ParallelGzipWriter(f, GZIP_LEVEL)
    try:
        entries = _write_entries(sink, root, files, dirs, sizes, tar_offset)  # type: ignore[arg-type]
        crc, size = sink.close()
        return entries, crc, size
    finally:
        sink.shutdown()


def _write_entries(sink: BinaryIO, root: Path, files: list[str], dirs: list[str], sizes: dict[str, int],
                   tar_offset: int) -> list[FileEntry]:
    offset = tar_offset
    entries: list[FileEntry] = []
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    items = sorted([(d, True) for d in dirs] + [(p, False) for p in files])
    header = _tar_header(MODEL_DIR, 0, True)
    sink.write(header)
    offset += len(header)
    for rel, is_dir in items:
        size = 0 if is_dir else sizes[rel]
        header = _tar_header(f"{MODEL_DIR}/{rel}", size, is_dir)
        sink.write(header)
        offset += len(header)
        if is_dir:
            continue
        h = hashlib.sha256()
        remaining = size
        with open(root / rel, "rb", buffering=0) as fin:
            while remaining:
                n = fin.readinto(view[:min(CHUNK, remaining)])
                if not n:
                    raise OperationFailed(f"{root / rel}: the file shrank while it was being packaged")
                chunk = view[:n]
                h.update(chunk)
                sink.write(chunk)
                remaining -= n
            if fin.read(1):
                raise OperationFailed(f"{root / rel}: the file grew while it was being packaged")
        sink.write(b"\0" * _pad(size))
        offset += size + _pad(size)
        entries.append(FileEntry(rel, size, h.hexdigest()))
    end = 2 * _BLOCK
    end += -(offset + end) % _RECORD
    sink.write(b"\0" * end)
    return entries


def _worker_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _ParallelGzipWriter:
    """The body's deflate stream, compressed on every core the way pigz does it.

    Deflate dominates packaging time (trained float weights barely compress, yet zlib still works through
    every byte). The stream is cut into fixed 1 MiB blocks; each is deflated on its own, primed with the
    previous block's last 32 KiB as dictionary and ended with a sync flush (the last with a finish), so the
    concatenation is one valid deflate stream. Fixed block boundaries make the bytes independent of the
    number of threads, so packages stay reproducible across machines. The gzip header, the manifest's
    stored blocks before this stream and the trailer after it are written by `build_package`.
    """

    BLOCK = 1024 * 1024
    WINDOW = 32 * 1024

    def __init__(self, f: BinaryIO, level: int) -> None:
        self._f = f
        self._level = level
        self._pending = bytearray()
        self._tail = b""
        self._crc = 0
        self._size = 0
        workers = _worker_count()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="maas-gzip") if workers > 1 else None
        self._queue: deque[Future[bytes]] = deque()
        self._max_queue = 2 * workers

    def write(self, data: bytes | memoryview) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._pending += data
        while len(self._pending) >= self.BLOCK:
            block = bytes(self._pending[:self.BLOCK])
            del self._pending[:self.BLOCK]
            self._submit(block, last=False)

    def _submit(self, block: bytes, *, last: bool) -> None:
        zdict, self._tail = self._tail, block[-self.WINDOW:]
        if self._pool is None:
            self._f.write(_deflate_block(block, zdict, self._level, last))
            return
        self._queue.append(self._pool.submit(_deflate_block, block, zdict, self._level, last))
        while len(self._queue) > self._max_queue:
            self._f.write(self._queue.popleft().result())

    def close(self) -> tuple[int, int]:
        """Finish the deflate stream; returns the CRC-32 and length of everything written."""
        self._submit(bytes(self._pending), last=True)
        self._pending.clear()
        while self._queue:
            self._f.write(self._queue.popleft().result())
        return self._crc, self._size

    def shutdown(self) -> None:
        if self._pool is not None:
            for fut in self._queue:
                fut.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None


def _deflate_block(block: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


# -- reading -------------------------------------------------------------------------------------------

class _ArchiveError(Exception):
    """A structural problem found inside tarfile's parsing; turned into InvalidInput naming the file."""


# The one use of tarfile's private API: TarInfo._proc_member, which CPython's tarfile calls for every header
# (3.10 to 3.14). Checked once, here; a Python without it never calls the override, and then only the
# decompressed-size cap (_CappedReader) bounds what a huge metadata header can cost. tests/test_seams.py
# asserts the hook is live on the Pythons we support.
PROC_MEMBER_HOOK = callable(getattr(tarfile.TarInfo, "_proc_member", None))


class _NeverRaised(Exception):
    pass


# tarfile's undocumented header-error classes (same seam): a stand-in that is never raised if one is gone
_TAR_TRUNCATED_HEADER: type[Exception] = getattr(tarfile, "TruncatedHeaderError", _NeverRaised)
_TAR_EMPTY_HEADER: type[Exception] = getattr(tarfile, "EmptyHeaderError", _NeverRaised)
_TAR_INVALID_HEADER: type[Exception] = getattr(tarfile, "InvalidHeaderError", _NeverRaised)


class _GuardedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses huge metadata headers (read into memory by tarfile) and reports truncation
    and corrupt headers instead of letting tarfile treat them as a quiet end of archive."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _GuardedTarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except (_TAR_TRUNCATED_HEADER, _TAR_EMPTY_HEADER):
            if tarfile_.offset == 0:
                raise _ArchiveError("not a maasctl package (empty, or not a tar archive)") from None
            raise _ArchiveError("truncated archive (it ends before the end-of-archive marker)") from None
        except _TAR_INVALID_HEADER as exc:
            if tarfile_.offset == 0:
                raise _ArchiveError("not a maasctl package (not a tar archive)") from None
            raise _ArchiveError(f"corrupt tar header at byte {tarfile_.offset} ({exc})") from None

    def _proc_member(self, *args: Any, **kwargs: Any) -> tarfile.TarInfo:
        """The seam into tarfile's internals (see PROC_MEMBER_HOOK): called once per header, before tarfile
        reads a pax / GNU long-name payload into memory. Arguments are passed through untouched."""
        meta_types = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                      tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in meta_types and self.size > MAX_METADATA_HEADER:
            raise _ArchiveError(f"a tar metadata header of {self.size} bytes exceeds the limit of "
                                f"{MAX_METADATA_HEADER} bytes")
        return super()._proc_member(*args, **kwargs)  # type: ignore[misc]


class _CappedReader:
    """Counts decompressed bytes and stops a decompression bomb hiding where members cannot see it."""

    def __init__(self, raw: BinaryIO, limit: int, what: str) -> None:
        self._raw = raw
        self.count = 0
        self._limit = limit
        self._what = what

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        if self.count > self._limit:
            raise _ArchiveError(f"decompressed data exceeds {self._limit} bytes ({self._what}); "
                                f"the archive looks like a decompression bomb")
        return data


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_env(cls) -> Limits:
        return cls(env_int(ENV_MAX_BYTES, DEFAULT_MAX_EXTRACT_BYTES), env_int(ENV_MAX_ENTRIES, DEFAULT_MAX_ENTRIES))


class _PackageReader:
    """A package opened for one streaming pass: the manifest first, then the model entries."""

    def __init__(self, path: Path, tar: tarfile.TarFile, stream: _CappedReader) -> None:
        self.path = path
        self._tar = tar
        self._stream = stream
        self.manifest = self._read_manifest()

    def _fail(self, text: str) -> InvalidInput:
        return InvalidInput(f"{self.path}: {text}")

    def _read_manifest(self) -> dict[str, Any]:
        member = self._tar.next()
        if member is None:
            raise self._fail(f"empty archive (a package starts with {mf.MANIFEST_NAME})")
        if member.name != mf.MANIFEST_NAME or member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise self._fail(f"not a maasctl package: its first entry is {member.name!r}, expected {mf.MANIFEST_NAME}")
        if member.size > MAX_MANIFEST_BYTES:
            raise self._fail(f"{mf.MANIFEST_NAME} is {member.size} bytes, over the limit of {MAX_MANIFEST_BYTES}")
        fobj = self._tar.extractfile(member)
        assert fobj is not None
        data = fobj.read()
        manifest = mf.parse_manifest(data, f"{self.path}:{mf.MANIFEST_NAME}")
        _check_manifest_paths(manifest, f"{self.path}:{mf.MANIFEST_NAME}")
        return manifest

    def extract_to(self, dest: Path | None, limits: Limits) -> list[FileEntry]:
        """Stream every remaining entry into `dest`, checking it against the manifest as it goes (dest None:
        check only, writing nothing)."""
        expected = {f.path: f for f in mf.file_entries(self.manifest)}
        seen = {mf.MANIFEST_NAME}
        written: list[FileEntry] = []
        made_dirs: list[str] = []
        total = 0
        count = 1
        prefix = MODEL_DIR + "/"
        while (member := self._tar.next()) is not None:
            count += 1
            if count > limits.max_entries:
                raise self._fail(f"more than {limits.max_entries} entries (limit {ENV_MAX_ENTRIES}="
                                 f"{limits.max_entries}); refusing a possible decompression bomb")
            name = self._check_member(member, seen)
            rel = "" if name == MODEL_DIR else name[len(prefix):]
            if member.isdir():
                bad = [p for p in _ancestors(rel) if p in expected]
                if bad:
                    raise self._fail(f"entry {name}/ is a directory but the manifest lists {prefix}{bad[0]} as a file")
                if rel and dest is not None:
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    made_dirs.append(rel)
                continue
            exp = expected.get(rel)
            if exp is None:
                raise self._fail(f"the archive holds {name}, which {mf.MANIFEST_NAME} does not list")
            if member.size != exp.size:
                raise self._fail(f"size mismatch in {name}: {mf.MANIFEST_NAME} says {exp.size} bytes, "
                                 f"the archive holds {member.size}")
            total += member.size
            if total > limits.max_bytes:
                raise self._fail(f"the model would extract to more than {limits.max_bytes} bytes (limit "
                                 f"{ENV_MAX_BYTES}={limits.max_bytes}); refusing a possible decompression bomb")
            if dest is not None:
                with contextlib.suppress(AttributeError):
                    tarfile.data_filter(member, str(dest))  # defence in depth; our own checks came first
            written.append(self._extract_file(member, None if dest is None else dest / rel, rel, exp))
        missing = sorted(set(expected) - {e.path for e in written})
        if missing:
            raise self._fail(f"{mf.MANIFEST_NAME} lists {prefix}{missing[0]}, which the archive does not hold"
                             + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        self._refuse_trailing_data()
        if dest is not None:
            parents = {str(Path(e.path).parent) for e in written} - {"."}
            fsync_tree_dirs(dest, sorted(set(made_dirs) | parents))
        return written

    def _refuse_trailing_data(self) -> None:
        """Read to the end (which checks the gzip trailer): after the end-of-archive marker only zero padding
        may follow, also in what tarfile has already buffered."""
        buffered = getattr(self._tar.fileobj, "buf", b"") or b""
        chunk = bytes(buffered)
        while True:
            if chunk.strip(b"\0"):
                raise self._fail("trailing data after the tar end-of-archive marker")
            chunk = self._stream.read(CHUNK)
            if not chunk:
                return

    def _check_member(self, member: tarfile.TarInfo, seen: set[str]) -> str:
        name = member.name
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise self._fail(f"entry {name!r} has an absolute path")
        parts = name.split("/")
        if ".." in parts:
            raise self._fail(f"entry {name!r} has a '..' component")
        if member.issym():
            raise self._fail(f"entry {name!r} is a symbolic link (links are not allowed in a package)")
        if member.islnk():
            raise self._fail(f"entry {name!r} is a hard link (links are not allowed in a package)")
        if member.ischr() or member.isblk():
            raise self._fail(f"entry {name!r} is a device file")
        if member.isfifo():
            raise self._fail(f"entry {name!r} is a FIFO")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            raise self._fail(f"entry {name!r} has unsupported tar type {member.type!r}")
        if parts[0] != MODEL_DIR or any(p in ("", ".") for p in parts) or (len(parts) == 1 and not member.isdir()):
            raise self._fail(f"entry {name!r} is outside {mf.MANIFEST_NAME} and {MODEL_DIR}/")
        if name in seen:
            raise self._fail(f"duplicate entry {name!r}")
        seen.add(name)
        return name

    def _extract_file(self, member: tarfile.TarInfo, target: Path | None, rel: str, exp: FileEntry) -> FileEntry:
        # Read the data straight from the tar stream (positioned at it in stream mode): extractfile() would add
        # two more buffer copies per chunk, which is a third of the time of an uncompressed register.
        stream = self._tar.fileobj
        stream.seek(member.offset_data)  # a no-op here; refuses to go backwards
        h = hashlib.sha256()
        size = 0
        remaining = member.size
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with (open(fd, "wb", buffering=0) if target is not None else contextlib.nullcontext()) as out:
            while remaining:
                chunk = stream.read(min(_READ_CHUNK, remaining))
                if not chunk:
                    break
                h.update(chunk)
                if out is not None:
                    with writing(target):  # a full disk names the file (reads above may raise OSError too)
                        write_all(out, chunk)
                size += len(chunk)
                remaining -= len(chunk)
            if out is not None:
                with writing(target):
                    os.fsync(out.fileno())
        digest = h.hexdigest()
        if size != exp.size:
            raise self._fail(f"truncated archive: {MODEL_DIR}/{rel} holds {size} of {exp.size} bytes")
        if digest != exp.sha256:
            raise self._fail(f"sha256 mismatch in {MODEL_DIR}/{rel}: {mf.MANIFEST_NAME} says {exp.sha256[:12]}..., "
                             f"the archive holds {digest[:12]}...")
        return FileEntry(rel, size, digest)


def _ancestors(rel: str) -> list[str]:
    parts = rel.split("/") if rel else []
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _check_manifest_paths(manifest: dict[str, Any], where: str) -> None:
    """Manifest paths must be plain relative paths that can all exist together in one directory."""
    paths = [f["path"] for f in manifest["files"]]
    if not isinstance(manifest.get("name"), str) or not isinstance(manifest.get("signatures"), dict):
        raise InvalidInput(f"{where}: manifest fields 'name' (text) and 'signatures' (object) are required")
    seen: set[str] = set()
    for p in paths:
        parts = p.split("/")
        if p.startswith("/") or any(x in ("", ".", "..") for x in parts) or "\\" in p or "\0" in p:
            raise InvalidInput(f"{where}: unsafe file path {p!r} in the manifest")
        if p in mf.RESERVED:
            raise InvalidInput(f"{where}: the manifest lists a model file named {p}, which is reserved")
        if p in seen:
            raise InvalidInput(f"{where}: the manifest lists {p!r} twice")
        seen.add(p)
    for p in paths:
        for a in _ancestors(p)[:-1]:
            if a in seen:
                raise InvalidInput(f"{where}: the manifest lists {a!r} both as a file and as a directory")


@contextlib.contextmanager
def open_package(path: str | Path, limits: Limits | None = None) -> Iterator[_PackageReader]:
    """Open a package for one streaming pass; every archive-level failure becomes InvalidInput naming it."""
    path = Path(path)
    limits = limits or Limits()
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the reader that owns it
    except FileNotFoundError:
        raise NotFound(f"{path}: no such package file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a package file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the package ({exc.strerror or exc})") from None
    with raw:
        magic = raw.read(2)
        raw.seek(257)
        ustar = raw.read(5)
        raw.seek(0)
        decompressed: BinaryIO
        if magic == b"\x1f\x8b":
            decompressed = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        elif ustar == b"ustar":
            decompressed = raw
        else:
            raise InvalidInput(f"{path}: not a maasctl package (neither a gzip nor a tar archive)")
        # headers, padding and the end marker are small; 1 KiB per entry plus 64 MiB covers them generously
        cap = limits.max_bytes + MAX_MANIFEST_BYTES + 1024 * (limits.max_entries + 16)
        stream = _CappedReader(decompressed, cap, f"limit {ENV_MAX_BYTES}={limits.max_bytes}")
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_GuardedTarInfo,  # type: ignore[call-overload]
                              bufsize=_READ_CHUNK) as tar:
                yield _PackageReader(path, tar, stream)
        except _ArchiveError as exc:
            raise InvalidInput(f"{path}: {exc}") from None
        except EOFError:
            raise InvalidInput(f"{path}: truncated archive (the compressed stream ends early)") from None
        except gzip.BadGzipFile as exc:
            raise InvalidInput(f"{path}: corrupt gzip data ({exc})") from None
        except zlib.error as exc:
            raise InvalidInput(f"{path}: corrupt gzip data ({exc})") from None
        except tarfile.ReadError as exc:
            text = str(exc)
            if "unexpected end of data" in text:
                raise InvalidInput(f"{path}: truncated archive (unexpected end of data)") from None
            raise InvalidInput(f"{path}: not a valid package archive ({text})") from None
        except tarfile.TarError as exc:
            raise InvalidInput(f"{path}: not a valid package archive ({exc})") from None
        finally:
            if decompressed is not raw:
                decompressed.close()


def read_package_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a package file, read from its first entry (nothing is extracted)."""
    with open_package(path) as reader:
        return reader.manifest


