"""tf.distribute for `maasctl train`: the strategy, and a training loop that drives Keras 3 under it.

Why not `model.fit`: Keras 3's `fit` under `MultiWorkerMirroredStrategy` with more than one worker fails
(keras-team/keras#20585: "Attempt to convert a value (PerReplica...)"). tf-keras (`TF_USE_LEGACY_KERAS=1`) works,
but it is the legacy path and a second Keras: `model.builder` functions build Keras 3 models, and the export and
serving code is Keras 3. So one loop here calls the model's own `train_step` / `test_step` under
`strategy.run`: the same loss (scaled by the global batch), optimizer (all-reduced gradients), class weights and
metrics (SUM-aggregated variables) as `fit`, for "mirrored" and "multi_worker" alike. `distribute = "none"` keeps
`model.fit`. Same data order, same seed -> the same numbers as `fit` (to float rounding). Sharded by file, each
worker feeds its own zero-weight-padded rows instead (maasctl.tf.shard).

A dead or unreachable peer must be an error, not a hang: the first all-reduce waits at most `cluster_timeout`
seconds for every peer, every collective has the same timeout, and TF's peer health check runs every few
seconds (it aborts the collectives with UNAVAILABLE naming the dead task).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from maasctl.errors import OperationFailed
from maasctl.tf import load_tensorflow
from maasctl.training.distribute import Plan, missing_task

tf = load_tensorflow()

# A dead peer is noticed by the coordination service's heartbeats (TF's Python-level health check is off when
# the coordination service runs, which MultiWorkerMirroredStrategy enables): a peer is down after
# HEARTBEAT_TIMEOUT_S without a heartbeat; workers wait at most SHUTDOWN_BARRIER_S for each other on exit.
HEARTBEAT_TIMEOUT_S, SHUTDOWN_BARRIER_S = 10, 10


def _configure_coordination(plan: Plan, cluster_timeout: float) -> None:
    """Configure TF's coordination service as MultiWorkerMirroredStrategy would (it skips its own when one is
    set), with timeouts: its default waits forever for every task to register."""
    try:  # where TF 2.21 keeps it (what collective_all_reduce_strategy imports); older TFs: tsl.protobuf
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    except ImportError:  # pragma: no cover - depends on the TF version
        from tsl.protobuf import coordination_config_pb2  # type: ignore[no-redef,import-not-found]
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    if plan.cluster is None or context.context().coordination_service is not None:
        return
    spec = plan.cluster.spec
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(spec[job]))
            for job in ("chief", "worker") if job in spec]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        cluster_register_timeout_in_ms=int(cluster_timeout * 1000),
        heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
        shutdown_barrier_timeout_in_ms=SHUTDOWN_BARRIER_S * 1000, coordinated_jobs=jobs)


def _peers(plan: Plan) -> list[list[str]]:
    """[[label, host:port], ...] of every other training task."""
    cluster = plan.cluster
    if cluster is None:
        return []
    return [[f"{job} {i}", address] for job in ("chief", "worker") for i, address in enumerate(cluster.spec.get(job, []))
            if (job, i) != (cluster.task_type, cluster.task_index)]


# argv: parent pid, timeout s, message with {} for the missing peers, JSON [[label, host:port], ...]
# It prints the line, then sends SIGHUP: while this process joins, SIGHUP's handler is libc's `_exit` (see
# _exit_1_on_sighup), so this process exits with status 1 although it holds the GIL. SIGKILL is the backstop.
_WATCHDOG = """
import json, os, select, signal, socket, sys, time
pid, timeout, message, peers = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if ready:
    sys.exit(0)
missing = []
for label, address in peers:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except (OSError, ValueError):
        missing.append(f"{label} ({address})")
if select.select([sys.stdin], [], [], 0)[0]:
    sys.exit(0)  # it joined meanwhile
who = ", ".join(missing) or "the other workers (their ports answer, but they did not join)"
sys.stderr.write(message.format(who) + "\\n")
sys.stderr.flush()
os.kill(pid, signal.SIGHUP)
deadline = time.monotonic() + 5
while os.getppid() == pid and time.monotonic() < deadline:  # reparented once it is gone (no pid reuse race)
    time.sleep(0.05)
if os.getppid() == pid:
    os.kill(pid, signal.SIGKILL)
"""


@contextlib.contextmanager
def _exit_1_on_sighup() -> Iterator[None]:
    """While inside: SIGHUP ends this process at once with exit status 1, even while TF's C++ holds the GIL.

    A Python signal handler would wait for the GIL (forever, here); libc's `_exit` as the C-level handler does
    not, and receives the signal number as its argument: SIGHUP is 1 (POSIX), the status for "failed".
    """
    previous = signal.getsignal(signal.SIGHUP)
    installed = False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
        installed = libc.signal(signal.SIGHUP, ctypes.cast(libc._exit, ctypes.c_void_p)) != ctypes.c_void_p(-1).value
    except (OSError, AttributeError):  # pragma: no cover - not a POSIX libc: the watchdog's SIGKILL ends it
        pass
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)


def make_strategy(plan: Plan, cluster_timeout: float) -> Any:
    """The tf.distribute strategy for a resolved plan (records the devices it uses in plan.devices)."""
    if plan.mode == "none":
        return tf.distribute.get_strategy()
    if plan.mode == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        plan.devices[:] = devices
        return tf.distribute.MirroredStrategy(devices)
    _configure_coordination(plan, cluster_timeout)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(cluster_timeout))
    # Joining the cluster blocks in TF's C++ runtime holding the GIL: no timeout option bounds it when a peer never
    # comes (not even the coordination service's register timeout), and neither a Python thread nor a Python
    # signal handler gets to run. A tiny watchdog process does: unless this process closes its stdin in time, it
    # prints the one-line error and sends SIGHUP, which ends this process with exit status 1.
    message = f"Error: {plan.role}: could not reach {{}} within {cluster_timeout:g}s (--cluster-timeout); no run committed"
    peers = _peers(plan)
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(cluster_timeout), message,
                                 json.dumps(peers)], stdin=subprocess.PIPE)
    sys.stdout.flush()
    sys.stderr.flush()  # `_exit` flushes nothing
    with _exit_1_on_sighup():  # until the watchdog is gone: its SIGHUP must never meet the default handler
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
            sync_barrier(strategy, plan)  # every worker is up
        finally:
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            watchdog.wait()
    return strategy


def _dataset(strategy: Any, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, batch_size: int, *,
             shuffle: bool, seed: int) -> tuple[Any, Any]:
    """A distributed dataset of global batches (auto-sharded by data) and one plain batch for building."""
    parts = (x, y) if w is None else (x, y, w)
    d = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        d = d.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    d = d.batch(batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    d = d.with_options(options)
    first = tuple(tf.constant(p[:batch_size]) for p in parts)  # for building: no iterator, no shuffle buffer
    return strategy.experimental_distribute_dataset(d), first


def _sample_weights(y: np.ndarray, class_weight: dict[int, float] | None) -> np.ndarray | None:
    if class_weight is None:
        return None
    lut = np.array([class_weight.get(i, 1.0) for i in range(max(class_weight) + 1)], dtype=np.float32)
    return lut[np.asarray(y).astype(np.int64).ravel()]


def fit_loop(strategy: Any, plan: Plan, model: Any, *, x: np.ndarray, y: np.ndarray,
             validation: tuple[np.ndarray, Any] | None, batch_size: int, epochs: int, shuffle: bool,
             seed: int, class_weight: dict[int, float] | None, callbacks: list[Any],
             on_batch: Callable[[], bool], shard: Any = None) -> dict[str, list[float]]:
    """Train `model` (built and compiled under `strategy.scope()`) like `fit`; returns fit's history dict.

    `on_batch()` says whether the callbacks want per-batch logs (reading the metrics costs a sync per step).
    With `shard` (a settled maasctl.training.shard.Shard) each worker feeds only its own rows, zero-weight padded.
    """
    import keras

    weights = _sample_weights(y, class_weight)
    steps = math.ceil(len(x) / batch_size)  # the same on every worker: global batches
    val_steps = math.ceil(len(validation[0]) / batch_size) if validation is not None else 0
    train_fn, test_fn = model.train_step, model.test_step
    if shard is None:
        train_ds, first = _dataset(strategy, x, y, weights, batch_size, shuffle=shuffle, seed=seed)
    else:
        from maasctl.tf.shard import padded_dataset, replica_steps

        steps = shard.steps(shard.train_rows)
        train_ds, first = padded_dataset(strategy, plan, (x, y, weights), steps=steps, batch_size=batch_size,
                                         shuffle=shuffle, seed=seed + shard.rank)
        train_fn, test_fn = replica_steps(model, strategy)
    val_ds = None
    if validation is not None and shard is not None and shard.local_split:  # each worker holds out its own rows
        val_steps = shard.steps(shard.val_rows)
        val_ds, _ = padded_dataset(strategy, plan, (validation[0], validation[1], None), steps=val_steps,
                                   batch_size=batch_size, shuffle=False, seed=seed)
    elif validation is not None:
        val_ds, _ = _dataset(strategy, validation[0], validation[1], None, batch_size, shuffle=False, seed=seed)
        if shard is not None:  # validation_path, read whole by every worker and sharded by data
            test_fn = model.test_step
    with strategy.scope():
        model._symbolic_build(data_batch=first)  # optimizer + metric variables under the strategy (private; fit does it)

    # The iterator goes into the tf.function (as in `fit`): iterating a distributed dataset in Python costs more
    # per step than the step itself for small models.
    @tf.function
    def train_step(iterator: Any) -> None:
        strategy.run(train_fn, args=(next(iterator),))

    @tf.function
    def test_step(iterator: Any) -> None:
        strategy.run(test_fn, args=(next(iterator),))

    # Reading the metrics is an all-reduce across workers, so every worker must do it at the same steps: per-batch
    # logs only within one process; across processes the callbacks see the step without figures.
    logs_per_batch = plan.n_workers < 2
    cbs = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps, verbose=0)
    history: dict[str, list[float]] = {}
    model.stop_training = False
    want_batches = on_batch()
    try:
        cbs.on_train_begin()
        for epoch in range(epochs):
            model.reset_metrics()
            cbs.on_epoch_begin(epoch)
            iterator = iter(train_ds)
            for step in range(steps):
                train_step(iterator)
                if want_batches:
                    cbs.on_train_batch_end(step, floats(model.get_metrics_result()) if logs_per_batch else {})
            logs = floats(model.get_metrics_result())
            if val_ds is not None:
                model.reset_metrics()
                val_iterator = iter(val_ds)
                for _ in range(val_steps):
                    test_step(val_iterator)
                logs.update({f"val_{k}": v for k, v in floats(model.get_metrics_result()).items()})
            cbs.on_epoch_end(epoch, logs)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            if model.stop_training:
                break
        cbs.on_train_end()
    except PEER_ERRORS as exc:
        raise lost_peer(exc, plan, f"in epoch {len(history.get('loss', [])) + 1}") from None
    return history


PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.InternalError, tf.errors.AbortedError)


def lost_peer(exc: BaseException, plan: Plan, when: str) -> OperationFailed:
    who = missing_task(str(exc), plan.cluster) or "a peer"
    return OperationFailed(f"{plan.role}: lost {who} {when} ({type(exc).__name__}); no run committed")


def floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}


def sync_barrier(strategy: Any, plan: Plan) -> None:
    """Wait until every worker got here (a tiny all-reduce); no-op on one worker."""
    if plan.mode != "multi_worker" or plan.n_workers < 2:
        return
    try:
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
    except PEER_ERRORS as exc:
        raise lost_peer(exc, plan, "after training, while saving") from None
