"""Parallel writers and writers killed at random moments, with real processes and real SavedModels."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import build_mlp, run_cli

from maasctl.store import Store


def _popen_register(src: Path, name: str, store: Path) -> subprocess.Popen:
    env = {**os.environ, "MAASCTL_HOME": str(store)}
    return subprocess.Popen([sys.executable, "-m", "maasctl", "register", str(src), "--name", name, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_sixteen_parallel_writers_get_distinct_versions(store_path, distinct_models):
    procs = [_popen_register(src, "iris", store_path) for src in distinct_models]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    versions = sorted(r["version"] for r in results)
    assert versions == list(range(1, 17))
    assert all(r["created"] for r in results)
    store = Store(store_path)
    listed = store.list_versions("iris")
    assert [v.version for v in listed] == versions
    assert len({v.sha256 for v in listed}) == 16
    # each version holds exactly the content its writer reported
    by_sha = {r["sha256"]: r["version"] for r in results}
    assert all(by_sha[v.sha256] == v.version for v in listed)
    assert all(r.ok for r in store.verify())
    assert not any(store.staging_root.iterdir())


@pytest.fixture(scope="module")
def big_model(tf, tmp_path_factory) -> Path:
    """~64 MB of weights, so a kill often lands in the middle of the copy."""
    return build_mlp(tf, tmp_path_factory.mktemp("big") / "big", [4, 4000, 4000, 3], seed=7)


def test_sigkill_at_random_moments_never_exposes_a_half_version(store_path, big_model, saved_models):
    rng = random.Random(1234)
    store = Store(store_path)
    reported: dict[int, str] = {}
    kills = 0
    # time one uninterrupted run, then kill at varied fractions of it (adapts to the machine's speed)
    durations = []
    for _ in range(2):
        start = time.monotonic()
        assert _popen_register(big_model, "big", store_path).wait(timeout=120) == 0
        durations.append(time.monotonic() - start)
        store.remove(store.resolve("big").ref)  # rm takes an explicit version
    full = min(durations)
    rounds = 0
    while kills < 20 and rounds < 60:
        rounds += 1
        p = _popen_register(big_model, "big", store_path)
        delay = full * rng.uniform(0.3, 1.0)
        try:
            out, _ = p.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            out, _ = p.communicate()
            kills += 1
        if p.returncode == 0:
            doc = json.loads(out)
            reported[doc["version"]] = doc["sha256"]
        # whatever happened, every visible version is complete and intact
        for report in store.verify():
            assert report.ok, report.problems
        # force a new version next time so each round really writes
        if store.list_models():
            latest = store.resolve("big")
            store.remove(latest.ref, force=True)
            reported.pop(latest.version, None)
    assert kills >= 20, f"only {kills} kills landed in {rounds} rounds; the test is not exercising crashes"
    # the next writer sweeps leftovers; gc finds nothing more afterwards
    r = run_cli("register", str(saved_models["small"]), "--name", "big", "--json", store=store_path)
    assert r.returncode == 0, r.stderr
    gc = store.gc()
    assert gc.staging == [] and gc.orphans == []
    assert sorted(p.name for p in store.staging_root.iterdir()) == []
    for report in store.verify():
        assert report.ok, report.problems


KILL_AFTER_RENAME = """
import os, signal, sys
from maasctl.store import Store
store = Store(sys.argv[1])
real = store._event
def die(*a, **k):  # the rename into models/ is done, the COMMIT is not
    os.kill(os.getpid(), signal.SIGKILL)
store._event = die
store.register(sys.argv[2], "iris")
"""


def test_kill_between_rename_and_commit_leaves_sweepable_orphan(store, saved_models):
    """A real SIGKILL in the narrowest window: a complete version dir under its final name, no index row."""
    store.register(saved_models["small"], "iris")
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_RENAME, str(store.root), str(saved_models["small_b"])],
                          check=False, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert store.version_dir("iris", 2).is_dir()  # the orphan
    assert [v.version for v in store.list_versions("iris")] == [1]  # invisible
    assert store.index_mismatch() == []  # recognised by its writer's publish intent: not an index mismatch
    r = store.register(saved_models["small_b"], "iris")  # the next writer removes the orphan and takes number 2
    assert r.info.version == 2
    assert all(rep.ok for rep in store.verify())
    assert [p.name for p in store.staging_root.iterdir()] == []


def test_concurrent_alias_moves_are_all_logged(store_path, saved_models):
    store = Store(store_path)
    store.register(saved_models["small"], "iris")
    store.register(saved_models["small_b"], "iris")
    env = {**os.environ, "MAASCTL_HOME": str(store_path)}
    procs = [subprocess.Popen([sys.executable, "-m", "maasctl", "alias", "set", f"iris@{1 + i % 2}", "prod"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    moves = store.history("iris", "prod")
    final = store.aliases("iris")["prod"]
    assert moves[-1]["to_version"] == final
    # the log is a consistent chain: each move starts where the previous one ended
    for prev, cur in itertools.pairwise(moves):
        assert cur["from_version"] == prev["to_version"]


@pytest.mark.slow
def test_rm_gc_verify_race_on_the_same_directories(store_path, saved_models):
    """6 gc + 30 rm + gc --keep + verify at once: every command succeeds, nothing is called corrupt (issue 17 #4)."""
    store = Store(store_path)
    store.register(saved_models["small"], "iris", aliases=["production"])
    for _ in range(30):
        store.register(saved_models["small"], "iris", new_version=True)
    for _ in range(3):
        store.register(saved_models["small_b"], "gone", new_version=True)
    env = {**os.environ, "MAASCTL_HOME": str(store_path)}
    cmds = ([["rm", f"iris@{v}"] for v in range(2, 32)] + [["rm", f"gone@{v}"] for v in (1, 2, 3)]
            + [["gc"]] * 6 + [["gc", "--keep", "40"]] * 2 + [["verify"]] * 3)
    random.Random(17).shuffle(cmds)
    procs = [(c, subprocess.Popen([sys.executable, "-m", "maasctl", *c], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)) for c in cmds]
    for c, p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (c, err)
        assert "corrupt" not in err or "0 corrupt" in err, (c, err)
    assert [v.version for v in store.list_versions("iris")] == [1]
    assert sorted(os.listdir(store.models_dir / "iris")) == ["1"]
    assert not (store.models_dir / "gone").exists() or os.listdir(store.models_dir / "gone") == []
    assert all(r.ok for r in store.verify())
    assert store.gc().orphans == []
