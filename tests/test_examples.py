"""The examples run as written: data files, configs that train to sensible metrics, quickstart.sh, release.sh.

The script tests are slow (several subprocesses import TensorFlow), so each script path runs once: one
quickstart, and four release runs on one store (pass; the same run refused by a higher gate; a new run
failing its smoke test; a retry of that run) whose aliases are checked after each step.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import REPO

EXAMPLES = REPO / "examples"
IRIS = EXAMPLES / "iris"
CONFIGS = {"iris": IRIS / "config.toml", "regression": EXAMPLES / "regression" / "config.toml",
           "custom-builder": EXAMPLES / "custom-builder" / "config.toml"}
# sha256 of examples/iris/iris.csv as converted from scikit-learn's sklearn/datasets/data/iris.csv
IRIS_SHA256 = "9cc1c345c71bcc9b486b74cbf6063fa66f4bb5e0f603a4b3c3471ec2e5e8e355"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """PATH entry with a `maasctl` that runs this checkout with this interpreter (as `pip install .` would)."""
    d = tmp_path_factory.mktemp("bin")
    exe = d / "maasctl"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m maasctl "$@"\n')
    exe.chmod(0o755)
    return d


def script_env(bin_dir: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAASCTL_", "_MAASCTL"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp / "home"), TMPDIR=str(tmp),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="3", **extra)
    (tmp / "home").mkdir(exist_ok=True)
    return env


def run_script(name: str, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(EXAMPLES / name), *args], capture_output=True, text=True, env=env, check=False,
                          timeout=timeout, cwd=REPO)


def port_open(url: str) -> bool:
    u = urlparse(url)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((u.hostname, u.port)) == 0


# -- data and configs (fast) ---------------------------------------------------------------------------
def test_iris_csv_is_the_real_data_set() -> None:
    data = (IRIS / "iris.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == IRIS_SHA256
    rows = list(csv.DictReader(data.decode().splitlines()))
    assert list(rows[0]) == ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    assert len(rows) == 150
    species = [r["species"] for r in rows]
    assert {s: species.count(s) for s in set(species)} == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert rows[0] == {"sepal_length": "5.1", "sepal_width": "3.5", "petal_length": "1.4", "petal_width": "0.2",
                       "species": "setosa"}


def test_regression_data_is_regenerated_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "houses.csv"
    subprocess.run([sys.executable, str(EXAMPLES / "regression" / "make_data.py"), str(out)], check=True)
    assert out.read_bytes() == (EXAMPLES / "regression" / "houses.csv").read_bytes()


@pytest.mark.parametrize("example", sorted(CONFIGS))
def test_example_config_and_inputs_agree(example: str) -> None:
    """The config validates, and its rows.csv / request.json carry exactly the model's features."""
    from maasctl.training.config import load_config

    cfg = load_config(CONFIGS[example])
    data = cfg.resolve(cfg.data["path"])
    with open(data, newline="") as f:
        header = next(csv.reader(f))
    features = cfg.data.get("features") or [c for c in header if c != cfg.data["label"]]
    base = CONFIGS[example].parent
    with open(base / "rows.csv", newline="") as f:
        assert next(csv.reader(f)) == features
    request = base / "request.json"
    if request.exists():
        instances = json.loads(request.read_text())["instances"]
        assert instances and all(len(row) == len(features) for row in instances)


def test_golden_rows_match_the_data_set() -> None:
    """The smoke test's golden rows are rows of iris.csv with their true species."""
    data = {tuple(r[:4]): r[4] for r in list(csv.reader((IRIS / "iris.csv").read_text().splitlines()))[1:]}
    golden = list(csv.reader((IRIS / "golden.csv").read_text().splitlines()))[1:]
    expected = [json.loads(line) for line in (IRIS / "golden.expected.jsonl").read_text().splitlines()]
    assert len(golden) == len(expected) >= 6
    assert [data[tuple(r)] for r in golden] == [e["label"] for e in expected]


@pytest.mark.parametrize("script", ["quickstart.sh", "release.sh"])
def test_scripts_parse_and_are_executable(script: str) -> None:
    path = EXAMPLES / script
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_github_workflow_runs_release_script() -> None:
    text = (EXAMPLES / "github-actions.yml").read_text()
    assert "examples/release.sh" in text and "pip install ." in text
    assert "\t" not in text  # YAML forbids tabs


def test_release_usage_errors(bin_dir: Path, tmp_path: Path) -> None:
    env = script_env(bin_dir, tmp_path, MAASCTL_HOME=str(tmp_path / "store"))
    proc = run_script("release.sh", str(CONFIGS["iris"]), env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "release: give at least one gate, e.g. --min val_accuracy=0.9"
    proc = run_script("release.sh", "missing.toml", "--min", "val_accuracy=0.9", env=env)
    assert (proc.returncode, proc.stderr.strip()) == (2, "release: config not found: missing.toml")
    proc = run_script("release.sh", "--bogus", env=env)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr
    assert not (tmp_path / "store").exists()


# -- the example configs train to sensible metrics (in-process: TensorFlow is imported once) ---------------
@pytest.mark.slow
@pytest.mark.tf
def test_regression_and_custom_builder_train_well(tf, tmp_path: Path) -> None:
    import statistics

    from maasctl.store import Store
    from maasctl.tf.train import run_training
    from maasctl.training.data import prepare

    store = Store(tmp_path / "store")
    cfg, ds = prepare(CONFIGS["regression"], [])
    run, _ = run_training(store, cfg, ds)
    prices = [float(r["price"]) for r in csv.DictReader((EXAMPLES / "regression" / "houses.csv").open())]
    mae = run.meta["metrics"]["val_mean_absolute_error"]
    assert mae < 0.15 * statistics.pstdev(prices), run.meta["metrics"]  # noise alone gives ~0.08

    cfg, ds = prepare(CONFIGS["custom-builder"], [])
    run, _ = run_training(store, cfg, ds)
    assert run.meta["metrics"]["val_accuracy"] >= 0.9, run.meta["metrics"]
    assert run.meta["class_names"] == ["setosa", "versicolor", "virginica"]


# -- quickstart.sh: the README's main job -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.tf
def test_quickstart_runs_end_to_end_in_a_temporary_store(bin_dir: Path, tmp_path: Path) -> None:
    env = script_env(bin_dir, tmp_path)
    proc = run_script("quickstart.sh", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # predictions on stdout: one JSON line per row of rows.csv, the right species
    predictions = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [p["label"] for p in predictions] == ["setosa", "versicolor", "virginica"]
    assert all(p["score"] > 0.9 and len(p["probabilities"]) == 3 for p in predictions)

    # every step narrated on stderr, iris trained well
    for step in ("1/6 train", "2/6 package", "3/6 register", "4/6 serve", "5/6 predict", "6/6 stop", "done: iris@1"):
        assert step in proc.stderr
    metrics = json.loads(re.search(r"metrics (\{.*\})", proc.stderr).group(1))
    assert metrics["val_accuracy"] >= 0.9

    # the server is gone, the temporary store removed, ~/.maasctl never touched
    url = re.search(r"at (http://\S+)", proc.stderr).group(1)
    assert not port_open(url)
    assert not list(tmp_path.glob("maasctl-quickstart.*"))
    assert not (tmp_path / "home" / ".maasctl").exists()


# -- release.sh: gates, idempotent registration, aliases ---------------------------------------------
def aliases(store: Path, name: str = "iris") -> dict[str, int]:
    from maasctl.store import Store

    return Store(store).aliases(name)


def versions(store: Path, name: str = "iris") -> list[int]:
    from maasctl.store import Store

    return [v.version for v in Store(store).list_versions(name)]


@pytest.mark.slow
@pytest.mark.tf
def test_release_gates_and_aliases(bin_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = script_env(bin_dir, tmp_path, MAASCTL_HOME=str(store))
    config = str(CONFIGS["iris"])

    # 1. a passing release: iris@1 is both candidate and production; the release is JSON on stdout
    proc = run_script("release.sh", config, "--min", "val_accuracy=0.9", "--max", "val_loss=0.5", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    release = json.loads(proc.stdout)
    assert (release["ref"], release["created"], release["previous_production"]) == ("iris@1", True, None)
    assert release["metrics"]["val_accuracy"] >= 0.9
    assert release["smoke_test"] == {"rows": 6, "passed": True}
    assert aliases(store) == {"candidate": 1, "production": 1}

    # 2. below the threshold (that run again, gated higher): refused before anything is registered
    run1 = release["run_id"]
    proc = run_script("release.sh", "--run", run1, "--min", "val_accuracy=0.999", "--golden", str(IRIS / "golden.csv"),
                      "--expect", str(IRIS / "golden.expected.jsonl"), env=env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert re.search(rf"^release: refused: val_accuracy 0\.\d{{4}} is below the threshold 0\.999 \(run {run1}; "
                     r"nothing registered, production unchanged\)$", proc.stderr, re.MULTILINE), proc.stderr[-2000:]
    assert versions(store) == [1]
    assert aliases(store) == {"candidate": 1, "production": 1}

    # 3. a new version whose smoke test fails: candidate moves to it, production stays on iris@1
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text((IRIS / "golden.expected.jsonl").read_text().replace("versicolor", "virginica"))
    proc = run_script("release.sh", config, "--min", "val_accuracy=0.9", "--set", "train.epochs=30",
                      "--expect", str(wrong), env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout == ""
    assert "release: smoke test: row 3: label = \"versicolor\", expected \"virginica\"" in proc.stderr
    assert "release: smoke test failed on 2 of 6 golden rows (iris@2); production unchanged" in proc.stderr
    assert versions(store) == [1, 2]
    assert aliases(store) == {"candidate": 2, "production": 1}
    assert json.loads(subprocess.run([sys.executable, "-m", "maasctl", "ps", "--json"], env=env, text=True,
                                     capture_output=True, check=True).stdout) == []

    # 4. retry that run with the right golden answers: the same content is found again (no iris@3)
    run_id = re.search(r"^==> run (\S+):", proc.stderr, re.MULTILINE).group(1)
    proc = run_script("release.sh", "--run", run_id, "--min", "val_accuracy=0.9",
                      "--golden", str(IRIS / "golden.csv"), "--expect", str(IRIS / "golden.expected.jsonl"),
                      "--out", str(tmp_path / "dist"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    release = json.loads(proc.stdout)
    assert (release["ref"], release["created"], release["previous_production"]) == ("iris@2", False, 1)
    assert Path(release["package"]["path"]).parent == tmp_path / "dist"
    assert versions(store) == [1, 2]
    assert aliases(store) == {"candidate": 2, "production": 2}
    assert not list(tmp_path.glob("maasctl-release.*"))
