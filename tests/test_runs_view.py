"""`runs show --plot` and `runs compare`: series, the params that differ, digests; plain text in a pipe, a chart
in a terminal. Runs are written as records (no TensorFlow): the figures only come from run.json."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from maasctl.errors import InvalidInput
from maasctl.training.compare import compare, curves, differing_params, flatten, metric_names
from maasctl.training.runs import commit_run, load_run, write_record

A, B, C = "20261123-120000-aaaaaa", "20261123-120100-bbbbbb", "20261123-120200-cccccc"


def params(epochs: int = 5, units: int = 16, lr: float = 0.01, extra: dict | None = None) -> dict:
    p = {"data": {"path": "/d/train.csv", "label": "species", "validation_split": 0.2},
         "model": {"task": "classification", "normalize": True,
                   "layers": [{"type": "Dense", "units": units, "activation": "relu"},
                              {"type": "Dense", "units": 3, "activation": "softmax"}]},
         "train": {"epochs": epochs, "learning_rate": lr, "metrics": ["accuracy"], "seed": 7}}
    for k, v in (extra or {}).items():
        p[k] = {**p.get(k, {}), **v}
    return p


def history(epochs: int, start: float, val: bool = True) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss": round(start / e, 6), "accuracy": round(1 - 0.5 / e, 6)}
        if val:
            row |= {"val_loss": round(start / e + 0.1, 6), "val_accuracy": round(1 - 0.6 / e, 6)}
        rows.append(row)
    return rows


def make_run(store, run_id: str, p: dict, hist: list[dict], data_sha: str = "d" * 64) -> None:
    with store.staging() as staged:
        (staged / "model").mkdir()
        write_record(staged, {
            "run_id": run_id, "created_at": "2026-11-23T12:00:00Z", "task": "classification",
            "metrics": {k: v for k, v in hist[-1].items() if k != "epoch"}, "params": p, "history": hist,
            "epochs_run": len(hist), "lineage": {"run_id": run_id, "config_sha256": "c" * 63 + run_id[-1],
                                                 "data_sha256": data_sha}})
        commit_run(store, staged, run_id)


@pytest.fixture
def three(store):
    make_run(store, A, params(), history(5, 1.0))
    make_run(store, B, params(units=32, lr=0.02), history(5, 0.8))
    make_run(store, C, params(epochs=3, extra={"train": {"class_weight": "balanced"}}), history(3, 1.2, val=False),
             data_sha="e" * 64)
    return store


def test_flatten_uses_set_keys():
    flat = flatten(params())
    assert flat["model.layers[0].units"] == 16 and flat["train.metrics"] == ["accuracy"]
    assert flat["data.validation_split"] == 0.2 and "model.layers" not in flat


def test_compare_lists_exactly_the_params_that_differ(three):
    a, b, c = (load_run(three, r) for r in (A, B, C))
    assert differing_params([a, b]) == {"model.layers[0].units": [16, 32], "train.learning_rate": [0.01, 0.02]}
    # a key only one run has is a difference too (None where absent); equal keys never show
    assert differing_params([a, c]) == {"train.epochs": [5, 3], "train.class_weight": [None, "balanced"]}
    assert differing_params([a, load_run(three, A)]) == {}
    doc = compare([a, b, c])
    assert set(doc["params_differ"]) == {"model.layers[0].units", "train.learning_rate", "train.epochs",
                                         "train.class_weight"}


def test_compare_series_and_digests(three):
    a, c = load_run(three, A), load_run(three, C)
    doc = compare([a, c], "accuracy")
    assert doc["metric"] == "accuracy"
    assert doc["series"][A] == {"epoch": [1, 2, 3, 4, 5], "accuracy": [h["accuracy"] for h in history(5, 1.0)],
                                "val_accuracy": [h["val_accuracy"] for h in history(5, 1.0)]}
    assert doc["series"][C]["val_accuracy"] == [] and doc["series"][C]["epoch"] == [1, 2, 3]
    assert [r["data_sha256"] for r in doc["runs"]] == ["d" * 64, "e" * 64]
    assert doc["runs"][0]["config_sha256"].endswith("a") and doc["runs"][1]["metrics"]["loss"] == 0.4
    assert metric_names(a) == ["loss", "accuracy"]
    assert [c["metric"] for c in curves(a)] == ["loss", "accuracy"] and len(curves(a)[0]["validation"]) == 5
    with pytest.raises(InvalidInput, match="--metric 'auc'.*metrics: accuracy, loss"):
        compare([a, c], "auc")
    with pytest.raises(InvalidInput, match="at least two"):
        compare([a])
    with pytest.raises(InvalidInput, match="given twice"):
        compare([a, load_run(three, A)])


def test_cli_compare_plain_text_and_json(three, store_path):
    r = run_cli("runs", "compare", A, B, store=store_path)
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout and "⠀" not in r.stdout  # no chart, no colour in a pipe
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["RUN", "EPOCHS", "LOSS", "ACCURACY", "VAL_LOSS", "VAL_ACCURACY", "CONFIG",
                                "SHA256", "DATA", "SHA256"]
    assert lines[1].split()[:3] == [A, "5", "0.2000"]
    params_at = lines.index(f"PARAM                  {A}  {B}")
    assert [ln.split()[0] for ln in lines[params_at + 1:params_at + 3]] == ["model.layers[0].units",
                                                                            "train.learning_rate"]
    assert lines[params_at + 3] == ""
    epoch_rows = lines[params_at + 4:]
    assert epoch_rows[0].split() == ["EPOCH", A, "loss", A, "val_loss", B, "loss", B, "val_loss"]
    assert epoch_rows[1].split() == ["1", "1.000", "1.100", "0.8000", "0.9000"] and len(epoch_rows) == 6

    r = run_cli("runs", "compare", A, C, "--metric", "val_loss", "--json", store=store_path)
    doc = json.loads(r.stdout)
    assert doc["metric"] == "val_loss" and doc["params_differ"]["train.epochs"] == [5, 3]
    assert doc["series"][A]["val_loss"] == [h["val_loss"] for h in history(5, 1.0)]

    r = run_cli("runs", "compare", A, "20200101-000000-000000", store=store_path)
    assert r.returncode == 3 and r.stderr.startswith("Error: run '20200101-000000-000000' not found") and not r.stdout
    r = run_cli("runs", "compare", A, B, "--metric", "auc", store=store_path)
    assert r.returncode == 2 and r.stderr.startswith("Error: --metric 'auc'") and "Traceback" not in r.stderr


def read_pty(args: list[str], store_path, timeout: float = 60) -> str:
    master, slave = pty.openpty()
    env = {**os.environ, "MAASCTL_HOME": str(store_path), "COLUMNS": "100", "LINES": "40"}
    env.pop("MAASCTL_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", *args], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    return seen.decode()


def test_show_plot_draws_train_and_validation_in_a_terminal(three, store_path):
    out = read_pty(["runs", "show", A, "--plot"], store_path)
    assert "\x1b[" in out  # coloured chart
    assert out.count("val_loss") >= 2 and "val_accuracy" in out and "epoch" in out
    # in a pipe: the per-epoch table, and a note on stderr instead of a chart
    r = run_cli("runs", "show", A, "--plot", store=store_path)
    assert r.returncode == 0 and "\x1b[" not in r.stdout and "not a terminal" in r.stderr


def test_compare_chart_in_a_terminal(three, store_path):
    out = read_pty(["runs", "compare", A, B, "--metric", "accuracy"], store_path)
    assert "aaaaaa accuracy" in out and "bbbbbb val_accuracy" in out and "\x1b[" in out
