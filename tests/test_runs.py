"""Run records in the store: ids, commit, load/list, lineage from git, registering a run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from maasctl.errors import InvalidInput, NotFound, OperationFailed
from maasctl.training.runs import commit_run, git_lineage, list_runs, load_run, new_run_id, register_run, write_record


def test_run_ids_sort_by_time_and_are_unique():
    a = new_run_id(1_700_000_000)
    b = new_run_id(1_700_000_001)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", a)
    assert a[:15] == "20231114-221320"
    assert sorted([b, a]) == [a, b]
    assert len({new_run_id(1_700_000_000) for _ in range(50)}) == 50


def make_run(store, run_id: str, model_src=None, register: dict | None = None, config: str | None = None) -> None:
    with store.staging() as staged:
        model = staged / "model"
        if model_src is not None:
            shutil.copytree(model_src, model)
        else:
            model.mkdir()
        stamp = run_id[:15]  # YYYYMMDD-HHMMSS, as new_run_id makes it
        created = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
        record = {"run_id": run_id, "created_at": created, "task": "classification",
                  "feature_names": ["a", "b", "c", "d"], "class_names": ["x", "y", "z"],
                  "metrics": {"accuracy": 0.9}, "params": {"register": register or {}},
                  "lineage": {"run_id": run_id, "seed": 42}, "environment": {"python": "3"}, "history": []}
        if config:
            record["lineage"]["config_path"] = config
        write_record(staged, record)
        commit_run(store, staged, run_id)


def test_commit_load_and_list(store):
    make_run(store, "20261123-120000-aaaaaa")
    make_run(store, "20261123-110000-bbbbbb", register={"name": "iris"})
    (store.runs_dir / "20261123-130000-cccccc").mkdir()  # no run.json: not a run
    runs = list_runs(store)
    assert [r.run_id for r in runs] == ["20261123-110000-bbbbbb", "20261123-120000-aaaaaa"]
    run = load_run(store, "20261123-110000-bbbbbb")
    assert run.register_name == "iris" and run.model_dir == store.runs_dir / run.run_id / "model"
    assert run.meta == {"task": "classification", "feature_names": ["a", "b", "c", "d"],
                        "class_names": ["x", "y", "z"], "metrics": {"accuracy": 0.9},
                        "params": {"register": {"name": "iris"}}, "lineage": {"run_id": run.run_id, "seed": 42},
                        "environment": {"python": "3"}}
    assert list(store.staging_root.iterdir()) == []


def test_load_run_not_found_lists_recent(store, tmp_path):
    with pytest.raises(NotFound, match=r"run 'x' not found \(no runs in"):
        load_run(store, "x")
    make_run(store, "20261123-120000-aaaaaa")
    with pytest.raises(NotFound, match=r"recent runs: 20261123-120000-aaaaaa; see: maasctl runs list"):
        load_run(store, "20261123-120000-ffffff")
    with pytest.raises(InvalidInput):
        load_run(store, "../models")


def test_commit_refuses_incomplete_or_existing(store):
    with store.staging() as staged, pytest.raises(OperationFailed, match="incomplete run"):
        commit_run(store, staged, "20261123-120000-aaaaaa")
    make_run(store, "20261123-120000-aaaaaa")
    with pytest.raises(OperationFailed, match="already exists"):
        make_run(store, "20261123-120000-aaaaaa")
    assert [p.name for p in store.runs_dir.iterdir()] == ["20261123-120000-aaaaaa"]
    assert [p for p in store.staging_root.iterdir()] == []  # the failed writer's staging dir is gone


def test_damaged_run_json(store):
    make_run(store, "20261123-120000-aaaaaa")
    (store.runs_dir / "20261123-120000-aaaaaa" / "run.json").write_text("{nope")
    with pytest.raises(OperationFailed, match="run.json: not valid JSON"):
        load_run(store, "20261123-120000-aaaaaa")
    assert list_runs(store) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_lineage(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("x = 1\n")
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    assert git_lineage(cfg, [str(data)]) == {"git_commit": None}
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(tmp_path), *cmd], check=True, env=env, capture_output=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text("a\n1\n")
    assert git_lineage(cfg, [str(data), str(outside)]) == {"git_commit": head, "git_dirty": False}
    data.write_text("a\n2\n")
    assert git_lineage(cfg, [str(data)]) == {"git_commit": head, "git_dirty": True}


def test_register_run_defaults_from_config(store, saved_models):
    make_run(store, "20261123-120000-aaaaaa", saved_models["small"],
             register={"name": "iris", "aliases": ["candidate"], "description": "d", "tags": {"team": "ml"}})
    res = register_run(store, "20261123-120000-aaaaaa", None)
    assert res.created and res.info.ref == "iris@1" and res.info.aliases == ["candidate"]
    assert res.info.description == "d" and res.info.tags == {"team": "ml"}
    assert res.info.meta["class_names"] == ["x", "y", "z"] and res.info.lineage["seed"] == 42
    assert res.info.source == "run 20261123-120000-aaaaaa"
    manifest = json.loads((res.info.path / "maas.json").read_text())
    assert manifest["feature_names"] == ["a", "b", "c", "d"]
    res = register_run(store, "20261123-120000-aaaaaa", "other", aliases=["prod"])
    assert res.info.ref == "other@1" and res.info.aliases == ["prod"]
    make_run(store, "20261123-120000-bbbbbb", saved_models["small"])
    with pytest.raises(InvalidInput, match="no \\[register\\] name and no config path is recorded; pass --name"):
        register_run(store, "20261123-120000-bbbbbb", None)


@pytest.mark.tf
def test_without_a_register_name_package_and_register_default_to_the_config_stem(store, models, tmp_path):
    from maasctl.package.build import build_package

    make_run(store, "20261123-120000-aaaaaa", models["small"], config="/work/configs/Wine.toml")
    pkg = build_package(store, "20261123-120000-aaaaaa", tmp_path)
    assert pkg.manifest["name"] == "wine" and pkg.path.name.startswith("wine-")
    assert register_run(store, "20261123-120000-aaaaaa", None).info.ref == "wine@1"
    assert register_run(store, "20261123-120000-aaaaaa", "other").info.ref == "other@1"
    make_run(store, "20261123-120000-bbbbbb", models["small"], config="/c/my config.toml")
    with pytest.raises(InvalidInput, match="the config's file name 'my config' is not a valid model name; pass --name"):
        build_package(store, "20261123-120000-bbbbbb", tmp_path)


@pytest.mark.tf
def test_register_package_applies_the_configs_register_aliases_like_register_run(store, models, tmp_path):
    from maasctl.package.build import build_package
    from maasctl.registration import register_source
    from maasctl.store import Store

    make_run(store, "20261123-120000-aaaaaa", models["small"], register={"name": "iris", "aliases": ["candidate"]})
    pkg = build_package(store, "20261123-120000-aaaaaa", tmp_path)
    other = Store(tmp_path / "other")
    assert register_source(other, str(pkg.path), None).info.aliases == ["candidate"]
    assert register_source(other, str(pkg.path), "iris2", aliases=["prod"]).info.aliases == ["prod"]
    assert register_source(store, "20261123-120000-aaaaaa", None).info.aliases == ["candidate"]


def test_a_unique_prefix_names_a_run_and_an_ambiguous_one_lists_the_matches(store):
    make_run(store, "20261125-233009-aaaaaa")
    make_run(store, "20261125-233009-bbbbbb")
    make_run(store, "20261125-120000-cccccc")
    assert load_run(store, "20261125-12").run_id == "20261125-120000-cccccc"
    assert load_run(store, "20261125-233009-b").run_id == "20261125-233009-bbbbbb"
    with pytest.raises(InvalidInput, match="'20261125-233009' matches several runs \\(20261125-233009-aaaaaa, "
                                           "20261125-233009-bbbbbb\\); give more of the id"):
        load_run(store, "20261125-233009")
    with pytest.raises(NotFound, match="run '20261126' not found"):
        load_run(store, "20261126")


@pytest.mark.tf
def test_package_and_register_take_a_run_id_prefix(store, models, tmp_path):
    from conftest import run_cli

    make_run(store, "20261125-233009-aaaaaa", models["small"], register={"name": "iris"})
    r = run_cli("register", "20261125-2330", "--json", store=store.root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["source"] == "run 20261125-233009-aaaaaa"
    r = run_cli("package", "20261125-2330", "-o", str(tmp_path), store=store.root)
    assert r.returncode == 0 and r.stdout.strip().endswith(".maas"), r.stderr
    r = run_cli("runs", "show", "20261125", store=store.root)
    assert r.returncode == 0 and "20261125-233009-aaaaaa" in r.stdout, r.stderr


@pytest.mark.tf
def test_runs_rm_and_gc_runs_older_than_keep_runs_a_version_came_from(store, models):
    import calendar
    import time

    from conftest import run_cli

    from maasctl.housekeeping import collect_garbage

    for run_id in ("20261101-120000-aaaaaa", "20261102-120000-bbbbbb", "20261123-120000-cccccc",
                   "20261123-130000-dddddd"):
        make_run(store, run_id, models["small"], register={"name": "iris"})
    register_run(store, "20261102-120000-bbbbbb", None)  # a version came from it: gc keeps it
    now = calendar.timegm(time.strptime("2026-11-26", "%Y-%m-%d"))
    report = collect_garbage(store, runs_older_than=10, now=now, dry_run=True)
    assert report.runs == ["20261101-120000-aaaaaa"] and len(list_runs(store)) == 4
    report = collect_garbage(store, runs_older_than=10, now=now)
    assert report.to_json()["runs_removed"] == ["20261101-120000-aaaaaa"]
    assert [r.run_id for r in list_runs(store)] == ["20261102-120000-bbbbbb", "20261123-120000-cccccc",
                                                    "20261123-130000-dddddd"]
    # runs rm: all found first (a typo removes nothing), prefixes accepted
    r = run_cli("runs", "rm", "20261123-12", "20261199", store=store.root)
    assert r.returncode == 3 and "run '20261199' not found" in r.stderr and len(list_runs(store)) == 3
    r = run_cli("runs", "rm", "20261123-12", "20261123-130000-dddddd", "--json", store=store.root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"removed": ["20261123-120000-cccccc", "20261123-130000-dddddd"]}
    assert [r.run_id for r in list_runs(store)] == ["20261102-120000-bbbbbb"]
    assert store.resolve("iris@1").lineage["run_id"] == "20261102-120000-bbbbbb"


def test_gc_removes_logs_of_servers_that_are_not_running(store, tmp_path):
    import os
    import subprocess
    import sys
    import time

    from maasctl.housekeeping import collect_garbage
    from maasctl.serving.records import log_path, write_record

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "maasctl-test-holder"])
    try:
        store.servers_dir.mkdir(parents=True)
        write_record(store, "live0001", url="http://127.0.0.1:1", models=["iris"], refs=["iris"], pid=holder.pid)
        for sid in ("live0001", "dead0001", "fail0001", "new00001"):
            log_path(store, sid).write_text("log\n")
        old = time.time() - 3600
        for sid in ("live0001", "dead0001", "fail0001"):
            os.utime(log_path(store, sid), (old, old))
        report = collect_garbage(store)
        assert sorted(os.path.basename(p) for p in report.logs) == ["dead0001.log", "fail0001.log"]
        assert sorted(p.name for p in store.servers_dir.glob("*.log")) == ["live0001.log", "new00001.log"]
    finally:
        holder.kill()
        holder.wait()
