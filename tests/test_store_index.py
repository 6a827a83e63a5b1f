"""A lost, emptied or stale index.db must never cost a model: writers refuse, doctor rebuilds (issue 17 item 1)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, tree_snapshot

from maasctl.store import Store


def _populate(store: Store, models) -> None:
    store.register(models["small"], "iris", aliases=["production"])
    store.register(models["small_b"], "iris", aliases=["candidate"])
    store.register(models["small"], "iris", new_version=True)
    store.remove("iris@3")  # its number must never come back
    store.register(models["multi"], "multi")
    store.set_alias("iris@2", "production")


def _lose_index(store: Store, how: str) -> None:
    if how == "moved":
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{store.db_path}{suffix}")
            if p.exists():
                p.rename(f"{p}.away")
    else:  # truncated to 0 bytes
        for suffix in ("-wal", "-shm"):
            Path(f"{store.db_path}{suffix}").unlink(missing_ok=True)
        store.db_path.write_bytes(b"")


def _models_snapshot(store: Store) -> dict[str, bytes]:
    return tree_snapshot(store.models_dir)


@pytest.mark.parametrize("how", ["moved", "truncated"])
def test_lost_index_refuses_writes_reports_and_rebuilds(store, models, how):
    _populate(store, models)
    weights = _models_snapshot(store)
    _lose_index(store, how)

    r = run_cli("list", store=store.root)
    assert r.returncode == 0 and "iris/1" in r.stderr and "doctor --rebuild-index" in r.stderr
    r = run_cli("verify", store=store.root)
    assert r.returncode == 1 and "iris/2" in r.stderr and "not in the index" in r.stderr
    for args in (["register", str(models["small_b"]), "--name", "iris"], ["gc"], ["gc", "--keep", "1"],
                 ["alias", "set", "iris@1", "x"], ["rm", "iris@1"]):
        r = run_cli(*args, store=store.root)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("Error: the index") and "iris/1" in r.stderr, (args, r.stderr)
        assert "doctor --rebuild-index" in r.stderr and "Traceback" not in r.stderr
    assert _models_snapshot(store) == weights  # nothing overwritten, nothing deleted

    r = run_cli("doctor", store=store.root)
    assert r.returncode == 1 and "multi/1" in r.stderr
    r = run_cli("doctor", "--rebuild-index", "--json", store=store.root)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["versions"] == ["iris@1", "iris@2", "multi@1"]
    assert doc["aliases"] == {"iris@candidate": 2, "iris@production": 2}
    assert doc["next_versions"] == {"iris": 4, "multi": 2}

    assert run_cli("doctor", store=store.root).returncode == 0
    assert run_cli("verify", store=store.root).returncode == 0
    info = store.resolve("iris@production")
    assert info.version == 2
    assert [v.version for v in store.list_versions("iris")] == [1, 2]
    assert store.history("iris", "production")[-1]["to_version"] == 2
    # version numbers are never reused: 3 was removed before the index was lost
    assert store.register(models["multi"], "iris").info.version == 4
    assert _models_snapshot(store).items() >= weights.items()


def test_rebuild_keeps_metadata_from_the_manifests(store, models):
    r = store.register(models["small"], "iris", description="first", tags={"team": "a"},
                       meta={"class_names": ["a", "b", "c"], "metrics": {"acc": 0.5}})
    before = r.info.to_json()
    _lose_index(store, "moved")
    run = run_cli("doctor", "--rebuild-index", store=store.root)
    assert run.returncode == 0, run.stderr
    after = store.resolve("iris@1").to_json()
    assert {k: after[k] for k in ("created_at", "sha256", "size", "description", "tags", "metrics", "class_names")} \
        == {k: before[k] for k in ("created_at", "sha256", "size", "description", "tags", "metrics", "class_names")}


def test_index_restored_from_an_older_copy_refuses(store, models, tmp_path):
    store.register(models["small"], "iris")
    backup = tmp_path / "index.db.old"
    with store._read() as conn:  # a consistent copy, as a backup tool would take
        conn.execute(f"VACUUM INTO '{backup}'")
    store.register(models["small_b"], "iris")
    for suffix in ("-wal", "-shm"):
        Path(f"{store.db_path}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, store.db_path)
    assert store.index_mismatch() == ["iris/2"]
    r = run_cli("register", str(models["multi"]), "--name", "iris", store=store.root)
    assert r.returncode == 1 and "iris/2" in r.stderr
    assert store.version_dir("iris", 2).is_dir()
    assert run_cli("doctor", "--rebuild-index", store=store.root).returncode == 0
    assert [v.version for v in store.list_versions("iris")] == [1, 2]
    assert store.register(models["multi"], "iris").info.version == 3


def test_corrupt_index_is_one_line_naming_it(store, models):
    store.register(models["small"], "iris")
    for suffix in ("-wal", "-shm"):
        Path(f"{store.db_path}{suffix}").unlink(missing_ok=True)
    data = bytearray(store.db_path.read_bytes())
    data[100:4096] = os.urandom(3996)  # the schema page
    store.db_path.write_bytes(bytes(data))
    for args in (["list"], ["show", "iris"], ["register", str(models["small_b"]), "--name", "iris"]):
        r = run_cli(*args, store=store.root)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and str(store.db_path) in r.stderr and "internal error" not in r.stderr
    assert run_cli("doctor", "--rebuild-index", store=store.root).returncode == 0
    assert store.resolve("iris").version == 1


def test_an_index_from_before_who_is_read_migrated_and_rebuilt(store, saved_models):
    """Events gained a `who` column: an older index.db is read as is, migrated by the next writer, and a
    rebuild takes `who` from events.log."""
    import sqlite3

    from maasctl.store.types import who

    store.register(saved_models["small"], "iris", aliases=["production"])
    conn = sqlite3.connect(store.db_path)
    conn.execute("ALTER TABLE events DROP COLUMN who")  # the table as maasctl 0.x wrote it
    conn.close()
    assert [e["who"] for e in store.history("iris")] == [None, None]
    store.set_alias("iris@1", "candidate")  # a writer adds the column
    assert [e["who"] for e in store.history("iris")] == [None, None, who()]
    _lose_index(store, "moved")
    assert run_cli("doctor", "--rebuild-index", store=store.root).returncode == 0
    assert [e["who"] for e in store.history("iris")][:3] == [who()] * 3  # events.log always had it
