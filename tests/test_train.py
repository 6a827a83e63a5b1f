"""Training for real: tiny Keras models on CSV, JSONL and NPZ data, exported and reloaded with TensorFlow.

Trainings run in-process (one TensorFlow import for the file) and are shared through session fixtures;
only a few CLI cases use subprocesses.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from maasctl.errors import InvalidInput
from maasctl.store import Store
from maasctl.store.savedmodel import read_signatures
from maasctl.training.data import prepare
from maasctl.training.runs import list_runs, register_run

pytestmark = pytest.mark.tf

CLASSES = ["setosa", "versicolor", "virginica"]


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated clusters in 4-D (an easy, separable problem)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 6]], dtype=float) * 2 + 10
    y = rng.integers(0, 3, size=n)
    x = centers[y] + rng.normal(scale=1.0, size=(n, 4))
    return x, y


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")


CLASSIFIER = """
[data]
path = "{path}"
label = "species"
validation_split = 0.2

[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 16
activation = "relu"
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"

[train]
epochs = 12
batch_size = 32
learning_rate = 0.02
seed = 7

[register]
name = "blobs"
aliases = ["candidate"]
"""


@pytest.fixture(scope="session")
def blob_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blobs")
    x, y = blobs()
    write_csv(root / "train.csv", ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"],
              [[f"{v:.4f}" for v in row] + [CLASSES[c]] for row, c in zip(x, y)])
    (root / "blobs.toml").write_text(CLASSIFIER.format(path="train.csv"))
    return root


@pytest.fixture(scope="session")
def train_store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("train-store") / "store")


def train_config(store: Store, config: Path, overrides: tuple[str, ...] = ()):
    """Validate, load and train in-process, like `maasctl train` does."""
    from maasctl.tf.train import run_training

    cfg, ds = prepare(config, overrides)
    run, result = run_training(store, cfg, ds)
    return run, result, ds


@pytest.fixture(scope="session")
def blob_run(tf, train_store, blob_dir):
    return train_config(train_store, blob_dir / "blobs.toml")


def saved_predict(tf, model_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(model_dir))
    out = loaded.signatures["serving_default"](features=tf.constant(x, dtype=tf.float32))
    return {k: v.numpy() for k, v in out.items()}


# -- classification on CSV with string labels ------------------------------------------------------------
def test_easy_problem_is_learned(blob_run):
    _, result, _ = blob_run
    assert result.metrics["val_accuracy"] >= 0.95
    assert result.metrics["accuracy"] >= 0.95
    assert set(result.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_exported_model_matches_in_memory_model(tf, blob_run):
    run, result, ds = blob_run
    sigs = read_signatures(run.model_dir)["serving_default"]
    assert list(sigs["inputs"]) == ["features"]
    assert sigs["inputs"]["features"]["dtype"] == "float32" and sigs["inputs"]["features"]["shape"] == [-1, 4]
    assert sigs["outputs"]["probabilities"]["shape"] == [-1, 3]
    x = ds.x_val[:50]
    saved = saved_predict(tf, run.model_dir, x)["probabilities"]
    memory = result.model.predict(x, verbose=0)
    np.testing.assert_allclose(saved, memory, atol=1e-6)
    np.testing.assert_allclose(saved.sum(axis=1), 1.0, atol=1e-5)
    # raw features in, normalization inside: the argmax agrees with the labels
    assert (saved.argmax(axis=1) == ds.y_val[:50]).mean() >= 0.95


def test_run_record(blob_run, blob_dir, train_store):
    run, result, _ = blob_run
    assert run.path == train_store.runs_dir / run.run_id and (run.path / "config.toml").is_file()
    assert run.register_name == "blobs" and run.register_aliases == ["candidate"]
    meta = run.meta
    assert meta["task"] == "classification"
    assert meta["feature_names"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert meta["class_names"] == CLASSES
    assert meta["metrics"] == result.metrics
    assert meta["params"]["train"]["epochs"] == 12 and meta["params"]["model"]["normalize"] is True
    lin = meta["lineage"]
    import hashlib

    assert lin["config_sha256"] == hashlib.sha256((blob_dir / "blobs.toml").read_bytes()).hexdigest()
    assert lin["data_sha256"] == hashlib.sha256((blob_dir / "train.csv").read_bytes()).hexdigest()
    assert lin["seed"] == 7 and lin["run_id"] == run.run_id and lin["wall_time_s"] > 0
    assert "git_commit" in lin
    env = meta["environment"]
    assert env["tensorflow"] and env["python"] and env["maasctl"]
    history = run.record["history"]
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    assert history[-1]["loss"] < history[0]["loss"]
    assert meta["metrics"] == {k: v for k, v in history[-1].items() if k != "epoch"}
    assert run.record["final_epoch"] == 12
    assert run.record["data"]["train_rows"] == 240 and run.record["data"]["validation_rows"] == 60
    assert run.run_id in [r.run_id for r in list_runs(train_store)]


def test_tensorboard_events_equal_history(blob_run):
    """`tensorboard --logdir <store>/runs` reads what run.json holds: one scalar per epoch per metric."""
    pytest.importorskip("tensorboard", reason="the tensorboard package (test extra) reads the event files")
    from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
    from tensorboard.util import tensor_util

    run, _, _ = blob_run
    history = run.record["history"]
    for split, prefix in (("train", ""), ("validation", "val_")):
        acc = EventAccumulator(str(run.path / "tensorboard" / split), size_guidance={TENSORS: 0}).Reload()
        tags = sorted(acc.Tags()["tensors"])
        assert tags == sorted(f"epoch_{m}" for m in ("loss", "accuracy"))
        for tag in tags:
            events = acc.Tensors(tag)
            key = prefix + tag.removeprefix("epoch_")
            assert [e.step for e in events] == [h["epoch"] for h in history]
            got = [float(np.asarray(tensor_util.make_ndarray(e.tensor_proto))) for e in events]
            assert got == [float(np.float32(h[key])) for h in history], (split, tag)


def test_reproducible_to_1e6(tf, blob_run, train_store, blob_dir):
    run, result, ds = blob_run
    run2, result2, _ = train_config(train_store, blob_dir / "blobs.toml")
    assert run2.run_id != run.run_id
    assert result2.metrics.keys() == result.metrics.keys()
    for k, v in result.metrics.items():
        assert abs(result2.metrics[k] - v) <= 1e-6, k
    for a, b in zip(run.record["history"], run2.record["history"]):
        assert a == pytest.approx(b, abs=1e-6)
    np.testing.assert_allclose(saved_predict(tf, run.model_dir, ds.x_val)["probabilities"],
                               saved_predict(tf, run2.model_dir, ds.x_val)["probabilities"], atol=1e-6)
    # a different seed gives a different model (the test above could not pass by accident)
    run3, _, _ = train_config(train_store, blob_dir / "blobs.toml", ("train.seed=8", "train.epochs=1"))
    assert run3.record["history"][0]["loss"] != pytest.approx(run.record["history"][0]["loss"], abs=1e-6)


def test_register_run_uses_config_register_section(blob_run, train_store):
    run, _, _ = blob_run
    res = register_run(train_store, run.run_id, None)
    assert res.info.ref == "blobs@1" and res.info.aliases == ["candidate"]
    assert res.info.meta["class_names"] == CLASSES
    assert res.info.lineage["run_id"] == run.run_id
    assert res.info.source == f"run {run.run_id}"
    again = register_run(train_store, run.run_id, "other", aliases=["prod"])
    assert again.info.ref == "other@1" and again.info.aliases == ["prod"]


# -- other formats and tasks -------------------------------------------------------------------------------
def test_jsonl_integer_labels(tf, tmp_path, train_store):
    x, y = blobs(200, seed=1)
    with open(tmp_path / "d.jsonl", "w") as f:
        f.writelines(json.dumps({"a": row[0], "b": row[1], "c": row[2], "d": row[3], "kind": int(c)}) + "\n" for row, c in zip(x, y))
    (tmp_path / "c.toml").write_text(CLASSIFIER.format(path="d.jsonl").replace('"species"', '"kind"'))
    run, result, ds = train_config(train_store, tmp_path / "c.toml", ("train.epochs=10",))
    assert run.meta["class_names"] == ["0", "1", "2"] and run.meta["feature_names"] == ["a", "b", "c", "d"]
    assert result.metrics["val_accuracy"] >= 0.9
    np.testing.assert_allclose(saved_predict(tf, run.model_dir, ds.x_val)["probabilities"],
                               result.model.predict(ds.x_val, verbose=0), atol=1e-6)


REGRESSION = """
[data]
path = "{path}"
{label}
[model]
task = "regression"
[[model.layers]]
type = "Dense"
units = 16
activation = "relu"
[[model.layers]]
type = "Dense"
units = {units}
[train]
epochs = 25
batch_size = 32
learning_rate = 0.05
"""


def test_npz_regression(tf, tmp_path, train_store):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3)) * [1, 10, 100] + [0, 50, -200]
    y = 2 * x[:, 0] + 0.3 * x[:, 1] - 0.01 * x[:, 2] + rng.normal(scale=0.05, size=300)
    np.savez(tmp_path / "d.npz", x=x, y=y, feature_names=np.array(["u", "v", "w"]))
    (tmp_path / "r.toml").write_text(REGRESSION.format(path="d.npz", label="", units=1))
    run, result, ds = train_config(train_store, tmp_path / "r.toml")
    assert run.meta.get("class_names") is None and run.meta["feature_names"] == ["u", "v", "w"]
    assert set(result.metrics) == {"loss", "mean_absolute_error", "val_loss", "val_mean_absolute_error"}
    assert result.metrics["val_mean_absolute_error"] < 0.2 * float(np.std(y))
    sig = read_signatures(run.model_dir)["serving_default"]
    assert sig["outputs"]["predictions"]["shape"] == [-1, 1]
    np.testing.assert_allclose(saved_predict(tf, run.model_dir, ds.x_val)["predictions"],
                               result.model.predict(ds.x_val, verbose=0), rtol=1e-5, atol=1e-5)


def test_csv_regression_two_targets_without_normalization(tf, tmp_path, train_store):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2))
    write_csv(tmp_path / "d.csv", ["p", "t1", "q", "t2"],
              [[a, a + b, b, a - b] for a, b in x])
    (tmp_path / "r.toml").write_text(REGRESSION.format(path="d.csv", label='label = ["t1", "t2"]', units=2))
    run, result, ds = train_config(train_store, tmp_path / "r.toml", ("model.normalize=false", "train.epochs=10"))
    assert run.meta["feature_names"] == ["p", "q"]
    assert read_signatures(run.model_dir)["serving_default"]["outputs"]["predictions"]["shape"] == [-1, 2]
    assert result.metrics["val_mean_absolute_error"] < 0.3
    np.testing.assert_allclose(saved_predict(tf, run.model_dir, ds.x_val)["predictions"],
                               result.model.predict(ds.x_val, verbose=0), rtol=1e-5, atol=1e-5)


def test_builder_function(tf, tmp_path, train_store, blob_dir):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import keras

        def build(config, n_features, n_classes):
            assert config["model"]["params"]["width"] == 8
            return keras.Sequential([keras.Input((n_features,)),
                                     keras.layers.Dense(config["model"]["params"]["width"], activation="relu"),
                                     keras.layers.Dense(n_classes, activation="softmax")])
    """))
    (tmp_path / "train.csv").write_bytes((blob_dir / "train.csv").read_bytes())
    text = CLASSIFIER.format(path="train.csv").split("[[model.layers]]")[0]
    text = text.replace('task = "classification"', 'task = "classification"\nbuilder = "my_models:build"\n'
                        'params = { width = 8 }')
    (tmp_path / "b.toml").write_text(text + "[train]\nepochs = 10\nlearning_rate = 0.01\n")
    run, result, ds = train_config(train_store, tmp_path / "b.toml")
    assert result.metrics["val_accuracy"] >= 0.9
    np.testing.assert_allclose(saved_predict(tf, run.model_dir, ds.x_val)["probabilities"],
                               result.model.predict(ds.x_val, verbose=0), atol=1e-6)


def test_early_stopping(tf, blob_run, train_store, blob_dir):
    run, _, _ = train_config(train_store, blob_dir / "blobs.toml",
                             ("train.epochs=50", "train.early_stopping.patience=0",
                              "train.early_stopping.min_delta=10.0", "train.early_stopping.monitor=loss"))
    # epoch 1 sets the baseline; epoch 2 does not improve it by 10 -> stop
    assert run.record["epochs_run"] == 2 and run.record["stopped_early"] is True
    assert len(run.record["history"]) == 2
    # restore_best_weights (the default) kept epoch 1's weights: the final metrics are epoch 1's
    assert run.record["final_epoch"] == 1
    assert run.meta["metrics"] == {k: v for k, v in run.record["history"][0].items() if k != "epoch"}


# -- errors only Keras can find (still before any run directory exists) ----------------------------------
def fit_error(store: Store, config: Path, overrides: tuple[str, ...]) -> str:
    from maasctl.tf.train import run_training

    before = sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.exists() else []
    cfg, ds = prepare(config, overrides)
    with pytest.raises(InvalidInput) as exc:
        run_training(store, cfg, ds)
    after = sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.exists() else []
    assert after == before
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_wrong_layer_arguments_attributed_to_layer(tf, train_store, blob_dir):
    msg = fit_error(train_store, blob_dir / "blobs.toml", ("model.layers[0].activaton=relu",))
    assert msg == (f"{blob_dir / 'blobs.toml'}: model.layers[0]: Dense: Unrecognized keyword arguments passed to "
                   "Dense: {'activaton': 'relu'}")
    msg = fit_error(train_store, blob_dir / "blobs.toml", ("model.layers[0].units=-3",))
    assert "model.layers[0]: Dense:" in msg and "units" in msg
    msg = fit_error(train_store, blob_dir / "blobs.toml", ("model.layers[0].activation=rleu",))
    assert "model.layers[0]: Dense:" in msg and "rleu" in msg
    msg = fit_error(train_store, blob_dir / "blobs.toml", ("model.layers[0].name=dup", "model.layers[1].name=dup"))
    assert "model.layers: " in msg and "dup" in msg


def test_output_shape_checked_after_build(tf, train_store, blob_dir):
    msg = fit_error(train_store, blob_dir / "blobs.toml", ("model.layers[1].type=Reshape",
                                                           "model.layers[1].target_shape=[4, 4]"))
    assert "model.layers[1]" in msg
    # a stack whose last layer has no `units` (so the pre-TensorFlow check cannot see its size)
    cfg = blob_dir / "softmax16.toml"
    cfg.write_text(CLASSIFIER.format(path="train.csv").replace('units = 3\nactivation = "softmax"', "").replace(
        'type = "Dense"\n\n', 'type = "Softmax"\n'))
    msg = fit_error(train_store, cfg, ())
    assert "model.layers[1]: the model outputs shape [None, 16]; expected [None, 3] (one probability per class: " \
           "setosa, versicolor, virginica)" in msg


def test_unknown_loss_and_metric(tf, train_store, blob_dir):
    assert "train.loss: unknown loss 'sparse_crossentropy'" in fit_error(
        train_store, blob_dir / "blobs.toml", ("train.loss=sparse_crossentropy",))
    assert "train.metrics[1]: unknown metric 'acuracy'" in fit_error(
        train_store, blob_dir / "blobs.toml", ('train.metrics=["accuracy", "acuracy"]',))


def test_builder_import_errors(tf, tmp_path, train_store, blob_dir):
    (tmp_path / "train.csv").write_bytes((blob_dir / "train.csv").read_bytes())
    text = CLASSIFIER.format(path="train.csv").split("[[model.layers]]")[0]
    (tmp_path / "b.toml").write_text(text.replace('task = "classification"',
                                                  'task = "classification"\nbuilder = "broken_models:build"'))
    (tmp_path / "broken_models.py").write_text("import no_such_dependency_xyz\n\n\n"
                                               "def build(config, n_features, n_classes):\n    pass\n")
    msg = fit_error(train_store, tmp_path / "b.toml", ())
    assert "model.builder: cannot import 'broken_models:build'" in msg and "no_such_dependency_xyz" in msg
    # a plainly missing function is found in the source, before the module's code runs
    (tmp_path / "broken_models.py").write_text("import no_such_dependency_xyz\n\n\n"
                                               "def buld(config, n_features, n_classes):\n    pass\n")
    sys.modules.pop("broken_models", None)
    with pytest.raises(InvalidInput) as exc:  # refused while the config is checked, before TensorFlow loads
        prepare(tmp_path / "b.toml", ())
    assert "defines no 'build' (did you mean 'buld'?) (checked without importing it)" in str(exc.value)
    (tmp_path / "broken_models.py").write_text("def build(config, n_features, n_classes):\n    return 3\n")
    sys.modules.pop("broken_models", None)
    assert "returned int, expected a keras.Model" in fit_error(train_store, tmp_path / "b.toml", ())


def test_known_layer_names_exist_in_keras(tf):
    import keras

    from maasctl.training.config import KERAS_LAYERS

    missing = sorted(n for n in KERAS_LAYERS if not isinstance(getattr(keras.layers, n, None), type))
    assert not missing


# -- the CLI (subprocesses) ------------------------------------------------------------------------------
def test_cli_bad_input_exit_2_and_no_run(tmp_path, blob_dir):
    store = tmp_path / "store"
    bad = tmp_path / "bad.toml"
    bad.write_text(CLASSIFIER.format(path=str(blob_dir / "train.csv")).replace("epochs = 12", "epoch = 12"))
    r = run_cli("train", str(bad), store=store)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == f"Error: {bad}: train.epoch: unknown key in [train] (did you mean 'epochs'?); expected one of " \
                       "epochs, batch_size, optimizer, learning_rate, loss, metrics, seed, early_stopping, class_weight, " \
                       "distribute\n"
    assert not store.exists()
    r = run_cli("train", str(blob_dir / "blobs.toml"), "--set", "train.epoch=3", store=store)
    assert r.returncode == 2 and r.stderr.startswith("Error: --set train.epoch: unknown key 'epoch'")
    (tmp_path / "d.csv").write_text("a,b,species\n1,2,x\n3,oops,y\n")
    r = run_cli("train", str(bad), "--set", f'data.path="{tmp_path / "d.csv"}"', "--set", "train.epochs=1",
                "--set", "train.epoch=1", store=store)
    assert r.returncode == 2
    good = tmp_path / "good.toml"
    good.write_text(CLASSIFIER.format(path="d.csv"))
    r = run_cli("train", str(good), store=store)
    assert r.returncode == 2 and r.stderr == f"Error: {tmp_path / 'd.csv'}:3: column 'b': 'oops' is not a number\n"
    assert not store.exists()
    r = run_cli("train", str(tmp_path / "missing.toml"), store=store)
    assert r.returncode == 3 and "config file not found" in r.stderr


def test_cli_train_register_json(tmp_path, blob_dir):
    store = tmp_path / "store"
    r = run_cli("train", str(blob_dir / "blobs.toml"), "--set", "train.epochs=3", "--register", "--alias", "ci",
                "--json", store=store)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ref"] == "blobs@1"
    assert set(doc) >= {"run_id", "metrics", "model_dir", "ref"}
    assert Path(doc["model_dir"]).is_dir() and "val_accuracy" in doc["metrics"]
    lines = [line for line in r.stderr.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"] and "val_loss" in lines[0]
    shown = json.loads(run_cli("show", "blobs@ci", "--json", store=store).stdout)
    assert shown["version"] == 1 and shown["class_names"] == CLASSES
    assert shown["lineage"]["run_id"] == doc["run_id"]
    listed = json.loads(run_cli("runs", "list", "--json", store=store).stdout)
    assert [x["run_id"] for x in listed] == [doc["run_id"]]
    run = json.loads(run_cli("runs", "show", doc["run_id"], "--json", store=store).stdout)
    assert run["metrics"] == doc["metrics"] and len(run["history"]) == 3
    r = run_cli("runs", "show", "20200101-000000-000000", store=store)
    assert r.returncode == 3 and f"recent runs: {doc['run_id']}" in r.stderr
    # `maasctl register RUN` takes the same path: identical content is found again
    r = run_cli("register", doc["run_id"], "--json", store=store)
    assert r.returncode == 0 and json.loads(r.stdout)["created"] is False


def test_cli_says_the_data_before_tensorflow_and_when_it_stopped_early(tmp_path, blob_dir):
    """Issue 11, items 9 and 10: a data summary at once, then `loading TensorFlow…`; early stopping is said."""
    _, y = blobs()
    store = tmp_path / "store"
    r = run_cli("train", str(blob_dir / "blobs.toml"), "--set", "train.epochs=50", "--set",
                "train.early_stopping.patience=0", "--set", "train.early_stopping.min_delta=10.0", "--set",
                "train.early_stopping.monitor=loss", store=store)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    counts = ", ".join(f"{c} {int((y == i).sum())}" for i, c in enumerate(CLASSES))
    assert lines[0] == ("data: 300 rows (240 training, 60 validation, validation_split 0.2); 4 features "
                        "(sepal_length, sepal_width, petal_length, petal_width); 3 classes: " + counts)
    assert lines[1] == "loading TensorFlow…"
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch")] == ["1/50", "2/50"]
    assert "stopped early at epoch 2 (best epoch 1 restored)" in lines
    final = lines[-1]
    assert final.startswith("run ") and "(epoch 1, " in final
    shown = run_cli("runs", "show", r.stdout.strip(), store=store).stdout
    assert re.search(r"^stopped early +True$", shown, re.MULTILINE) and re.search(r"^best epoch +1$", shown, re.MULTILINE), shown
    doc = json.loads(run_cli("runs", "show", r.stdout.strip(), "--json", store=store).stdout)
    assert (doc["stopped_early"], doc["best_epoch"], doc["final_epoch"]) == (True, 1, 1)


def test_cli_ctrl_c_leaves_no_run(tmp_path, blob_dir):
    """In a terminal: a live rich progress bar with the loss; Ctrl-C exits 130 and leaves nothing behind."""
    store = tmp_path / "store"
    master, slave = pty.openpty()
    env = {**os.environ, "MAASCTL_HOME": str(store), "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", "train", str(blob_dir / "blobs.toml"),
                             "--set", "train.epochs=100000"], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b"loss" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        assert b"loss" in seen, seen[-2000:]
        assert b"epoch" in seen
        proc.send_signal(signal.SIGINT)
        # keep reading the terminal: a child whose last writes fill the pty's small buffer would block in them
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the child's end is closed: it is exiting
                    break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert rc == 130
    assert proc.stdout.read() == b""
    runs = list(store.joinpath("runs").iterdir()) if store.joinpath("runs").exists() else []
    assert runs == []
    staging = list(store.joinpath("staging").iterdir()) if store.joinpath("staging").exists() else []
    assert staging == []


def test_diverging_training_fails_without_a_run(tf, train_store, blob_dir):
    from maasctl.errors import OperationFailed
    from maasctl.tf.train import run_training

    before = sorted(p.name for p in train_store.runs_dir.iterdir()) if train_store.runs_dir.exists() else []
    cfg, ds = prepare(blob_dir / "blobs.toml", ("train.learning_rate=1e30", "train.epochs=3",
                                                "model.normalize=false", "train.optimizer=sgd"))
    with pytest.raises(OperationFailed, match="training diverged"):
        run_training(train_store, cfg, ds)
    after = sorted(p.name for p in train_store.runs_dir.iterdir()) if train_store.runs_dir.exists() else []
    assert after == before



def test_class_weights_map_class_names_to_ids(tf, blob_dir):
    from maasctl.tf.train import _class_weight

    cfg, ds = prepare(blob_dir / "blobs.toml", ("train.class_weight={ virginica = 3.0 }",))
    assert _class_weight(cfg, ds) == {0: 1.0, 1: 1.0, 2: 3.0}
    cfg, ds = prepare(blob_dir / "blobs.toml", ('train.class_weight="balanced"',))
    weights = _class_weight(cfg, ds)
    counts = np.bincount(ds.y_train)
    assert weights == pytest.approx({i: len(ds.y_train) / (3 * c) for i, c in enumerate(counts)})
