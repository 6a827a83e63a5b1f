"""The local artifact store: TF Serving version directories plus a SQLite registry index.

Layout under the root::

    index.db                      registry (WAL): models, versions, aliases, events
    models/<name>/<version>/      a TF Serving version directory (saved_model.pb, variables/, assets/) + maas.json
    runs/<run-id>/                training runs
    staging/<id>/ + <id>.lock     in-progress writes; a lock file held with flock marks the owner alive
    servers/                      records of detached servers

Publishing is atomic: files are copied and hashed into staging, fsynced, then renamed into
`models/<name>/<N>/` while holding SQLite's write lock, and the index row commits right after. A version
directory therefore never exists half-written under its final name; a crash between rename and commit
leaves a complete but unregistered directory that the next writer (or `gc`) removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from maasctl.errors import Conflict, InvalidInput, NotFound, OperationFailed, writing
from maasctl.refs import ModelRef, check_alias, check_name, parse_ref
from maasctl.store import doctor, staging
from maasctl.store import manifest as mf
from maasctl.store.base import StoreDefaults, check_expected
from maasctl.store.hashing import FileEntry, copy_tree_hashed, fsync_dir
from maasctl.store.schema import SCHEMA, migrate
from maasctl.store.types import (
    EVENT_FIELDS,
    GcReport,
    ModelSummary,
    RegisterResult,
    VerifyReport,
    VersionInfo,
    default_root,
    utcnow,
    who,
)

BUSY_TIMEOUT_MS = 120_000


class LocalStore(StoreDefaults):
    """A store rooted at a directory (a store.base.ModelStore). Cheap: nothing touches the disk until used."""

    poll_seconds = 0.5  # serve's default: re-reading SQLite is cheap

    def __init__(self, root: str | Path | None = None) -> None:
        if isinstance(root, str) and not root.strip():
            raise InvalidInput("the store path is empty (give a directory, or None for $MAASCTL_HOME / ~/.maasctl)")
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.location = str(self.root)

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / "index.db"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def staging_root(self) -> Path:
        return self.root / "staging"

    @property
    def servers_dir(self) -> Path:
        return self.root / "servers"

    def version_dir(self, name: str, version: int) -> Path:
        return self.models_dir / name / str(version)

    # -- database ------------------------------------------------------------------------------------
    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if not self.db_path.exists():
            if not create:
                return None
            self.root.mkdir(parents=True, exist_ok=True)
        if not create and not os.access(self.root, os.W_OK):
            # a read-only store (an image, a read-only mount): WAL can't make its -shm, so open it immutable
            conn = sqlite3.connect(f"file:{self.db_path}?mode=ro&immutable=1", uri=True, isolation_level=None)
        else:
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if create:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            migrate(conn)
            return conn
        has_versions = "SELECT count(*) FROM sqlite_master WHERE name='versions'"
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            tables = conn.execute(has_versions).fetchone()[0]
        except sqlite3.OperationalError as exc:  # a full disk can't grow index.db-shm: read the file as it is
            conn.close()
            conn = doctor.read_when_full(self, exc)
            tables = conn.execute(has_versions).fetchone()[0]
        if not tables:
            conn.close()  # an empty (e.g. truncated) index: nothing registered as far as it knows
            return None
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        try:
            conn = self._connect(create=False)
        except sqlite3.Error as exc:
            raise doctor.db_error(self, exc) from None
        try:
            yield conn
        except sqlite3.Error as exc:
            raise doctor.db_error(self, exc) from None
        finally:
            if conn is not None:
                conn.close()

    @contextlib.contextmanager
    def _write(self, *, check: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock (BEGIN IMMEDIATE) for its whole body. With `check`, it
        first refuses when models/ holds version directories the index doesn't know."""
        if check and not self.db_path.exists():
            unknown = doctor.unknown_dirs(self, None)
            if unknown:  # don't even create an index: the lost one is rebuilt from what is on disk
                raise doctor.IndexMismatch(doctor.mismatch_message(self, unknown))
        try:
            conn = self._connect(create=True)
            assert conn is not None
        except sqlite3.Error as exc:
            raise doctor.db_error(self, exc) from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            with doctor.events_kept_on_commit(self):  # taken under the write lock: the log is ours till COMMIT
                try:
                    if check:
                        doctor.check_models(self, conn)
                    yield conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):  # SQLITE_FULL may have rolled it back already
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise doctor.db_error(self, exc) from None
        finally:
            conn.close()

    def index_mismatch(self) -> list[str]:
        """`name/N` for version directories in models/ the index doesn't know (see doctor.py)."""
        with self._read() as conn:
            return doctor.unknown_dirs(self, conn)

    # -- staging -------------------------------------------------------------------------------------
    def staging(self) -> contextlib.AbstractContextManager[Path]:
        """A fresh directory inside the store, removed on exit unless it was renamed away (see store/staging.py)."""
        return staging.staging_dir(self.staging_root)

    def sweep_staging(self, *, dry_run: bool = False) -> list[str]:
        """Remove staging directories whose owner died (their lock file is no longer held)."""
        return staging.sweep(self.staging_root, dry_run=dry_run)

    # -- registering ---------------------------------------------------------------------------------
    def register(self, source: str | Path, name: str, *, aliases: list[str] | tuple[str, ...] = (),
                 description: str = "", tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                 source_label: str | None = None, new_version: bool = False,
                 check: Callable[[Path], None] | None = None, bundle: bytes | None = None) -> RegisterResult:
        """Copy a SavedModel directory into the store as the next version of `name` (idempotent by content).

        A signature bundle (`bundle`, else maas.sig in the source) comes along, outside the hashed files."""
        from maasctl.store.savedmodel import read_signatures

        check_name(name)
        for a in aliases:
            check_alias(a)
        src = Path(source)
        signatures = read_signatures(src)
        with contextlib.suppress(OSError):  # housekeeping must never fail a registration
            self.sweep_staging()
        with self.staging() as staged:
            # a maas.json in the source (e.g. a version directory of another store) is replaced, not copied
            files = copy_tree_hashed(src, staged, skip=mf.RESERVED)
            if bundle is not None:
                with writing(staged / mf.SIGNATURE_NAME):
                    (staged / mf.SIGNATURE_NAME).write_bytes(bundle)
            elif (src / mf.SIGNATURE_NAME).is_file():
                with writing(staged / mf.SIGNATURE_NAME):
                    shutil.copyfile(src / mf.SIGNATURE_NAME, staged / mf.SIGNATURE_NAME)
            return self.publish(staged, files, name, signatures=signatures, aliases=aliases,
                                description=description, tags=tags, meta=meta,
                                source_label=source_label or str(src.resolve()), new_version=new_version,
                                check=check)

    def publish(self, staged: Path, files: list[FileEntry], name: str, *, signatures: dict[str, Any],
                aliases: list[str] | tuple[str, ...] = (), description: str = "",
                tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                source_label: str = "", new_version: bool = False,
                check: Callable[[Path], None] | None = None, bundle: bytes | None = None,
                progress: Callable[[int], None] | None = None) -> RegisterResult:
        """Publish a fully written, hashed staging directory as a new version (or find its twin).

        The caller guarantees `files` describes `staged` exactly (it hashed them while writing). `check`
        (e.g. a signature policy) sees the staged directory first and may refuse it: the store stays unchanged.
        A signature bundle in `staged` is kept with the version (and given to an identical twin lacking one).
        """
        check_name(name)
        if bundle is not None:  # `progress` is for remote stores: nothing is transferred here
            with writing(staged / mf.SIGNATURE_NAME):
                (staged / mf.SIGNATURE_NAME).write_bytes(bundle)
        if check is not None:
            check(staged)
        meta = dict(meta or {})
        tags = dict(tags or {})
        digest = mf.build_manifest(name, files, signatures)["content_sha256"]
        size = sum(f.size for f in files)
        renamed: Path | None = None
        try:
            with self._write() as conn:
                if not new_version:
                    row = conn.execute(
                        "SELECT version FROM versions WHERE name=? AND sha256=? AND removed_at IS NULL "
                        "ORDER BY version LIMIT 1", (name, digest)).fetchone()
                    if row is not None:
                        twin = self.version_dir(name, row["version"])
                        if (staged / mf.SIGNATURE_NAME).is_file() and not (twin / mf.SIGNATURE_NAME).exists():
                            os.replace(staged / mf.SIGNATURE_NAME, twin / mf.SIGNATURE_NAME)
                        for a in aliases:
                            self._move_alias(conn, name, a, row["version"])
                        return RegisterResult(self._info(conn, name, row["version"]), created=False)
                now = utcnow()
                conn.execute("INSERT OR IGNORE INTO models(name, created_at, next_version) VALUES (?, ?, 1)",
                             (name, now))
                version = conn.execute("SELECT next_version FROM models WHERE name=?", (name,)).fetchone()[0]
                manifest = mf.build_manifest(name, files, signatures, meta, version=version, created_at=now,
                                             description=description, tags=tags)
                mf.write_manifest(staged, manifest)
                fsync_dir(staged)
                final = self.version_dir(name, version)
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # never overwrite: check_models already removed what a crashed writer left
                    raise doctor.IndexMismatch(doctor.mismatch_message(self, [f"{name}/{version}"]))
                lock_path = staged.parent / f"{staged.name}.lock"
                if lock_path.exists():  # so a crash between rename and COMMIT leaves a recognisable directory
                    staging.write_intent(lock_path, name, version)
                os.rename(staged, final)
                renamed = final
                fsync_dir(final.parent)
                conn.execute(
                    "INSERT INTO versions(name, version, created_at, sha256, size, source, description, tags, "
                    "metrics, lineage, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (name, version, now, digest, size, source_label, description, json.dumps(tags),
                     json.dumps(meta.get("metrics") or {}), json.dumps(meta.get("lineage") or {}),
                     json.dumps({k: v for k, v in meta.items() if k not in ("metrics", "lineage")})))
                conn.execute("UPDATE models SET next_version=? WHERE name=?", (version + 1, name))
                self._event(conn, name, "registered", version=version)
                for a in aliases:
                    self._move_alias(conn, name, a, version)
                result = RegisterResult(self._info(conn, name, version), created=True)
            return result  # committed
        except BaseException:
            # Interrupted or failed before the COMMIT: the index rolled back, so take the directory back out
            # of models/ as well (tensorflow_model_server must not load an unregistered version). A SIGKILL
            # cannot be caught; its leftover is swept by the next writer or gc.
            if renamed is not None:
                with contextlib.suppress(OSError):
                    self._discard(renamed)
            raise

    def _discard(self, path: Path) -> None:
        doctor.discard(self, path)

    # -- reading -------------------------------------------------------------------------------------
    def _info(self, conn: sqlite3.Connection, name: str, version: int) -> VersionInfo:
        row = conn.execute("SELECT * FROM versions WHERE name=? AND version=? AND removed_at IS NULL",
                           (name, version)).fetchone()
        if row is None:
            raise NotFound(self._missing_version_message(conn, name, version))
        aliases = [r[0] for r in conn.execute(
            "SELECT alias FROM aliases WHERE name=? AND version=? ORDER BY alias", (name, version))]
        return self._row_info(row, aliases)

    def _row_info(self, row: sqlite3.Row, aliases: list[str]) -> VersionInfo:
        return VersionInfo(
            name=row["name"], version=row["version"], created_at=row["created_at"], sha256=row["sha256"],
            size=row["size"], path=self.version_dir(row["name"], row["version"]), source=row["source"],
            description=row["description"], tags=json.loads(row["tags"]), metrics=json.loads(row["metrics"]),
            lineage=json.loads(row["lineage"]), meta=json.loads(row["meta"]), aliases=aliases)

    def _live_versions(self, conn: sqlite3.Connection, name: str) -> list[int]:
        return [r[0] for r in conn.execute(
            "SELECT version FROM versions WHERE name=? AND removed_at IS NULL ORDER BY version", (name,))]

    def _model_names(self, conn: sqlite3.Connection) -> list[str]:
        return [r[0] for r in conn.execute(
            "SELECT DISTINCT name FROM versions WHERE removed_at IS NULL ORDER BY name")]

    def _missing_model_message(self, conn: sqlite3.Connection | None, name: str) -> str:
        names = self._model_names(conn) if conn is not None else []
        if not names:
            return f"model '{name}' not found: the store at {self.root} has no models. See: maasctl register --help"
        import difflib
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"model '{name}' not found ({hint}models: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''})"

    def _no_index(self, name: str) -> Exception:
        """What a writer raises on a store without index.db: a mismatch if models/ isn't empty, else NotFound."""
        unknown = doctor.unknown_dirs(self, None)
        return doctor.IndexMismatch(doctor.mismatch_message(self, unknown)) if unknown else \
            NotFound(self._missing_model_message(None, name))

    def _missing_version_message(self, conn: sqlite3.Connection, name: str, version: int) -> str:
        live = self._live_versions(conn, name)
        if not live:
            return self._missing_model_message(conn, name)
        removed = conn.execute("SELECT removed_at FROM versions WHERE name=? AND version=?",
                               (name, version)).fetchone()
        why = " (it was removed)" if removed is not None else ""
        return f"model '{name}' has no version {version}{why} (latest is {live[-1]}). See: maasctl list {name}"

    def resolve(self, ref: str | ModelRef) -> VersionInfo:
        """The live version a reference names; NotFound says what exists instead."""
        if isinstance(ref, str):
            ref = parse_ref(ref)
        with self._read() as conn:
            if conn is None:
                raise NotFound(self._missing_model_message(None, ref.name))
            return self._resolve(conn, ref)

    def _resolve(self, conn: sqlite3.Connection, ref: ModelRef) -> VersionInfo:
        if ref.version is not None:
            return self._info(conn, ref.name, ref.version)
        if ref.alias is not None:
            row = conn.execute("SELECT version FROM aliases WHERE name=? AND alias=?",
                               (ref.name, ref.alias)).fetchone()
            if row is None:
                if not self._live_versions(conn, ref.name):
                    raise NotFound(self._missing_model_message(conn, ref.name))
                known = [r[0] for r in conn.execute("SELECT alias FROM aliases WHERE name=? ORDER BY alias",
                                                    (ref.name,))]
                have = f"aliases: {', '.join(known)}" if known else "it has no aliases"
                raise NotFound(f"model '{ref.name}' has no alias '{ref.alias}' ({have}). "
                               f"See: maasctl alias set {ref.name}@VERSION {ref.alias}")
            return self._info(conn, ref.name, row[0])
        live = self._live_versions(conn, ref.name)
        if not live:
            raise NotFound(self._missing_model_message(conn, ref.name))
        return self._info(conn, ref.name, live[-1])

    def list_models(self) -> list[ModelSummary]:
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT m.name, m.created_at, MAX(v.version) AS latest, COUNT(v.version) AS n FROM models m "
                "JOIN versions v ON v.name = m.name AND v.removed_at IS NULL GROUP BY m.name ORDER BY m.name")
            out = [ModelSummary(r["name"], r["latest"], r["n"], {}, r["created_at"]) for r in rows]
            aliases: dict[str, dict[str, int]] = {}
            for r in conn.execute("SELECT name, alias, version FROM aliases ORDER BY name, alias"):
                aliases.setdefault(r["name"], {})[r["alias"]] = r["version"]
            for m in out:
                m.aliases = aliases.get(m.name, {})
            return out

    def list_versions(self, name: str) -> list[VersionInfo]:
        check_name(name)
        with self._read() as conn:
            if conn is None:
                raise NotFound(self._missing_model_message(None, name))
            rows = conn.execute("SELECT * FROM versions WHERE name=? AND removed_at IS NULL ORDER BY version",
                                (name,)).fetchall()
            if not rows:
                raise NotFound(self._missing_model_message(conn, name))
            aliases: dict[int, list[str]] = {}
            for r in conn.execute("SELECT alias, version FROM aliases WHERE name=? ORDER BY alias", (name,)):
                aliases.setdefault(r["version"], []).append(r["alias"])
            return [self._row_info(r, aliases.get(r["version"], [])) for r in rows]

    def aliases(self, name: str) -> dict[str, int]:
        with self._read() as conn:
            if conn is None:
                return {}
            return {r[0]: r[1] for r in conn.execute(
                "SELECT alias, version FROM aliases WHERE name=? ORDER BY alias", (name,))}

    def snapshot(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """One consistent read of live versions and aliases per model (for the serving Source)."""
        with self._read() as conn:
            if conn is None:  # unreadable is not empty: a poller must not unload everything on a blip
                raise OperationFailed(f"the store at {self.root} has no index ({self.db_path.name} is missing)")
            conn.execute("BEGIN")
            try:
                wanted = names if names is not None else self._model_names(conn)
                out = {}
                for n in wanted:
                    out[n] = {"versions": self._live_versions(conn, n),
                              "aliases": {r[0]: r[1] for r in conn.execute(
                                  "SELECT alias, version FROM aliases WHERE name=?", (n,))}}
                return out
            finally:
                conn.execute("COMMIT")

    def manifest(self, info: VersionInfo) -> dict[str, Any]:
        return mf.read_manifest(info.path)

    # -- aliases -------------------------------------------------------------------------------------
    def _event(self, conn: sqlite3.Connection, name: str, event: str, *, version: int | None = None,
               alias: str | None = None, from_version: int | None = None, to_version: int | None = None) -> None:
        at, by = utcnow(), who()
        doctor.append_event(self, {"at": at, "name": name, "event": event, "version": version, "alias": alias,
                                   "from_version": from_version, "to_version": to_version, "who": by})
        conn.execute("INSERT INTO events(at, name, event, version, alias, from_version, to_version, who) "
                     "VALUES (?,?,?,?,?,?,?,?)", (at, name, event, version, alias, from_version, to_version, by))

    def _move_alias(self, conn: sqlite3.Connection, name: str, alias: str, version: int) -> int | None:
        row = conn.execute("SELECT version FROM aliases WHERE name=? AND alias=?", (name, alias)).fetchone()
        old = row[0] if row else None
        if old == version:
            return old
        conn.execute("INSERT OR REPLACE INTO aliases(name, alias, version, updated_at) VALUES (?,?,?,?)",
                     (name, alias, version, utcnow()))
        self._event(conn, name, "alias_set", alias=alias, from_version=old, to_version=version)
        return old

    def set_alias(self, ref: str | ModelRef, alias: str, *,
                  expect_version: int | None = None) -> tuple[VersionInfo, int | None]:
        """Point alias at the version ref names; returns (that version, the alias's previous version)."""
        check_alias(alias)
        if isinstance(ref, str):
            ref = parse_ref(ref)
        if not self.db_path.exists():
            raise self._no_index(ref.name)
        with self._write() as conn:
            info = self._resolve(conn, ref)
            row = conn.execute("SELECT version FROM aliases WHERE name=? AND alias=?", (info.name, alias)).fetchone()
            if expect_version is not None:
                check_expected(info.name, alias, row[0] if row else None, expect_version)
            old = self._move_alias(conn, info.name, alias, info.version)
            return self._info(conn, info.name, info.version), old

    def remove_alias(self, name: str, alias: str) -> int:
        check_name(name)
        check_alias(alias)
        if not self.db_path.exists():
            raise self._no_index(name)
        with self._write() as conn:
            row = conn.execute("SELECT version FROM aliases WHERE name=? AND alias=?", (name, alias)).fetchone()
            if row is None:
                self._resolve(conn, ModelRef(name, alias=alias))  # raises the helpful NotFound
            conn.execute("DELETE FROM aliases WHERE name=? AND alias=?", (name, alias))
            self._event(conn, name, "alias_removed", alias=alias, from_version=row[0])
            return row[0]

    def history(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        check_name(name)
        with self._read() as conn:
            if conn is None or not conn.execute("SELECT 1 FROM models WHERE name=?", (name,)).fetchone():
                raise NotFound(self._missing_model_message(conn, name))
            sql = "SELECT * FROM events WHERE name=?"  # an old read-only index may lack the `who` column
            args: list[Any] = [name]
            if alias is not None:
                sql += " AND alias=?"
                args.append(alias)
            return [{f: dict(r).get(f) for f in EVENT_FIELDS} for r in conn.execute(sql + " ORDER BY id", args)]

    # -- removal ------------------------------------------------------------------------------------
    def remove(self, ref: str | ModelRef, *, force: bool = False) -> VersionInfo:
        """Remove a version (index first, then files). Its number is never reused."""
        if isinstance(ref, str):
            ref = parse_ref(ref)
        if not self.db_path.exists():
            raise self._no_index(ref.name)
        if ref.version is None and ref.alias is None:  # never guess "latest" for a removal
            latest = self.resolve(ref)
            raise InvalidInput(f"say which version to remove: {latest.ref} (a bare name means the latest, which "
                               f"rm does not assume)")
        with self._write() as conn:
            info = self._resolve(conn, ref)
            if info.aliases and not force:
                names = ", ".join(info.aliases)
                raise Conflict(f"{info.ref} is pointed at by alias(es) {names}; move them first "
                               f"(maasctl alias set {info.name}@VERSION ALIAS) or use --force")
            for a in info.aliases:
                conn.execute("DELETE FROM aliases WHERE name=? AND alias=?", (info.name, a))
                self._event(conn, info.name, "alias_removed", alias=a, from_version=info.version)
            conn.execute("UPDATE versions SET removed_at=? WHERE name=? AND version=?",
                         (utcnow(), info.name, info.version))
            self._event(conn, info.name, "removed", version=info.version)
        with self._write(check=False):  # the same discipline as gc: files leave models/ under the write lock
            self._discard(info.path)
        return info

    # -- integrity ----------------------------------------------------------------------------------
    def verify(self, ref: str | ModelRef | None = None) -> list[VerifyReport]:
        """Re-hash stored versions against the digests recorded at registration (see integrity.py)."""
        from maasctl.store.integrity import verify

        return verify(self, None if ref is None else self.resolve(ref))

    def check_version(self, info: VersionInfo) -> list[str]:
        """Problems with one stored version's files, each naming the file; empty when intact."""
        from maasctl.store.integrity import check_version

        return check_version(self, info)

    def gc(self, *, keep: int | None = None, dry_run: bool = False,
           lease_seconds: float | None = None) -> GcReport:  # a lease is for remote stores: here, flocks tell
        """Sweep dead staging dirs and unregistered version dirs; with keep, old unaliased versions too."""
        report = GcReport(dry_run=dry_run)
        report.staging = self.sweep_staging(dry_run=dry_run)
        if not self.db_path.exists():
            if doctor.unknown_dirs(self, None):
                raise self._no_index("")  # the mismatch: a lost index must not make gc delete versions
            return report
        if keep is not None:
            if keep < 1:
                raise InvalidInput(f"--keep must be at least 1 (got {keep})")
            for m in self.list_models():
                versions: list[VersionInfo] = []
                with contextlib.suppress(NotFound):  # NotFound: every version removed meanwhile by someone else
                    versions = self.list_versions(m.name)
                for v in (v for v in versions[:-keep] if not v.aliases):
                    if not dry_run:
                        try:
                            self.remove(v.ref)
                        except (Conflict, NotFound):  # aliased or removed meanwhile by someone else: skip it
                            continue
                    report.versions.append(v.ref)
        with self._write(check=False) as conn:  # the write lock keeps a concurrent publish's rename+commit atomic
            report.orphans = doctor.check_models(self, conn, dry_run=dry_run)
        return report
