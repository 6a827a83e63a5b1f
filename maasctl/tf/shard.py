"""Sharding by file, the cluster's side (see maasctl.training.shard): once every worker has joined, they agree on
the data through the cluster, then each feeds only its own rows, padded with zero-weight rows to a common step
count.

- The label vocabulary, feature columns and file records (for the lineage) are small JSON documents exchanged
  through the coordination service's key-value store (strings cannot be all-reduced).
- The row counts, the feature sums and sums of squared deviations (Normalization's mean and variance, two passes
  for precision) and the class counts (for "balanced" class weights) are all-reduced (SUM) through the strategy,
  in float64: every worker ends with the same figures, those of all shards together.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import numpy as np

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.tf import load_tensorflow
from maasctl.tf.distributed import PEER_ERRORS, lost_peer, make_strategy
from maasctl.training.config import TrainConfig, check_against_data
from maasctl.training.data import Dataset
from maasctl.training.distribute import Plan
from maasctl.training.shard import ShardUnreadable, error_doc, merge, reported_failure, shard_doc, task_of_rank

tf = load_tensorflow()

_KEY = "maasctl/shard/{}"


def all_sum(strategy: Any, plan: Plan, values: np.ndarray) -> np.ndarray:
    """The element-wise sum of `values` over the workers (one all-reduce; each worker counted once, however many
    local replicas it has)."""
    local = max(1, strategy.num_replicas_in_sync // plan.n_workers)
    zeros = np.zeros_like(values)

    def value(ctx: Any) -> Any:
        return tf.constant(values if ctx.replica_id_in_sync_group % local == 0 else zeros)

    per_replica = strategy.experimental_distribute_values_from_function(value)
    return np.asarray(strategy.reduce("SUM", per_replica, axis=None))


def _exchange(strategy: Any, plan: Plan, doc: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    """Every worker's shard_doc, in rank order. Returns only once every worker has read them all: a worker that
    then finds bad data (merge) raises the same error as the others and exits, and the chief's exit takes the
    coordination service with it; a worker still reading would get UnavailableError instead of that error."""
    from tensorflow.python.eager import context

    ctx = context.context()
    try:
        ctx.set_config_key_value(_KEY.format(doc["rank"]), json.dumps(doc))
    except PEER_ERRORS as exc:
        raise lost_peer(exc, plan, "while reporting its data shard") from None
    docs = []
    for rank in range(plan.n_workers):
        try:
            docs.append(json.loads(ctx.get_config_key_value(_KEY.format(rank), timeout_in_ms=int(timeout_s * 1000))))
        except PEER_ERRORS as exc:
            assert plan.cluster is not None
            raise OperationFailed(f"{plan.role}: no report of its data shard from {task_of_rank(plan.cluster, rank)} "
                                  f"within {timeout_s:g}s (--cluster-timeout; {type(exc).__name__}); "
                                  f"no run committed") from None
    try:
        all_sum(strategy, plan, np.zeros(1))  # everyone has read every report
    except PEER_ERRORS as exc:
        raise lost_peer(exc, plan, "while exchanging the data shards") from None
    return docs


def report_unreadable(exc: ShardUnreadable, timeout_s: float) -> NoReturn:
    """This worker could not read its own files: join the cluster anyway (when that fails, make_strategy's
    error), post the error as its shard report, wait until every worker has read every report (as in `settle`),
    then fail with the error. The others fail with `reported_failure` instead of waiting for this worker."""
    strategy = make_strategy(exc.plan, timeout_s)
    _exchange(strategy, exc.plan, error_doc(exc), timeout_s)
    raise exc.cause from None


def settle(strategy: Any, plan: Plan, cfg: TrainConfig, ds: Dataset, timeout_s: float) -> None:
    """Make this worker's shard agree with the cluster: global classes, row counts, statistics (in place)."""
    shard = ds.shard
    assert shard is not None
    docs = _exchange(strategy, plan, shard_doc(ds, plan.role), timeout_s)
    failure = reported_failure(plan, docs)
    if failure is not None:  # another worker could not read its files
        raise failure
    merge(cfg, ds, docs)
    check_against_data(cfg, ds.n_features, ds.n_outputs, ds.class_names)
    n, f = shard.n_workers, ds.n_features
    k = len(ds.class_names) if ds.class_names is not None else 0
    x = ds.x_train
    local = np.zeros(2 * n + f + k)
    local[shard.rank] = len(x)
    local[n + shard.rank] = 0 if ds.x_val is None else len(ds.x_val)
    local[2 * n:2 * n + f] = x.sum(axis=0, dtype=np.float64)
    if k:
        local[2 * n + f:] = np.bincount(np.asarray(ds.y_train, dtype=np.int64).ravel(), minlength=k)
    try:
        total = all_sum(strategy, plan, local)
        shard.train_rows = [int(v) for v in total[:n]]
        shard.val_rows = [int(v) for v in total[n:2 * n]]
        if cfg.model["normalize"]:  # the same config on every worker: all of them take this all-reduce or none
            mean = total[2 * n:2 * n + f] / sum(shard.train_rows)
            deviations = ((x - mean) ** 2).sum(axis=0, dtype=np.float64)
            variance = all_sum(strategy, plan, deviations) / sum(shard.train_rows)
            shard.norm = (mean.astype(np.float32), variance.astype(np.float32))
    except PEER_ERRORS as exc:
        raise lost_peer(exc, plan, "while merging the data shards") from None
    if k:
        shard.class_counts = total[2 * n + f:].astype(np.int64)


def padded_dataset(strategy: Any, plan: Plan, parts: tuple[np.ndarray, np.ndarray, np.ndarray | None], *,
                   steps: int, batch_size: int, shuffle: bool, seed: int) -> tuple[Any, Any]:
    """This worker's rows as `steps` batches per replica of exactly batch_size / replicas rows, the real rows
    (shuffled with the seed) then padding rows of weight 0 and mask 0: (x, y, weight, mask); and one local batch
    for building the model."""
    x, y, w = parts
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise InvalidInput(f"train.batch_size {batch_size} is not a multiple of the {replicas} replicas "
                           f"(sharding by file gives every replica the same number of rows)")
    per_replica = batch_size // replicas
    rows = steps * (replicas // plan.n_workers) * per_replica
    w = np.ones(len(x), dtype=np.float32) if w is None else np.asarray(w, dtype=np.float32)
    pad = rows - len(x)

    def make(_: Any = None) -> Any:
        d = tf.data.Dataset.from_tensor_slices((x, y, w, np.ones(len(x), np.float32)))
        if shuffle:
            d = d.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        if pad:
            zeros = np.zeros(pad, np.float32)
            d = d.concatenate(tf.data.Dataset.from_tensor_slices(
                (np.zeros((pad, *x.shape[1:]), x.dtype), np.zeros((pad, *np.shape(y)[1:]), np.asarray(y).dtype),
                 zeros, zeros)))
        d = d.batch(per_replica, drop_remainder=True)
        options = tf.data.Options()
        options.deterministic = True
        return d.with_options(options)

    first = tuple(tf.constant(np.asarray(p)[:per_replica]) for p in (x, y, w))  # for building: no pipeline
    return strategy.distribute_datasets_from_function(make), first


def replica_steps(model: Any, strategy: Any) -> tuple[Any, Any]:
    """Keras 3's train_step and test_step for padded batches (x, y, weight, mask).

    The loss and its gradient are Keras's own (padding has weight 0, and Keras divides by the batch length:
    1/batch_size per real row, see maasctl.training.shard). What differs is the bookkeeping: the loss tracker
    averages over the real rows only, and the compiled metrics (unweighted in Keras 3) see only the real rows, so
    the figures are those `fit` reports over the same rows. (A regularization loss is counted per row of the
    batch, padding included: a small overcount in an epoch's padded batches.)
    """
    replicas = strategy.num_replicas_in_sync

    def track(x: Any, y: Any, y_pred: Any, w: Any, m: Any, loss: Any) -> None:
        real = tf.reduce_sum(m)
        unscaled = loss * replicas * tf.cast(tf.shape(m)[0], loss.dtype)  # the sum of weighted losses (+ reg.)
        model._loss_tracker.update_state(tf.math.divide_no_nan(unscaled, real), sample_weight=real)
        keep = m > 0
        model.compute_metrics(x, tf.boolean_mask(y, keep), tf.boolean_mask(y_pred, keep),
                              sample_weight=tf.boolean_mask(w, keep))

    def train(data: Any) -> None:
        x, y, w, m = data
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=True)
            track(x, y, y_pred, w, m, loss)
            scaled = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_weights)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))

    def test(data: Any) -> None:
        x, y, w, m = data
        y_pred = model(x, training=False)
        track(x, y, y_pred, w, m, model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=False))

    return train, test
