"""`verify`: re-hash stored versions against one consistent snapshot of the index.

Removals may run while verify hashes: a version removed meanwhile is gone, not corrupt, so any version with a
problem is looked up again before it is reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maasctl.errors import InvalidInput
from maasctl.store import doctor
from maasctl.store import manifest as mf
from maasctl.store.hashing import compare_tree
from maasctl.store.types import VerifyReport, VersionInfo

if TYPE_CHECKING:
    from maasctl.store.local import LocalStore as Store


def _live_infos(store: Store) -> list[VersionInfo]:
    with store._read() as conn:
        if conn is None:
            return []
        conn.execute("BEGIN")  # one read transaction: versions and aliases from the same moment
        try:
            aliases: dict[tuple[str, int], list[str]] = {}
            for r in conn.execute("SELECT name, alias, version FROM aliases ORDER BY alias"):
                aliases.setdefault((r[0], r[2]), []).append(r[1])
            return [store._row_info(r, aliases.get((r["name"], r["version"]), [])) for r in conn.execute(
                "SELECT * FROM versions WHERE removed_at IS NULL ORDER BY name, version")]
        finally:
            conn.execute("COMMIT")


def _still_live(store: Store) -> set[tuple[str, int]]:
    with store._read() as conn:
        if conn is None:
            return set()
        return {(r[0], r[1]) for r in conn.execute("SELECT name, version FROM versions WHERE removed_at IS NULL")}


def verify(store: Store, info: VersionInfo | None = None) -> list[VerifyReport]:
    infos = [info] if info is not None else _live_infos(store)
    reports = [VerifyReport(i.ref, check_version(store, i)) for i in infos]
    if any(not r.ok for r in reports):
        live = _still_live(store)
        reports = [r for r, i in zip(reports, infos) if r.ok or (i.name, i.version) in live]
    if info is None:  # versions the index doesn't know can't be verified, and are at risk: say so
        reports += [VerifyReport(d.replace("/", "@"), [(f"{store.models_dir / d} is not in the index; run: "
                                                       f"{doctor.FIX}")]) for d in store.index_mismatch()]
    return reports


def check_version(store: Store, info: VersionInfo) -> list[str]:
    """Problems with one stored version's files, each naming the file; empty when intact."""
    if not info.path.is_dir():
        return [f"version directory {info.path} is missing"]
    try:
        manifest = mf.read_manifest(info.path)
        if manifest.get("content_sha256") != info.sha256:
            return [f"{mf.MANIFEST_NAME}: content_sha256 does not match the registry"]
        return compare_tree(info.path, mf.file_entries(manifest), skip=mf.RESERVED)
    except InvalidInput as exc:
        return [str(exc)]
    except OSError as exc:  # a file vanished or could not be read while hashing
        return [f"{exc.filename or info.path}: {exc.strerror or exc}"]
