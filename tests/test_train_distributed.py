"""`maasctl train` under tf.distribute: real worker processes on loopback ports (TF_CONFIG), as TFJob runs them.

Every TF process costs seconds of import on a small box, so the module runs few of them: one `--workers 2`
cluster, one hand-written chief + worker pair, one pair whose worker is killed, one lone worker whose peer never
comes, one mirrored run on two logical CPUs, a Ctrl-C before TensorFlow loads, and one pair sharding by file
(with its single-process reference in this process).

The reference is a single-process run (`distribute = "none"`: Keras's `fit`) with the same seed and global
batch. `data.shuffle = false` gives every run the same batches: the distributed loop shuffles with tf.data
(seeded, the same order on every worker), `fit` with its own generator, so with shuffling the runs would see
different (equally valid) orders and agree only statistically.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from maasctl.store import Store
from maasctl.training.distribute import free_ports
from maasctl.training.runs import list_runs

pytestmark = [pytest.mark.tf, pytest.mark.slow]

CONFIG = """
[data]
path = "d.csv"
label = "label"
validation_split = 0.25
shuffle = false

[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 8
activation = "relu"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"

[train]
epochs = 3
batch_size = 16
learning_rate = 0.02
seed = 3
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=122)  # 91 training rows: the last global batch is partial
    x = rng.normal(size=(122, 3)) + y[:, None] * 2
    rows = "\n".join(",".join(f"{v:.4f}" for v in r) + f",{'yes' if c else 'no'}" for r, c in zip(x, y))
    (root / "d.csv").write_text("a,b,c,label\n" + rows + "\n")
    (root / "t.toml").write_text(CONFIG)
    return root


@pytest.fixture(scope="module")
def reference(tf, data_dir, tmp_path_factory) -> dict:
    """One process, `fit`, same seed and global batch."""
    from maasctl.tf.train import run_training
    from maasctl.training.data import prepare

    cfg, ds = prepare(data_dir / "t.toml", ('train.distribute="none"',))
    run, result = run_training(Store(tmp_path_factory.mktemp("ref") / "store"), cfg, ds)
    assert run is not None
    return result.metrics


def close(metrics: dict, ref: dict, tol: float = 1e-3) -> bool:
    return set(metrics) == set(ref) and all(abs(metrics[k] - ref[k]) <= tol for k in ref)


def tf_config(cluster: dict, task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def start(args: list[str], *, store: Path, tf_config: str | None, log: Path, env: dict | None = None
          ) -> subprocess.Popen:
    full = {**os.environ, **(env or {}), "MAASCTL_HOME": str(store)}
    full.pop("MAASCTL_DEBUG", None)
    if tf_config is not None:
        full["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, "-m", "maasctl", "train", *args], env=full, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)


def wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text())
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text()}")


def test_two_local_workers(data_dir, reference, tmp_path):
    store = tmp_path / "store"
    r = run_cli("train", str(data_dir / "t.toml"), "--workers", "2", "--cluster-timeout", "60", "--json",
                store=store, timeout=240)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    runs = list_runs(Store(store))
    assert [run.run_id for run in runs] == [doc["run_id"]]  # exactly one run, by the chief
    assert close(doc["metrics"], reference), (doc["metrics"], reference)
    assert runs[0].record["distribute"] == {"mode": "multi_worker", "workers": 2}
    assert re.search(r"^chief: started \(pid \d+, 127\.0\.0\.1:\d+\)$", r.stderr, re.MULTILINE)
    assert re.search(r"^worker 1: started", r.stderr, re.MULTILINE) and "worker 1: distribute: multi_worker" in r.stderr
    assert re.search(r"^chief: epoch 3/3 ", r.stderr, re.MULTILINE)
    for role in ("chief", "worker 1"):  # one file for two workers: each reads it, batches are sharded by data
        assert (f"{role}: reads every file ({data_dir / 'd.csv'}): 1 file for 2 workers, so batches are sharded by "
                f"data\n") in r.stderr


def test_hand_written_tf_configs_chief_writes_worker_does_not(data_dir, reference, tmp_path):
    ports = free_ports(2)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"]}
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    args = [str(data_dir / "t.toml"), "--cluster-timeout", "60"]
    chief = start(args, store=tmp_path / "chief-store", tf_config=tf_config(cluster, "chief", 0),
                  log=tmp_path / "chief.log")
    worker = start(args, store=tmp_path / "worker-store", tf_config=tf_config(cluster, "worker", 0),
                   log=tmp_path / "worker.log", env={"TMPDIR": str(worker_tmp)})
    out_c, _ = chief.communicate(timeout=240)
    out_w, _ = worker.communicate(timeout=60)
    err_c, err_w = (tmp_path / "chief.log").read_text(), (tmp_path / "worker.log").read_text()
    assert chief.returncode == 0 and worker.returncode == 0, (err_c, err_w)
    runs = list_runs(Store(tmp_path / "chief-store"))
    assert [r.run_id for r in runs] == [out_c.strip()]
    assert close(runs[0].meta["metrics"], reference)
    assert out_w == "" and not (tmp_path / "worker-store").exists()  # nothing written by the worker
    assert list(worker_tmp.iterdir()) == []  # its export went to a temporary directory it removed
    final_c = err_c.strip().splitlines()[-1]
    final_w = err_w.strip().splitlines()[-1]
    assert final_c.startswith(f"chief: run {out_c.strip()}: ") and final_w.startswith("worker 0: ")
    assert final_c.split(": ", 2)[2].split(" (")[0] == final_w.split(": ", 1)[1].split(" (")[0]  # same metrics
    assert "the chief records the run" in final_w


def test_killed_worker_fails_the_chief_without_a_run(data_dir, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [str(data_dir / "t.toml"), "--set", "train.epochs=2000", "--cluster-timeout", "60"]
    chief = start(args, store=tmp_path / "store", tf_config=tf_config(cluster, "worker", 0), log=tmp_path / "c.log")
    worker = start(args, store=tmp_path / "store", tf_config=tf_config(cluster, "worker", 1), log=tmp_path / "w.log")
    try:
        wait_for(tmp_path / "w.log", r"epoch +1/2000", worker)  # mid-training
        worker.kill()
        worker.wait()
        t0 = time.monotonic()
        chief.wait(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
                p.wait()
    err = (tmp_path / "c.log").read_text().strip().splitlines()
    assert chief.returncode == 1, err
    assert re.fullmatch(rf"Error: chief: lost worker 1 \(127\.0\.0\.1:{ports[1]}\) (in epoch \d+|after training"
                        r".*) \(\w+\); no run committed", err[-1]), err[-1]
    assert elapsed < 45
    assert not (tmp_path / "store" / "runs").exists() or list_runs(Store(tmp_path / "store")) == []


def test_unreachable_peer_times_out(data_dir, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    t0 = time.monotonic()
    r = run_cli("train", str(data_dir / "t.toml"), "--cluster-timeout", "3", store=tmp_path / "store",
                env={"TF_CONFIG": tf_config(cluster, "worker", 0)}, timeout=120)
    assert r.returncode == 1, r.stderr  # TF blocks in C++ holding the GIL while it joins; its watchdog ends it
    assert r.stderr.strip().splitlines()[-1] == (f"Error: chief: could not reach worker 1 (127.0.0.1:{ports[1]}) "
                                                 "within 3s (--cluster-timeout); no run committed")
    assert time.monotonic() - t0 < 60 and not (tmp_path / "store" / "runs").exists()


def test_mirrored_on_two_logical_cpus(data_dir, reference, tmp_path):
    r = run_cli("train", str(data_dir / "t.toml"), "--set", 'train.distribute="mirrored"', "--json",
                store=tmp_path / "store", env={"MAASCTL_LOGICAL_CPUS": "2"}, timeout=240)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert close(doc["metrics"], reference), (doc["metrics"], reference)
    (run,) = list_runs(Store(tmp_path / "store"))
    assert run.record["distribute"]["mode"] == "mirrored" and len(run.record["distribute"]["devices"]) == 2


def test_ctrl_c_stops_every_worker(data_dir, tmp_path):
    launcher = start([str(data_dir / "t.toml"), "--workers", "2"], store=tmp_path / "store", tf_config=None,
                     log=tmp_path / "l.log")
    try:
        wait_for(tmp_path / "l.log", r"worker 1: started \(pid (\d+)", launcher, timeout=60)
        pids = [int(p) for p in re.findall(r"started \(pid (\d+)", (tmp_path / "l.log").read_text())]
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 130
    assert (tmp_path / "l.log").read_text().strip().splitlines()[-1] == "Error: interrupted"
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    assert len(pids) == 2 and alive == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_failure_is_one_line_and_no_run(data_dir, tmp_path):
    """A child that fails (here: a layer argument only Keras rejects) fails the launcher with its exit status."""
    r = run_cli("train", str(data_dir / "t.toml"), "--workers", "2", "--cluster-timeout", "60",
                "--set", "model.layers[0].units=-3", store=tmp_path / "store", timeout=240)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"Error: (chief|worker 1) \(pid \d+\) exited with code 2: .*model\.layers\[0\]: Dense: .*; "
                        r"stopped the other workers; no run committed", last), last
    assert not (tmp_path / "store" / "runs").exists() or list_runs(Store(tmp_path / "store")) == []


# -- sharding by file --------------------------------------------------------------------------------------
# Three files, two workers: worker 0 (the chief) reads part-0 and part-2 (20 + 22 rows), worker 1 part-1 (43).
# validation_split 0.25 holds out the last rows of each worker's own rows: 10 and 11, leaving 32 + 32 for
# training = 4 steps of 8 rows per worker (batch_size 16), no padding; validation: 2 steps each, worker 0's
# second batch 2 real rows + 6 zero-weight ones, worker 1's 3 + 5. Each worker has its own copy of the directory
# where the other worker's files are garbage: reading one fails the run (exit 2).
SHARD_ROWS = {"part-0.csv": 20, "part-1.csv": 43, "part-2.csv": 22}
SHARD_CONFIG = CONFIG.replace('path = "d.csv"', 'path = "part-*.csv"')


def _csv(x: np.ndarray, y: np.ndarray) -> str:
    rows = "\n".join(",".join(f"{v:.4f}" for v in r) + f",{'yes' if c else 'no'}" for r, c in zip(x, y))
    return "a,b,c,label\n" + rows + "\n"


def _rows(name: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(int(name[5]) + 10)
    y = rng.integers(0, 2, size=n or SHARD_ROWS[name])
    return np.round(rng.normal(size=(len(y), 3)) * (1 + int(name[5])) + y[:, None] * 2 + int(name[5]), 4), y


@pytest.fixture(scope="module")
def shard_run(tf, tmp_path_factory) -> dict:
    """The 2-worker cluster (hand-written TF_CONFIGs) and the single-process run that sees the same batches."""
    root = tmp_path_factory.mktemp("shard")
    mine = {0: ("part-0.csv", "part-2.csv"), 1: ("part-1.csv",)}
    for worker, names in mine.items():
        folder = root / f"w{worker}"
        folder.mkdir()
        (folder / "t.toml").write_text(SHARD_CONFIG)
        for name in SHARD_ROWS:
            text = _csv(*_rows(name)) if name in names else f"this file is worker {1 - worker}'s; reading it is a bug\n"
            (folder / name).write_text(text)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [start([str(root / f"w{i}" / "t.toml"), "--cluster-timeout", "60"], store=root / f"store{i}",
                   tf_config=tf_config(cluster, "worker", i), log=root / f"w{i}.log") for i in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    logs = [(root / f"w{i}.log").read_text() for i in range(2)]
    # The reference: one process, global batch j = worker 0's j-th 8 training rows + worker 1's; validation = both
    # workers' held-out rows (as validation_path).
    parts = []
    for names in mine.values():
        x = np.concatenate([_rows(n)[0] for n in names])
        y = np.concatenate([_rows(n)[1] for n in names])
        n_val = round(len(x) * 0.25)
        parts.append((x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]))
    blocks = [np.arange(b, b + 8) for b in range(0, 32, 8)]
    x_tr = np.concatenate([p[0][i] for i in blocks for p in parts])
    y_tr = np.concatenate([p[1][i] for i in blocks for p in parts])
    (root / "train.csv").write_text(_csv(x_tr, y_tr))
    (root / "val.csv").write_text(_csv(np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])))
    (root / "ref.toml").write_text(CONFIG.replace('path = "d.csv"', 'path = "train.csv"')
                                   .replace("validation_split = 0.25", 'validation_path = "val.csv"'))
    from maasctl.tf.train import run_training
    from maasctl.training.data import prepare

    cfg, ds = prepare(root / "ref.toml", ('train.distribute="none"',))
    _, result = run_training(Store(root / "ref-store"), cfg, ds)
    norm = result.model.get_layer("normalize")
    return {"root": root, "procs": procs, "outs": outs, "logs": logs, "ports": ports, "reference": result.metrics,
            "ref_norm": (np.asarray(norm.mean).ravel(), np.asarray(norm.variance).ravel())}


def test_shard_by_file_each_worker_reads_only_its_files(shard_run):
    root, logs = shard_run["root"], shard_run["logs"]
    assert [p.returncode for p in shard_run["procs"]] == [0, 0], logs  # the other worker's files are garbage here
    assert f"chief: reads 2 of 3 files (sharded by file): {root}/w0/part-0.csv, {root}/w0/part-2.csv\n" in logs[0]
    assert f"worker 1: reads 1 of 3 files (sharded by file): {root}/w1/part-1.csv\n" in logs[1]
    runs = list_runs(Store(root / "store0"))
    assert [r.run_id for r in runs] == [shard_run["outs"][0].strip()]  # exactly one run, by the chief
    assert shard_run["outs"][1] == "" and not (root / "store1").exists()
    record = runs[0].record
    assert record["distribute"] == {"mode": "multi_worker", "workers": 2, "shard": "file",
                                    "worker_files": [[f"{root}/w0/part-0.csv", f"{root}/w0/part-2.csv"],
                                                     [f"{root}/w0/part-1.csv"]], "worker_train_rows": [32, 32]}
    # the lineage lists every file in order, each hashed by the worker that read it
    assert [f["path"] for f in runs[0].meta["lineage"]["data_files"]] == [
        f"{root}/w0/part-0.csv", f"{root}/w1/part-1.csv", f"{root}/w0/part-2.csv"]
    assert record["data"]["train_rows"] == 64 and record["data"]["validation_rows"] == 21
    final = [log.strip().splitlines()[-1] for log in logs]
    assert final[0].split(": ", 2)[2].split(" (")[0] == final[1].split(": ", 1)[1].split(" (")[0]  # same metrics


def test_shard_by_file_matches_one_process_with_the_same_batches(tf, shard_run):
    """Normalization statistics from all shards (all-reduced), and the same metrics as one process that sees the
    same global batches (validation included: its zero-weight padding does not count)."""
    root = shard_run["root"]
    (run,) = list_runs(Store(root / "store0"))
    assert close(run.meta["metrics"], shard_run["reference"], 1e-4), (run.meta["metrics"], shard_run["reference"])
    loaded = tf.saved_model.load(str(run.model_dir))
    stats = {v.name.split("/")[-1].split(":")[0]: v.numpy().ravel() for v in loaded.variables
             if v.name.startswith("normalize/")}
    ref_mean, ref_var = shard_run["ref_norm"]
    assert np.abs(stats["mean"] - ref_mean).max() <= 1e-6 and np.abs(stats["variance"] - ref_var).max() <= 1e-6, \
        (stats, shard_run["ref_norm"])


def test_shard_by_file_unequal_shards_stay_in_lockstep(tmp_path):
    """`--workers 2` on files of 20, 30 and 22 rows, shuffled, balanced class weights: 38 training rows for worker
    0 (5 steps of 8) and 27 for worker 1 (4 steps), so worker 1 runs a step of padding only, and both finish every
    epoch (a worker that ran fewer steps would leave the other waiting in an all-reduce until --cluster-timeout)."""
    for name, n in (("part-0.csv", 20), ("part-1.csv", 30), ("part-2.csv", 22)):
        (tmp_path / name).write_text(_csv(*_rows(name, n)))
    (tmp_path / "t.toml").write_text(SHARD_CONFIG.replace("shuffle = false", "shuffle = true")
                                     .replace("validation_split = 0.25", "validation_split = 0.1")
                                     .replace("seed = 3", 'seed = 3\nclass_weight = "balanced"'))
    r = run_cli("train", str(tmp_path / "t.toml"), "--workers", "2", "--cluster-timeout", "60", "--json",
                store=tmp_path / "store", timeout=240)
    assert r.returncode == 0, r.stderr
    (run,) = list_runs(Store(tmp_path / "store"))
    assert run.record["distribute"]["worker_train_rows"] == [38, 27]  # 42 - 4 and 30 - 3 held out
    assert run.record["data"]["train_rows"] == 65 and run.record["data"]["validation_rows"] == 7
    assert len(run.record["history"]) == 3 and all(np.isfinite(v) for v in json.loads(r.stdout)["metrics"].values())
    assert "worker 1: reads 1 of 3 files (sharded by file): " in r.stderr


# Loaded by the workers of the test below (PYTHONPATH): worker 1 reads the shard reports slowly (a busy host), so
# the chief, which finds the bad data first, would exit while worker 1 still reads from its coordination service.
SLOW_REPORTS = '''
import json as _json, os, sys, time

class _SlowJson:
    dumps = staticmethod(_json.dumps)

    @staticmethod
    def loads(text):
        time.sleep(1.5)
        return _json.loads(text)

class _Hook:
    def find_spec(self, name, path, target=None):
        if name != "maasctl.tf.shard":
            return None
        import importlib.util
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.json = _SlowJson
        spec.loader.exec_module = exec_module
        return spec

if os.environ.get("SLOW_SHARD_REPORTS"):
    sys.meta_path.insert(0, _Hook())
'''


def test_shard_by_file_bad_data_is_the_same_error_on_every_worker(tmp_path):
    """Worker 1's file lacks a feature column of the first file: every worker exits 2 with that one line, also the
    one still reading the shard reports when the chief found it (not 'no report ... from worker 1')."""
    root = tmp_path.resolve()
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_REPORTS)
    (root / "t.toml").write_text(SHARD_CONFIG)
    (root / "part-0.csv").write_text(_csv(*_rows("part-0.csv")))
    x, y = _rows("part-1.csv", 16)
    (root / "part-1.csv").write_text(_csv(x, y).replace("a,b,c,label", "a,b,c2,label"))  # no column 'c'
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    procs = [start([str(root / "t.toml"), "--cluster-timeout", "60"], store=root / f"store{i}",
                   tf_config=tf_config(cluster, "worker", i), log=root / f"w{i}.log",
                   env={"PYTHONPATH": path, **({"SLOW_SHARD_REPORTS": "1"} if i else {})}) for i in range(2)]
    for p in procs:
        p.communicate(timeout=240)
    logs = [(root / f"w{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [2, 2], logs
    for log in logs:
        assert log.strip().splitlines()[-1] == (f"Error: {root}/part-1.csv: feature column 'c' (of {root}/part-0.csv) "
                                                "not found; feature columns found: a, b, c2"), log
    assert not (root / "store0" / "runs").exists()


def test_shard_by_file_a_worker_that_cannot_read_its_file_tells_the_chief(tmp_path):
    """Worker 1's own file has a bad cell: only worker 1 sees it, yet the chief's last line names worker 1 and the
    cell, at once (not 'could not reach worker 1' after --cluster-timeout); both exit 2, no run."""
    root = tmp_path.resolve()
    (root / "t.toml").write_text(SHARD_CONFIG)
    (root / "part-0.csv").write_text(_csv(*_rows("part-0.csv")))
    lines = _csv(*_rows("part-1.csv", 16)).splitlines()
    lines[4] = "1.5,oops,0.5,yes"  # line 5
    (root / "part-1.csv").write_text("\n".join(lines) + "\n")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    t0 = time.monotonic()
    procs = [start([str(root / "t.toml"), "--cluster-timeout", "60"], store=root / "store",
                   tf_config=tf_config(cluster, "worker", i), log=root / f"w{i}.log") for i in range(2)]
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - t0
    logs = [(root / f"w{i}.log").read_text().strip().splitlines() for i in range(2)]
    assert [p.returncode for p in procs] == [2, 2], logs
    cause = f"{root}/part-1.csv:5: column 'b': "
    assert logs[1][-1].startswith(f"Error: {cause}"), logs[1]  # its own error
    assert logs[0][-1].startswith(f"Error: chief: worker 1 (127.0.0.1:{ports[1]}) could not read its data: {cause}")
    assert logs[0][-1].endswith("; no run committed") and logs[0][-1][len("Error: chief: "):].count(cause) == 1
    assert elapsed < 40, (elapsed, logs)  # well within the cluster timeout
    assert outs == ["", ""] and (not (root / "store" / "runs").exists() or list_runs(Store(root / "store")) == [])
