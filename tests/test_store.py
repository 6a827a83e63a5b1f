"""The artifact store through its library API, with real SavedModels."""

import json
import os
import sqlite3

import pytest

from maasctl.errors import Conflict, InvalidInput, NotFound
from maasctl.store import Store


def test_register_numbers_versions_and_is_idempotent(store, saved_models):
    r1 = store.register(saved_models["small"], "iris")
    assert (r1.info.version, r1.created) == (1, True)
    again = store.register(saved_models["small"], "iris")
    assert (again.info.version, again.created) == (1, False)
    forced = store.register(saved_models["small"], "iris", new_version=True)
    assert (forced.info.version, forced.created) == (2, True)
    r3 = store.register(saved_models["small_b"], "iris")
    assert r3.info.version == 3
    assert [v.version for v in store.list_versions("iris")] == [1, 2, 3]
    assert store.resolve("iris").version == 3
    assert store.resolve("iris@latest").version == 3


def test_version_dir_is_a_tf_serving_version_dir(store, saved_models):
    info = store.register(saved_models["small"], "iris").info
    assert info.path == store.root / "models" / "iris" / "1"
    names = sorted(p.name for p in info.path.iterdir())
    assert {"saved_model.pb", "variables", "maas.json"} <= set(names)
    manifest = json.loads((info.path / "maas.json").read_text())
    assert manifest["content_sha256"] == info.sha256
    assert "serving_default" in manifest["signatures"]
    assert sum(f["size"] for f in manifest["files"]) == info.size


def test_registry_is_sqlite_wal(store, saved_models):
    store.register(saved_models["small"], "iris")
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"models", "versions", "aliases", "events"} <= tables


def test_loaded_version_predicts_like_source(tf, store, saved_models):
    import numpy as np

    from maasctl.tf.loader import load_version

    store.register(saved_models["small"], "iris")
    _, loaded = load_version(store, "iris@1")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    ours = loaded.predict({"features": x})["output_0"]
    ref = tf.saved_model.load(str(saved_models["small"])).signatures["serving_default"](features=tf.constant(x))["output_0"]
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6)


def test_aliases_move_and_keep_history(store, saved_models):
    store.register(saved_models["small"], "iris", aliases=["candidate"])
    store.register(saved_models["small_b"], "iris")
    info, old = store.set_alias("iris@2", "production")
    assert (info.version, old) == (2, None)
    info, old = store.set_alias("iris@1", "production")
    assert (info.version, old) == (1, 2)
    assert store.resolve("iris@production").version == 1
    assert store.aliases("iris") == {"candidate": 1, "production": 1}
    history = [(e["event"], e["from_version"], e["to_version"]) for e in store.history("iris", "production")]
    assert history == [("alias_set", None, 2), ("alias_set", 2, 1)]
    assert store.remove_alias("iris", "candidate") == 1
    with pytest.raises(NotFound, match="has no alias 'candidate' \\(aliases: production\\)"):
        store.resolve("iris@candidate")


def test_remove_refuses_aliased_and_never_reuses_numbers(store, saved_models):
    store.register(saved_models["small"], "iris", aliases=["production"])
    store.register(saved_models["small_b"], "iris")
    with pytest.raises(Conflict, match="alias\\(es\\) production"):
        store.remove("iris@1")
    store.remove("iris@2")
    assert not store.version_dir("iris", 2).exists()
    with pytest.raises(NotFound, match="has no version 2 \\(it was removed\\) \\(latest is 1\\)"):
        store.resolve("iris@2")
    r = store.register(saved_models["small_b"], "iris")
    assert r.info.version == 3
    store.remove("iris@1", force=True)
    assert store.aliases("iris") == {}
    assert [e["event"] for e in store.history("iris")][-2:] == ["alias_removed", "removed"]


def test_not_found_messages_say_what_exists(store, saved_models):
    with pytest.raises(NotFound, match="has no models"):
        store.resolve("iris")
    store.register(saved_models["small"], "iris")
    with pytest.raises(NotFound, match="did you mean 'iris'"):
        store.resolve("irs")
    with pytest.raises(NotFound, match="no version 7 \\(latest is 1\\)"):
        store.resolve("iris@7")


def test_verify_names_the_tampered_file(store, saved_models):
    info = store.register(saved_models["small"], "iris").info
    assert all(r.ok for r in store.verify())
    target = info.path / "variables" / "variables.data-00000-of-00001"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    (info.path / "assets").mkdir(exist_ok=True)  # the committed test models have no assets/
    (info.path / "assets" / "extra.txt").write_text("x")
    (report,) = store.verify("iris@1")
    assert not report.ok
    assert any("sha256 mismatch in variables/variables.data-00000-of-00001" in p for p in report.problems)
    assert any("unexpected file assets/extra.txt" in p for p in report.problems)


def test_refused_load_of_tampered_version(tf, store, saved_models):
    from maasctl.errors import OperationFailed
    from maasctl.tf.loader import load_version

    info = store.register(saved_models["small"], "iris").info
    (info.path / "saved_model.pb").write_bytes((info.path / "saved_model.pb").read_bytes() + b"\0")
    with pytest.raises(OperationFailed, match="saved_model.pb"):
        load_version(store, "iris@1")


def test_bad_input_leaves_store_unchanged(store, saved_models, tmp_path):
    from conftest import tree_snapshot

    store.register(saved_models["small"], "iris")
    before = tree_snapshot(store.root)
    for call in (
        lambda: store.register(tmp_path, "iris"),
        lambda: store.register(tmp_path / "missing", "iris"),
        lambda: store.register(saved_models["small_b"], "Bad Name"),
        lambda: store.register(saved_models["small_b"], "iris", aliases=["123"]),
        lambda: store.set_alias("iris@9", "prod"),
        lambda: store.set_alias("iris@1", "latest"),
        lambda: store.remove("nosuch@1"),
    ):
        with pytest.raises((InvalidInput, NotFound)):
            call()
    assert tree_snapshot(store.root) == before


def test_gc_sweeps_dead_staging_and_orphans(store, saved_models):
    import shutil

    store.register(saved_models["small"], "iris")
    dead = store.staging_root / "12345-deadbeef"
    dead.mkdir(parents=True)
    (dead / "half").write_bytes(b"x" * 10)
    (store.staging_root / "12345-deadbeef.lock").write_text("")
    orphan = store.version_dir("iris", 2)  # left by a writer killed between its rename and its COMMIT
    shutil.copytree(store.version_dir("iris", 1), orphan)
    (store.staging_root / "12346-cafe.lock").write_text("iris/2\n")  # that writer's publish intent
    with store.staging() as live:  # a live writer's directory must survive
        report = store.gc(dry_run=True)
        assert report.staging == ["12345-deadbeef"] and report.orphans == ["iris/2"]
        assert dead.exists() and orphan.exists()
        report = store.gc()
        assert live.exists()
    assert not dead.exists() and not orphan.exists()
    assert os.listdir(store.staging_root) == []
    assert store.resolve("iris").version == 1


def test_gc_keep_removes_old_unaliased(store, saved_models):
    store.register(saved_models["small"], "iris", aliases=["production"])
    store.register(saved_models["small_b"], "iris")
    store.register(saved_models["small"], "iris", new_version=True)
    report = store.gc(keep=1)
    assert report.versions == ["iris@2"]
    assert [v.version for v in store.list_versions("iris")] == [1, 3]


def test_reading_an_absent_store_creates_nothing(tmp_path):
    s = Store(tmp_path / "nothing")
    assert s.list_models() == []
    with pytest.raises(NotFound):
        s.resolve("iris")
    assert not (tmp_path / "nothing").exists()


def test_register_from_another_stores_version_dir(store, saved_models, tmp_path):
    """A source that already holds a maas.json (another store's version) gives a usable, verifiable version."""
    other = Store(tmp_path / "other")
    src = other.register(saved_models["small"], "iris").info.path
    r = store.register(src, "iris2")
    assert all(rep.ok for rep in store.verify("iris2"))
    assert r.info.sha256 == other.resolve("iris@1").sha256  # same content, same digest
    assert store.register(saved_models["small"], "iris2").created is False


def test_interrupted_publish_leaves_no_unregistered_version_dir(store, saved_models, monkeypatch):
    store.register(saved_models["small"], "iris")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_event", interrupted)  # after the rename, before the COMMIT
    with pytest.raises(KeyboardInterrupt):
        store.register(saved_models["small_b"], "iris")
    monkeypatch.undo()
    assert not store.version_dir("iris", 2).exists()
    assert [v.version for v in store.list_versions("iris")] == [1]
    assert store.register(saved_models["small_b"], "iris").info.version == 2


def test_snapshot_of_a_missing_index_is_an_error_not_empty(tmp_path):
    from maasctl.errors import OperationFailed

    with pytest.raises(OperationFailed, match="has no index"):
        Store(tmp_path / "gone").snapshot(["iris"])
