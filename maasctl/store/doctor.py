"""Keeping the index honest about `models/`: find version directories it doesn't know, rebuild it from disk.

The index (index.db) is the only record of which version directories are registered. If it is lost, truncated,
restored from an older backup or loses its `-wal`, `models/` holds complete versions it has never heard of. A
writer that trusted such an index would reuse `models/<name>/1` and `gc` would delete everything else, so:

- every write transaction first calls `check_models`: directories left by a writer killed between its rename and
  its COMMIT are recognised by the publish intent it wrote into its staging lock file and removed; any other
  unknown version directory makes the write refuse with `IndexMismatch` naming the directories and the fix;
- `rebuild_index` recreates the index from the `maas.json` beside each version plus `events.log`, the append-only
  copy of the event log kept beside the index, so aliases, history and the never-reuse-a-number rule survive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maasctl.errors import InvalidInput, OperationFailed, writing
from maasctl.store import manifest as mf
from maasctl.store import staging

if TYPE_CHECKING:
    from maasctl.store.local import LocalStore as Store

EVENTS_LOG = "events.log"
FIX = "maasctl doctor --rebuild-index"


class IndexMismatch(OperationFailed):
    """models/ holds version directories the index does not know: writing could destroy them."""


def version_dirs(store: Store) -> list[tuple[str, int]]:
    """Every `models/<name>/<N>/` directory on disk, sorted."""
    out: list[tuple[str, int]] = []
    if not store.models_dir.is_dir():
        return out
    for model_dir in sorted(store.models_dir.iterdir()):
        if not model_dir.is_dir():
            continue
        for vdir in model_dir.iterdir():
            if vdir.name.isdigit() and vdir.is_dir():
                out.append((model_dir.name, int(vdir.name)))
    return sorted(out)


def _known(conn: sqlite3.Connection | None) -> dict[tuple[str, int], bool]:
    """(name, version) -> removed? for every row of the index."""
    if conn is None:
        return {}
    return {(r[0], r[1]): r[2] is not None for r in conn.execute("SELECT name, version, removed_at FROM versions")}


def unknown_dirs(store: Store, conn: sqlite3.Connection | None) -> list[str]:
    """`name/N` for version directories the index has no row for (neither live nor removed) and that no crashed
    writer's publish intent explains."""
    known = _known(conn)
    dirs = [f"{n}/{v}" for n, v in version_dirs(store) if (n, v) not in known]
    if dirs:
        intents = _dead_intents(store)
        dirs = [d for d in dirs if d not in intents]
    return dirs


def db_error(store: Store, exc: sqlite3.Error) -> OperationFailed:
    """An SQLite failure as one line naming the index (and the fix, when the file is damaged). SQLite says
    "disk I/O error" when a full disk stops it growing index.db-shm or -wal: say that the disk is full."""
    text = str(exc)
    if "malformed" in text or "not a database" in text:
        return OperationFailed(f"the index {store.db_path} is corrupt ({text}); run: {FIX}")
    if _io_error(exc) and (free := _free_bytes(store.root)) is not None and free < LOW_SPACE:
        return OperationFailed(f"cannot write the index {store.db_path} or its -wal/-shm: {text}; the file system "
                               f"holding it is full ({free // 1024} KiB free): free space there")
    return OperationFailed(f"the index {store.db_path}: {text}")


LOW_SPACE = 1 << 20  # under this, an SQLite I/O error is blamed on a full disk


def _io_error(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "disk I/O error" in text or "disk is full" in text


def _free_bytes(path: Path) -> int | None:
    with contextlib.suppress(OSError):
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    return None


def read_when_full(store: Store, exc: sqlite3.Error) -> sqlite3.Connection:
    """A reader that cannot grow index.db-shm (a full disk: SQLITE_IOERR_SHMSIZE) reads the index file as it
    is, immutable: exact while the -wal holds nothing (everything committed is in index.db). Otherwise raise."""
    try:
        wal = Path(f"{store.db_path}-wal").stat().st_size
    except FileNotFoundError:
        wal = 0
    except OSError:
        wal = -1
    if not _io_error(exc) or wal != 0:
        raise db_error(store, exc) from None
    try:
        conn = sqlite3.connect(f"file:{store.db_path}?mode=ro&immutable=1", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        raise db_error(store, exc) from None
    conn.row_factory = sqlite3.Row
    return conn


def discard(store: Store, path: Path) -> None:
    """Move a directory out of the way (into staging, lock-less so it is swept) and delete it. Idempotent:
    a directory already discarded by a concurrent rm or gc is not an error."""
    trash = store.staging_root / f"trash-{uuid.uuid4().hex[:12]}"
    for _ in range(3):
        store.staging_root.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, trash)
            break
        except FileNotFoundError:
            if not path.exists():
                return  # already gone
            # else staging/ itself vanished (a refused package cleaning up after itself): make it again
    shutil.rmtree(trash, ignore_errors=True)


def mismatch_message(store: Store, unknown: list[str]) -> str:
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    return (f"the index {store.db_path} does not know {len(unknown)} version director"
            f"{'y' if len(unknown) == 1 else 'ies'} in {store.models_dir} ({shown}); it was lost, emptied or "
            f"restored from an older copy. Refusing to write so nothing is overwritten or deleted; "
            f"run: {FIX}")


def _dead_intents(store: Store) -> dict[str, list[Path]]:
    """`name/N` -> lock files of dead writers that were publishing it."""
    out: dict[str, list[Path]] = {}
    if not store.staging_root.is_dir():
        return out
    for lock_path in store.staging_root.glob("*.lock"):
        target = staging.read_intent(lock_path)
        if target is None:
            continue
        with staging.dead_owner_lock(lock_path) as dead:
            if dead:
                out.setdefault(target, []).append(lock_path)
    return out


def check_models(store: Store, conn: sqlite3.Connection, *, dry_run: bool = False) -> list[str]:
    """Called under the write lock before any write: clean up after crashed writers, refuse on a mismatch.

    Returns the `name/N` directories removed (or, with dry_run, that would be): those of removed versions
    whose files outlived the removal, and those of writers killed between rename and COMMIT.
    """
    known = _known(conn)
    intents = _dead_intents(store)
    removed, unknown = [], []
    for n, v in version_dirs(store):
        key = f"{n}/{v}"
        if known.get((n, v)) is True or (key in intents and (n, v) not in known):
            removed.append(key)
        elif (n, v) not in known:
            unknown.append(key)
    if unknown:
        raise IndexMismatch(mismatch_message(store, unknown))
    if not dry_run:
        for key in removed:
            n, v_text = key.split("/")
            with contextlib.suppress(FileNotFoundError):
                store._discard(store.version_dir(n, int(v_text)))
        for locks in intents.values():
            for lock_path in locks:
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
    return removed


# -- the append-only event log ------------------------------------------------------------------------------------
def append_event(store: Store, event: dict[str, Any]) -> None:
    """Append one event to events.log (fsynced before the index commits it)."""
    line = json.dumps(event, sort_keys=True) + "\n"
    path = store.root / EVENTS_LOG
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = line.encode()
        with writing(path):  # a full disk names the log (os.write names no file); a short write goes on
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def events_kept_on_commit(store: Store) -> Iterator[None]:
    """Cut events.log back to where it was when the write transaction around this fails (the index rolled
    back, e.g. on a full disk), so the log never records what the index never committed."""
    path = store.root / EVENTS_LOG
    try:
        mark: int | None = path.stat().st_size
    except FileNotFoundError:
        mark = None
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if mark is None:
                path.unlink()
            elif path.stat().st_size > mark:
                os.truncate(path, mark)
        raise


def read_events(store: Store) -> list[dict[str, Any]]:
    path = store.root / EVENTS_LOG
    events = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict) and isinstance(doc.get("name"), str) and isinstance(doc.get("event"), str):
                        events.append(doc)
    except FileNotFoundError:
        pass
    return events


# -- rebuilding ---------------------------------------------------------------------------------------------------
@dataclass
class RebuildReport:
    versions: list[str] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    next_versions: dict[str, int] = field(default_factory=dict)
    events: int = 0
    backup: str | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"versions": self.versions, "aliases": self.aliases, "skipped": self.skipped,
                "next_versions": self.next_versions, "events": self.events, "backup": self.backup,
                "dry_run": self.dry_run}


def _old_rows(store: Store) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of the existing index, where it can still be read (a source label is worth keeping)."""
    if not store.db_path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{store.db_path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return {(r["name"], r["version"]): dict(r) for r in conn.execute("SELECT * FROM versions")}
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


def rebuild_index(store: Store, *, dry_run: bool = False) -> RebuildReport:
    """Recreate index.db from the manifests in models/ and events.log; the old index is kept as a backup.

    Stop writers first: a writer holding the old index open would write into the backup.
    """
    from maasctl.store.schema import SCHEMA
    from maasctl.store.types import utcnow

    report = RebuildReport(dry_run=dry_run)
    if not store.models_dir.is_dir() and not store.db_path.exists():
        raise InvalidInput(f"{store.root} is not a maasctl store (it has neither models/ nor index.db)")
    old = _old_rows(store)
    rows: list[tuple] = []
    highest: dict[str, int] = {}
    live: set[tuple[str, int]] = set()
    for name, version in version_dirs(store):
        path = store.version_dir(name, version)
        try:
            manifest = mf.read_manifest(path)
        except (InvalidInput, OSError, RecursionError) as exc:
            report.skipped.append(f"{name}/{version}: {exc}")
            continue
        if manifest.get("name") != name or manifest.get("version") not in (None, version):
            report.skipped.append(f"{name}/{version}: its {mf.MANIFEST_NAME} names "
                                  f"{manifest.get('name')}@{manifest.get('version')}")
            continue
        size = sum(f.size for f in mf.file_entries(manifest))
        meta = mf.model_meta(manifest)
        created = manifest.get("created_at") if isinstance(manifest.get("created_at"), str) else utcnow()
        source = (old.get((name, version)) or {}).get("source", "") or ""
        rows.append((name, version, created, manifest["content_sha256"], size, source,
                     str(manifest.get("description") or ""), json.dumps(manifest.get("tags") or {}),
                     json.dumps(meta.get("metrics") or {}), json.dumps(meta.get("lineage") or {}),
                     json.dumps({k: v for k, v in meta.items() if k not in ("metrics", "lineage")})))
        live.add((name, version))
        highest[name] = max(highest.get(name, 0), version)
        report.versions.append(f"{name}@{version}")
    events = read_events(store)
    report.events = len(events)
    aliases: dict[tuple[str, str | None], int] = {}
    for e in events:
        name = e["name"]
        for key in ("version", "from_version", "to_version"):
            if isinstance(e.get(key), int):
                highest[name] = max(highest.get(name, 0), e[key])
        if e["event"] == "alias_set" and isinstance(e.get("to_version"), int):
            aliases[(name, str(e.get("alias")))] = e["to_version"]
        elif e["event"] == "alias_removed":
            aliases.pop((name, str(e.get("alias"))), None)
    for (name, version) in old:  # numbers the old index handed out are never handed out again
        highest[name] = max(highest.get(name, 0), version)
    kept = {k: v for k, v in aliases.items() if (k[0], v) in live and isinstance(k[1], str)}
    report.aliases = {f"{n}@{a}": v for (n, a), v in sorted(kept.items())}
    report.next_versions = {n: v + 1 for n, v in sorted(highest.items())}
    if dry_run:
        return report
    tmp = store.root / "index.db.rebuild"
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        firsts: dict[str, str] = {}
        for r in rows:
            firsts[r[0]] = min(firsts.get(r[0], r[2]), r[2])
        for e in events:
            if isinstance(e.get("at"), str):
                firsts[e["name"]] = min(firsts.get(e["name"], e["at"]), e["at"])
        for name, nxt in report.next_versions.items():
            conn.execute("INSERT INTO models(name, created_at, next_version) VALUES (?,?,?)",
                         (name, firsts.get(name, utcnow()), nxt))
        conn.executemany("INSERT INTO versions(name, version, created_at, sha256, size, source, description, tags, "
                         "metrics, lineage, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        now = utcnow()
        for (name, alias), version in kept.items():
            conn.execute("INSERT INTO aliases(name, alias, version, updated_at) VALUES (?,?,?,?)",
                         (name, alias, version, now))
        for e in events:
            conn.execute("INSERT INTO events(at, name, event, version, alias, from_version, to_version, who) "
                         "VALUES (?,?,?,?,?,?,?,?)", tuple(e.get(k) for k in (
                             "at", "name", "event", "version", "alias", "from_version", "to_version", "who")))
        conn.execute("INSERT INTO events(at, name, event) VALUES (?, '*', 'index_rebuilt')", (now,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    if store.db_path.exists():
        backup = store.root / f"index.db.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        os.rename(store.db_path, backup)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{store.db_path}{suffix}", f"{backup}{suffix}")
        report.backup = str(backup)
    os.rename(tmp, store.db_path)
    return report
