"""Build a Keras model from a validated config, fit it deterministically, and record the run in the store.

The caller has already validated the config and read the data (maasctl.training.config / maasctl.training.data, no TensorFlow);
errors found here are the ones only Keras can find (layer arguments, shapes, loss and metric names) and are
attributed to the config key that caused them.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import math
import platform
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from maasctl import __version__
from maasctl.errors import InvalidInput, OperationFailed, write_failed, writing
from maasctl.store import ModelStore, utcnow
from maasctl.tf import load_tensorflow
from maasctl.tf.distributed import floats
from maasctl.training.config import LAYERS_DOCS, OPTIMIZERS, TrainConfig, did_you_mean
from maasctl.training.data import Dataset
from maasctl.training.distribute import Plan, describe_cluster, resolve
from maasctl.training.runs import (
    CONFIG_COPY,
    FORMAT_VERSION,
    MODEL_DIR,
    RUN_FILE,
    TENSORBOARD_DIR,
    Run,
    commit_run,
    git_lineage,
    load_run,
    new_run_id,
    write_record,
)

tf = load_tensorflow()
import keras  # after load_tensorflow(): Keras imports TensorFlow, which must come in quietly

# Strings `Model.compile` accepts as metrics although `keras.metrics.get` does not.
_COMPILE_METRIC_ALIASES = {"acc", "ce", "crossentropy"}


class Reporter(Protocol):
    """Receives training progress (the CLI renders it; library callers may pass None)."""

    wants_batches: bool

    def start(self, epochs: int, steps: int) -> None: ...
    def epoch_start(self, epoch: int) -> None: ...
    def batch(self, step: int, logs: dict[str, float]) -> None: ...
    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def end(self) -> None: ...


@dataclass
class FitResult:
    model: Any  # keras.Model, including the Normalization layer
    history: list[dict[str, float]]
    metrics: dict[str, float]
    epochs_run: int
    stopped_early: bool
    train_time_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- the model -------------------------------------------------------------------------------------------
def set_determinism(seed: int) -> None:
    """Same seed, same machine -> same weights, metrics and predictions."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(cfg: TrainConfig, ds: Dataset) -> Any:
    """Input `features` float32 [None, n_features] -> (Normalization adapted on x_train) -> layers or builder."""
    n_features, n_outputs = ds.n_features, ds.n_outputs
    inputs = keras.Input(shape=(n_features,), name="features", dtype="float32")
    x = inputs
    if cfg.model["normalize"]:
        norm = keras.layers.Normalization(axis=-1, name="normalize")
        if ds.shard is not None and ds.shard.norm is not None:  # all shards' statistics: what adapt would compute
            norm.build((None, n_features))
            norm.adapt_mean.assign(ds.shard.norm[0])
            norm.adapt_variance.assign(ds.shard.norm[1])
            norm.finalize_state()
        else:
            norm.adapt(ds.x_train)
        x = norm(x)
    if "builder" in cfg.model:
        outputs = _apply_builder(cfg, x, n_features, n_outputs if ds.class_names is not None else None)
    else:
        outputs = _apply_layers(cfg, x)
    where = "model.builder" if "builder" in cfg.model else "model.layers"
    if not hasattr(outputs, "shape"):
        raise cfg.error(where, f"the model must have one output tensor, got {type(outputs).__name__}")
    try:
        model = keras.Model(inputs, outputs, name="maasctl_model")
    except Exception as exc:  # noqa: BLE001 - Keras' own message, e.g. two layers with the same `name`
        raise cfg.error(where, _first_line(exc)) from None
    _check_output(cfg, model, ds)
    return model


def _apply_layers(cfg: TrainConfig, x: Any) -> Any:
    for i, spec in enumerate(cfg.model["layers"]):
        kind = spec["type"]
        where = f"model.layers[{i}]"
        cls = getattr(keras.layers, kind, None)
        if not isinstance(cls, type):
            names = [n for n in dir(keras.layers) if not n.startswith("_")]
            raise cfg.error(f"{where}.type", f"unknown layer type '{kind}'{did_you_mean(kind, names)} "
                            f"(see {LAYERS_DOCS})")
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        try:
            layer = cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError/TypeError with a useful message
            raise cfg.error(where, f"{kind}: {_first_line(exc)}") from None
        try:
            x = layer(x)
        except Exception as exc:  # noqa: BLE001 - Keras / the user's builder: re-raised as InvalidInput
            raise cfg.error(where, f"{kind} cannot take the previous output (shape {tuple(x.shape)}): "
                            f"{_first_line(exc)}") from None
    return x


def _import_builder(cfg: TrainConfig) -> Any:
    spec = cfg.model["builder"]
    modname, fname = spec.split(":")
    base = str(cfg.base_dir)
    cached = sys.modules.get(modname)
    if cached is not None and not str(getattr(cached, "__file__", "") or "").startswith(base):
        del sys.modules[modname]  # another config's module of the same name
    sys.path.insert(0, base)
    try:
        module = importlib.import_module(modname)
    except Exception as exc:  # noqa: BLE001 - Keras / the user's builder: re-raised as InvalidInput
        raise cfg.error("model.builder", f"cannot import '{spec}' from {base}: {type(exc).__name__}: "
                        f"{_first_line(exc)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(base)
    fn = getattr(module, fname, None)
    if not callable(fn):
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise cfg.error("model.builder", f"module '{modname}' ({getattr(module, '__file__', '?')}) has no function "
                        f"'{fname}'{did_you_mean(fname, names)}")
    return fn


def _apply_builder(cfg: TrainConfig, x: Any, n_features: int, n_classes: int | None) -> Any:
    fn = _import_builder(cfg)
    spec = cfg.model["builder"]
    try:
        built = fn(cfg.values, n_features, n_classes)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - Keras / the user's builder: re-raised as InvalidInput
        raise cfg.error("model.builder", f"'{spec}' raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(built, keras.Model):
        raise cfg.error("model.builder", f"'{spec}' returned {type(built).__name__}, expected a keras.Model")
    try:
        return built(x)
    except Exception as exc:  # noqa: BLE001 - Keras / the user's builder: re-raised as InvalidInput
        raise cfg.error("model.builder", f"the model from '{spec}' cannot take input of shape [None, {n_features}]: "
                        f"{_first_line(exc)}") from None


def _check_output(cfg: TrainConfig, model: Any, ds: Dataset) -> None:
    shape = tuple(model.output.shape)
    where = "model.builder" if "builder" in cfg.model else f"model.layers[{len(cfg.model['layers']) - 1}]"
    n = ds.n_outputs
    if len(shape) != 2 or shape[-1] != n:
        if ds.class_names is not None:
            expected = f"[None, {n}] (one probability per class: {', '.join(ds.class_names)})"
        else:
            expected = f"[None, {n}] (one value per regression target)"
        raise cfg.error(where, f"the model outputs shape {list(shape)}; expected {expected}")


def compile_model(cfg: TrainConfig, model: Any) -> None:
    train = cfg.train
    optimizer = getattr(keras.optimizers, OPTIMIZERS[train["optimizer"]])(learning_rate=train["learning_rate"])
    try:
        keras.losses.get(train["loss"])
    except Exception:  # noqa: BLE001 - Keras / the user's builder: re-raised as InvalidInput
        raise cfg.error("train.loss", f"unknown loss '{train['loss']}' (see https://keras.io/api/losses/)") from None
    for i, m in enumerate(train["metrics"]):
        if m in _COMPILE_METRIC_ALIASES:
            continue
        try:
            keras.metrics.get(m)
        except Exception:  # noqa: BLE001 - Keras / the user's builder: re-raised as InvalidInput
            raise cfg.error(f"train.metrics[{i}]", f"unknown metric '{m}' (see https://keras.io/api/metrics/)") from None
    model.compile(optimizer=optimizer, loss=train["loss"], metrics=list(train["metrics"]))


# -- fitting ---------------------------------------------------------------------------------------------
class _StopOnNaN(keras.callbacks.Callback):
    """Stop after an epoch whose loss is not finite (epoch-level: batch hooks would slow every step)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            self.model.stop_training = True


class _EpochProgress(keras.callbacks.Callback):
    def __init__(self, reporter: Reporter, epochs: int, steps: int) -> None:
        super().__init__()
        self.reporter, self.epochs, self.steps = reporter, epochs, steps

    def on_train_begin(self, logs: Any = None) -> None:
        self.reporter.start(self.epochs, self.steps)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.reporter.epoch_start(epoch + 1)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.reporter.epoch_end(epoch + 1, floats(logs))


class _BatchProgress(_EpochProgress):
    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.reporter.batch(batch + 1, floats(logs))


def _class_weight(cfg: TrainConfig, ds: Dataset) -> dict[int, float] | None:
    cw = cfg.train.get("class_weight")
    if cw is None or ds.class_names is None:
        return None
    if cw == "balanced":
        counts = np.bincount(ds.y_train, minlength=len(ds.class_names))
        if ds.shard is not None and ds.shard.class_counts is not None:  # sharded by file: every worker's rows
            counts = ds.shard.class_counts
        return {i: (int(counts.sum()) / (len(counts) * c) if c else 0.0) for i, c in enumerate(counts)}
    return {i: float(cw.get(name, 1.0)) for i, name in enumerate(ds.class_names)}


def plan_for(cfg: TrainConfig) -> Plan:
    """Resolve `[train] distribute` here (TF_CONFIG, visible GPUs)."""
    import os

    return resolve(cfg.train.get("distribute", "auto"), os.environ,
                   lambda: len(tf.config.list_physical_devices("GPU")))


def fit(cfg: TrainConfig, ds: Dataset, reporter: Reporter | None = None, *, plan: Plan | None = None,
        cluster_timeout: float = 120.0) -> FitResult:
    """Build, compile and fit; the final metrics are those of the epoch whose weights the model keeps."""
    from maasctl.tf.distributed import fit_loop, make_strategy
    from maasctl.tf.interrupt import InterruptCheck, sigint_recorded

    train = cfg.train
    plan = plan_for(cfg) if plan is None else plan
    strategy = make_strategy(plan, cluster_timeout)
    if ds.shard is not None:  # sharded by file: agree with the other workers on classes, counts and statistics
        from maasctl.tf.shard import settle

        settle(strategy, plan, cfg, ds, cluster_timeout)
    set_determinism(train["seed"])
    with strategy.scope():
        model = build_model(cfg, ds)
        compile_model(cfg, model)
    callbacks: list[Any] = [_StopOnNaN()]
    es = train.get("early_stopping")
    es_callback = None
    if es:
        es_callback = keras.callbacks.EarlyStopping(
            monitor=es["monitor"], patience=es["patience"], min_delta=es["min_delta"],
            restore_best_weights=es["restore_best_weights"], mode=es["mode"])
        callbacks.append(es_callback)
    steps = math.ceil(len(ds.x_train) / train["batch_size"])
    if ds.shard is not None:
        steps = ds.shard.steps(ds.shard.train_rows)
    if reporter is not None:
        cls = _BatchProgress if reporter.wants_batches else _EpochProgress
        callbacks.append(cls(reporter, train["epochs"], steps))
    validation = (ds.x_val, ds.y_val) if ds.x_val is not None else None
    with sigint_recorded() as interrupted:
        callbacks.append(InterruptCheck(interrupted))
        t0 = time.perf_counter()
        try:
            if plan.mode == "none":
                history_dict = model.fit(ds.x_train, ds.y_train, batch_size=train["batch_size"], epochs=train["epochs"],
                                         validation_data=validation, shuffle=cfg.data["shuffle"], callbacks=callbacks,
                                         class_weight=_class_weight(cfg, ds), verbose=0).history
            else:
                history_dict = fit_loop(strategy, plan, model, x=ds.x_train, y=ds.y_train, validation=validation,
                                        batch_size=train["batch_size"], epochs=train["epochs"],
                                        shuffle=cfg.data["shuffle"], seed=train["seed"],
                                        class_weight=_class_weight(cfg, ds), callbacks=callbacks,
                                        on_batch=lambda: reporter is not None and reporter.wants_batches,
                                        shard=ds.shard)
        except Exception as exc:
            if interrupted.is_set():  # Ctrl-C inside TensorFlow can surface as another error (ValueError, SystemError)
                raise KeyboardInterrupt from None
            if isinstance(exc, (ValueError, TypeError)):  # e.g. a loss that does not fit the labels
                raise InvalidInput(f"{cfg.path}: training failed: {_first_line(exc)} (check train.loss, "
                                   f"train.metrics and the output layer)") from None
            raise
        finally:
            if reporter is not None:
                reporter.end()
    train_time = time.perf_counter() - t0
    epochs_run = len(history_dict.get("loss", []))
    losses = history_dict.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        raise OperationFailed(f"{cfg.path}: training diverged (the loss became NaN or infinite in epoch "
                              f"{len(losses)}); try a lower train.learning_rate or model.normalize = true")
    history = [{"epoch": e + 1, **{k: float(v[e]) for k, v in history_dict.items()}} for e in range(epochs_run)]
    # The final metrics are those of the epoch whose weights are exported: the last one, or the best one when
    # early stopping restored it. (Re-evaluating would cost a pass over the data for the same validation
    # figures; Keras's training figures are averaged over the epoch, as everywhere in Keras.)
    final = epochs_run - 1
    restored = False
    if es_callback is not None and es and es["restore_best_weights"] and es_callback.best_weights is not None:
        final = int(getattr(es_callback, "best_epoch", final))
        restored = True
    best = int(getattr(es_callback, "best_epoch", final)) + 1 if es_callback is not None else None
    metrics = {k: v for k, v in history[final].items() if k != "epoch"}
    return FitResult(model, history, metrics, epochs_run, epochs_run < train["epochs"], train_time,
                     extra={"final_epoch": final + 1, "best_epoch": best, "restored_best": restored,
                            "plan": plan, "strategy": strategy})


def stop_message(result: FitResult) -> str:
    """What early stopping did, for people ("" when training ran all its epochs)."""
    if not result.stopped_early:
        return ""
    best = result.extra.get("best_epoch")
    if result.extra.get("restored_best"):
        return f"stopped early at epoch {result.epochs_run} (best epoch {best} restored)"
    return f"stopped early at epoch {result.epochs_run} (best epoch {best}; the last epoch's weights are kept)"


# -- the run record --------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    return {"maasctl": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform()}


def build_record(run_id: str, cfg: TrainConfig, ds: Dataset, result: FitResult, *, started_at: str,
                 wall_time_s: float) -> dict[str, Any]:
    files = ds.files
    lineage = {
        "run_id": run_id,
        "config_path": str(cfg.path.resolve()),
        "config_sha256": cfg.text_sha256,
        "overrides": list(cfg.overrides),
        "data_sha256": files[0]["sha256"],
        **({"validation_sha256": files[-1]["sha256"]} if files[-1]["role"] == "validation" else {}),
        "data_files": files,
        **git_lineage(cfg.path.resolve(), [f["path"] for f in files if not f["path"].startswith("s3://")]),
        "seed": cfg.train["seed"],
        "started_at": started_at,
        "wall_time_s": round(wall_time_s, 3),
    }
    return {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "created_at": utcnow(),
        "task": cfg.task,
        "feature_names": ds.feature_names,
        "class_names": ds.class_names,
        "metrics": result.metrics,
        "params": cfg.values,
        "lineage": lineage,
        "environment": environment(),
        "history": result.history,
        "epochs_run": result.epochs_run,
        "final_epoch": result.extra.get("final_epoch"),
        "stopped_early": result.stopped_early,
        "best_epoch": result.extra.get("best_epoch"),
        "data": ds.summary(),
        **({"distribute": describe_cluster(result.extra["plan"], ds.shard)} if "plan" in result.extra else {}),
        "train_time_s": round(result.train_time_s, 3),
        "wall_time_s": round(wall_time_s, 3),
    }


def write_tensorboard(directory: Any, history: list[dict[str, float]]) -> None:
    """TensorBoard event files from the recorded history: `train/` and `validation/` with one `epoch_<metric>`
    scalar per epoch (step = epoch, from 1), the layout and record format of Keras's TensorBoard callback and
    `tf.summary.scalar` (a float32 tensor with the `scalars` plugin's metadata).

    Written once after fitting, as Event protos through TFRecordWriter: under a millisecond, where the first
    `tf.summary.scalar` call costs over a second; the same figures as run.json, and nothing for a failed run.
    """
    import os
    import socket
    from pathlib import Path

    from tensorflow.core.framework import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow.core.util import event_pb2

    splits: dict[str, list[tuple[int, str, float]]] = {"train": [], "validation": []}
    for row in history:
        for key, value in row.items():
            if key == "epoch":
                continue
            split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            splits[split].append((int(row["epoch"]), f"epoch_{tag}", float(value)))
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    scalar_shape = tensor_shape_pb2.TensorShapeProto()
    now = time.time()
    for split, points in splits.items():
        if not points:
            continue
        folder = Path(directory) / split
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.v2"
        with tf.io.TFRecordWriter(str(folder / name)) as writer:
            writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
            for step, tag, value in points:
                tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[value], tensor_shape=scalar_shape)
                summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor,
                                                                                metadata=metadata)])
                writer.write(event_pb2.Event(wall_time=now, step=step, summary=summary).SerializeToString())


def _config_copy(cfg: TrainConfig, run_id: str) -> str:
    import tomli_w

    head = f"# effective config of run {run_id} (from {cfg.path.resolve()}"
    head += f", with --set {' --set '.join(cfg.overrides)})\n" if cfg.overrides else ")\n"
    return head + tomli_w.dumps(cfg.values)


@contextlib.contextmanager
def _writing(path: Any) -> Iterator[None]:
    """errors.writing for TensorFlow's writers too: a full disk is a ResourceExhaustedError there, whose text
    names the file (`... /path/variables/variables.index; No space left on device [Op:...]`)."""
    tf = load_tensorflow()
    with writing(path):
        try:
            yield
        except tf.errors.OpError as exc:
            text = str(exc.message if hasattr(exc, "message") else exc)
            if "No space left on device" not in text and "Disk quota exceeded" not in text:
                raise
            named = re.search(r"(/[^;\s]+); (?:No space left on device|Disk quota exceeded)", text)
            why = "No space left on device" if "No space" in text else "Disk quota exceeded"
            raise write_failed(named.group(1) if named else path,
                               OSError(errno.ENOSPC if "No space" in text else errno.EDQUOT, why)) from None


def run_training(store: ModelStore | None, cfg: TrainConfig, ds: Dataset, reporter: Reporter | None = None, *,
                 started: float | None = None, plan: Plan | None = None,
                 cluster_timeout: float = 120.0) -> tuple[Run | None, FitResult]:
    """Fit, export into a staging dir, and rename it into `runs/<run-id>/` only when complete.

    Under multi_worker every worker exports (saving may take part in collectives), but only the chief into the
    store: the others export into a temporary directory they remove, and return no run (`store` may be None).
    """
    import tempfile
    from pathlib import Path

    from maasctl.tf.distributed import sync_barrier
    from maasctl.tf.export import export_model

    started = time.time() if started is None else started
    t0 = time.perf_counter() - (time.time() - started)
    result = fit(cfg, ds, reporter, plan=plan, cluster_timeout=cluster_timeout)
    plan = result.extra["plan"]
    strategy = result.extra["strategy"]
    if not plan.is_chief:
        with tempfile.TemporaryDirectory(prefix="maasctl-worker-") as tmp:
            export_model(result.model, Path(tmp) / MODEL_DIR, n_features=ds.n_features, task=cfg.task)
            sync_barrier(strategy, plan)
        return None, result
    if store is None:
        raise OperationFailed("the chief needs a store to record the run")
    run_id = new_run_id()
    with contextlib.suppress(OSError):  # housekeeping must never fail a run
        store.sweep_staging()
    with store.staging() as staged:
        with _writing(staged / MODEL_DIR):
            export_model(result.model, staged / MODEL_DIR, n_features=ds.n_features, task=cfg.task)
        sync_barrier(strategy, plan)  # every worker finished: no peer can fail the run after this point
        with _writing(staged / TENSORBOARD_DIR):
            write_tensorboard(staged / TENSORBOARD_DIR, result.history)
        with writing(staged / CONFIG_COPY):
            (staged / CONFIG_COPY).write_text(_config_copy(cfg, run_id), encoding="utf-8")
        started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        record = build_record(run_id, cfg, ds, result, started_at=started_at,
                              wall_time_s=time.perf_counter() - t0)
        with writing(staged / RUN_FILE):
            write_record(staged, record)
        commit_run(store, staged, run_id)
    return load_run(store, run_id), result
