"""Sharding the training data by file under multi_worker (no TensorFlow).

With W workers and at least W files in `data.path` (a list or a glob), worker r reads only files[r::W] (in the
order data.path names them, a glob's matches sorted). What must still hold across the cluster is settled once
the workers can talk (maasctl.tf.shard): the label vocabulary, the row counts (every worker runs the same number
of steps), the Normalization statistics and the class counts for "balanced" class weights are global.

Why zero-weight padding: a worker with fewer rows pads its shard with rows of sample weight 0 up to the common
step count, so every replica's batch has exactly batch_size / replicas rows. Keras divides each replica's weighted
loss sum by its batch length and sums the replicas' gradients, so every step's gradient is (1/batch_size) times
the sum over the real rows of the global batch: TensorFlow's recommended scaling (`compute_average_loss` with
the global batch size), and exactly Keras's `fit` for a full batch. The reported loss and metrics count the real
rows only (maasctl.tf.shard.replica_steps). Repeating rows instead would count some rows twice per epoch and tilt
the objective toward the smaller shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput, MaasError, NotFound, OperationFailed
from maasctl.training.distribute import Cluster, Plan


@dataclass
class Shard:
    """This worker's part of the data, and (after `merge`) the cluster's figures about all parts."""

    rank: int
    n_workers: int
    names: list[str]  # every file data.path names, in order
    mine: list[int]  # indexes into `names` that this worker reads
    batch_size: int  # the global batch
    tokens: list[str] | None = None  # classification, until merged: raw label tokens indexed by y_train codes
    val_tokens: list[str] | None = None  # ... and by y_val codes (validation_path)
    local_split: bool = False  # validation_split was held out of this worker's own rows
    train_rows: list[int] = field(default_factory=list)  # per worker, after the all-reduce
    val_rows: list[int] = field(default_factory=list)
    class_counts: np.ndarray | None = None  # global training rows per class
    norm: tuple[np.ndarray, np.ndarray] | None = None  # global mean and variance of the training features

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.n_workers

    def steps(self, rows: list[int]) -> int:
        """Steps per epoch: the same on every worker (the largest shard's), so nobody waits in an all-reduce."""
        return max(1, math.ceil(max(rows) / self.per_worker_batch))


class ShardUnreadable(MaasError):
    """This worker could not read its own files (its message and exit status are those of `cause`).

    Only this worker sees it: the others would wait for it until --cluster-timeout and then report that they
    could not reach it. So `maasctl train` joins the cluster anyway and posts `error_doc` as its shard report
    (maasctl.tf.shard.report_unreadable); every other worker then fails with `reported_failure`.
    """

    def __init__(self, cause: MaasError, plan: Plan) -> None:
        super().__init__(str(cause))
        self.cause, self.plan = cause, plan
        self.exit_code, self.http_status = cause.exit_code, cause.http_status


def error_doc(exc: ShardUnreadable) -> dict[str, Any]:
    """The shard report of a worker that could not read its files (JSON)."""
    assert exc.plan.cluster is not None
    return {"rank": rank_of(exc.plan.cluster), "role": exc.plan.role, "error": str(exc.cause), "exit": exc.exit_code}


def reported_failure(plan: Plan, docs: list[dict[str, Any]]) -> MaasError | None:
    """The error for this worker when another one reported that it could not read its files (the first such, by
    rank), with that worker's exit status; None when every worker read its files."""
    failed = next((doc for doc in docs if "error" in doc), None)
    if failed is None:
        return None
    assert plan.cluster is not None
    kind = {2: InvalidInput, 3: NotFound}.get(failed["exit"], OperationFailed)
    return kind(f"{plan.role}: {task_of_rank(plan.cluster, failed['rank'])} could not read its data: "
                f"{failed['error']}; no run committed")


def rank_of(cluster: Cluster) -> int:
    """0 for the chief, then the workers in order (worker i is i + 1 when there is a chief job)."""
    if cluster.task_type == "chief":
        return 0
    return cluster.task_index + (1 if "chief" in cluster.spec else 0)


def task_of_rank(cluster: Cluster, rank: int) -> str:
    """The task `rank_of` numbers `rank`, for messages: "worker 1 (10.0.0.5:2222)"."""
    job, index = ("chief", 0) if "chief" in cluster.spec and rank == 0 else \
        ("worker", rank - (1 if "chief" in cluster.spec else 0))
    address = cluster.address_of(job, index)
    return f"{job} {index}" + (f" ({address})" if address else "")


def plan_files(plan: Plan, names: list[str], batch_size: int) -> tuple[list[int] | None, str]:
    """This worker's file indexes (None: it reads every file, batches are sharded by data) and the log line."""
    cluster, n = plan.cluster, plan.n_workers
    everything = f"reads every file ({', '.join(names)})"
    if plan.mode != "multi_worker" or cluster is None or n < 2:
        return None, everything
    if len(names) < n:
        return None, (f"{everything}: {len(names)} file{'s' if len(names) != 1 else ''} for {n} workers, so "
                      f"batches are sharded by data")
    if batch_size % n:
        return None, (f"{everything}: train.batch_size {batch_size} is not a multiple of the {n} workers, so "
                      f"batches are sharded by data")
    rank = rank_of(cluster)
    mine = list(range(rank, len(names), n))
    return mine, (f"reads {len(mine)} of {len(names)} files (sharded by file): "
                  f"{', '.join(names[i] for i in mine)}")


def _base(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def shard_doc(ds: Any, role: str | None = None) -> dict[str, Any]:
    """What this worker tells the others about its shard (JSON): `names` are the files data.path named here (file
    names only: each host may keep the data in another folder)."""
    shard = ds.shard
    return {"rank": shard.rank, "role": role or f"rank {shard.rank}", "names": [_base(n) for n in shard.names],
            "files": [f for f in ds.files if f["role"] == "train"],
            "features": ds.feature_names, "tokens": shard.tokens,
            "n_outputs": None if shard.tokens is not None else int(ds.y_train.shape[1])}


def merge(cfg: Any, ds: Any, docs: list[dict[str, Any]]) -> None:
    """Make this worker's Dataset agree with the cluster (`docs`: every worker's shard_doc, in rank order): the
    lineage lists every worker's files, and classification labels become the global class ids."""
    from maasctl.training.data import _all_numeric, canonical_label, class_mapping

    shard = ds.shard
    first = docs[0]
    for doc in docs[1:]:  # worker r reads files r::W of the list: a worker that lists others reads the wrong ones
        if doc["names"] != first["names"]:
            a, b = first["names"], doc["names"]
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            what = (f"file {i + 1} is {b[i]} there but {a[i]} on {first['role']}" if i < min(len(a), len(b)) else
                    f"{len(b)} files there but {len(a)} on {first['role']}")
            raise InvalidInput(f"{cfg.path}: data.path: {doc['role']} lists other files than {first['role']} ({what}); "
                               f"sharding by file needs every worker to list the same files")
        # As in one process, the first file's feature columns are the dataset's; other files may name them in
        # another order (or have more columns): selected by name.
        missing = [name for name in first["features"] if name not in doc["features"]]
        if missing:
            raise InvalidInput(f"{doc['files'][0]['path']}: feature column '{missing[0]}' (of "
                               f"{first['files'][0]['path']}) not found; feature columns found: "
                               f"{', '.join(doc['features'])}")
        if doc["n_outputs"] != first["n_outputs"]:
            raise InvalidInput(f"{doc['files'][0]['path']}: {doc['n_outputs']} regression targets, but "
                               f"{first['files'][0]['path']} has {first['n_outputs']}")
    if ds.feature_names != first["features"]:  # this worker's columns in the first file's order
        columns = [ds.feature_names.index(name) for name in first["features"]]
        ds.x_train = np.ascontiguousarray(ds.x_train[:, columns])
        if ds.x_val is not None:
            ds.x_val = np.ascontiguousarray(ds.x_val[:, columns])
        ds.feature_names = list(first["features"])
    n = shard.n_workers
    files = [docs[j % n]["files"][j // n] for j in range(len(shard.names))]
    ds.files = files + [f for f in ds.files if f["role"] != "train"]
    if shard.tokens is None:
        return
    every = [t for doc in docs for t in doc["tokens"]]
    class_names, _ = class_mapping(every)
    if len(class_names) < 2:
        raise InvalidInput(f"{files[0]['path']}: the label '{cfg.data.get('label', 'y')}' has a single value in "
                           f"all files ({', '.join(class_names)}); classification needs at least two classes")
    numeric = _all_numeric(every)
    index = {name: i for i, name in enumerate(class_names)}
    lut = np.array([index[canonical_label(t, numeric=numeric)] for t in shard.tokens], dtype=np.int32)
    ds.y_train = lut[np.asarray(ds.y_train, dtype=np.int64)]
    if ds.y_val is not None:
        tokens = shard.tokens if shard.val_tokens is None else shard.val_tokens
        names = [canonical_label(t, numeric=numeric) for t in tokens]
        unseen = [name for name in names if name not in index]
        if unseen:
            where = next(f["path"] for f in ds.files if f["role"] == "validation") if shard.val_tokens else "validation"
            raise InvalidInput(f"{where}: label '{unseen[0]}' does not occur in the training data "
                               f"(classes: {', '.join(class_names)})")
        ds.y_val = np.array([index[name] for name in names], dtype=np.int32)[np.asarray(ds.y_val, dtype=np.int64)]
    ds.class_names = class_names
    shard.tokens = shard.val_tokens = None

