"""Which tf.distribute strategy a training process uses, and what its role is (no TensorFlow).

`[train] distribute` is "auto" | "none" | "mirrored" | "multi_worker". "auto" reads the cluster the way TFJob,
Vertex AI and SageMaker describe it, in the `TF_CONFIG` environment variable: `multi_worker` when it names more
than one task in chief/worker jobs, else `mirrored` when more than one GPU is visible, else `none`.

The chief writes (commits the run, exports, registers); every other worker trains in lockstep and writes
nothing. The chief is task `chief` 0, or `worker` 0 when the cluster has no chief.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from maasctl.errors import InvalidInput

MODES = ("auto", "none", "mirrored", "multi_worker")
# Jobs that run the training step (an "evaluator" or "ps" task does not; parameter servers are not supported).
TRAINING_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """A parsed TF_CONFIG: the cluster spec and this process's task."""

    spec: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def n_workers(self) -> int:
        """Tasks that train (chief + workers)."""
        return sum(len(self.spec.get(job, [])) for job in TRAINING_JOBS)

    @property
    def is_chief(self) -> bool:
        if "chief" in self.spec:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def role(self) -> str:
        """For logs: "chief", "worker 1" ... (worker 0 without a chief job is the chief)."""
        if self.task_type == "chief" or self.is_chief:
            return "chief"
        return f"{self.task_type} {self.task_index}"

    def address_of(self, task_type: str, index: int) -> str | None:
        tasks = self.spec.get(task_type) or []
        return tasks[index] if 0 <= index < len(tasks) else None


@dataclass(frozen=True)
class Plan:
    """The resolved strategy for this process."""

    mode: str  # "none" | "mirrored" | "multi_worker"
    cluster: Cluster | None = None
    why: str = ""
    devices: list[str] = field(default_factory=list)

    @property
    def is_chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def role(self) -> str:
        return self.cluster.role if self.cluster is not None else "chief"

    @property
    def n_workers(self) -> int:
        return self.cluster.n_workers if self.cluster is not None else 1


def _bad(problem: str) -> InvalidInput:
    return InvalidInput(f"TF_CONFIG: {problem}")


def parse_tf_config(text: str | None) -> Cluster | None:
    """The cluster named by TF_CONFIG's JSON, or None when it is unset/empty or names no cluster."""
    if text is None or not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(doc, dict):
        raise _bad(f"expected a JSON object with \"cluster\" and \"task\", got {type(doc).__name__}")
    cluster = doc.get("cluster")
    if not cluster:
        return None
    if not isinstance(cluster, dict):
        raise _bad("\"cluster\" must be an object of job name -> list of host:port")
    spec: dict[str, list[str]] = {}
    for job, tasks in cluster.items():
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and ":" in t for t in tasks):
            raise _bad(f"cluster.{job} must be a non-empty list of \"host:port\" strings, got {json.dumps(tasks)}")
        spec[str(job)] = list(tasks)
    if "chief" in spec and len(spec["chief"]) != 1:
        raise _bad(f"cluster.chief must have exactly one task, got {len(spec['chief'])}")
    if not any(job in spec for job in TRAINING_JOBS):
        raise _bad(f"the cluster has no \"chief\" or \"worker\" job (jobs: {', '.join(spec)})")
    task = doc.get("task")
    if not isinstance(task, dict):
        raise _bad("\"task\" is missing: expected {\"type\": \"worker\", \"index\": 0}")
    task_type, index = task.get("type"), task.get("index", 0)
    if not isinstance(task_type, str) or task_type not in spec:
        raise _bad(f"task.type {json.dumps(task_type)} is not a job of the cluster ({', '.join(spec)})")
    if task_type not in TRAINING_JOBS:
        raise _bad(f"task.type \"{task_type}\" does not train; maasctl supports chief and worker tasks")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(spec[task_type]):
        raise _bad(f"task.index {json.dumps(index)} is out of range for cluster.{task_type} "
                   f"({len(spec[task_type])} task(s))")
    return Cluster(spec, task_type, index)


def resolve(mode: str, env: Mapping[str, str], gpu_count: Callable[[], int] = lambda: 0) -> Plan:
    """The strategy for `[train] distribute = mode` in this environment (`gpu_count` is asked only when needed)."""
    if mode not in MODES:
        raise InvalidInput(f"train.distribute: expected one of {', '.join(MODES)}, got {mode!r}")
    cluster = parse_tf_config(env.get("TF_CONFIG"))
    if mode == "multi_worker":
        if cluster is None:
            return Plan("multi_worker", None, "distribute = \"multi_worker\" without TF_CONFIG: one worker")
        return Plan("multi_worker", cluster, f"TF_CONFIG: {cluster.n_workers} worker(s)")
    if mode in ("none", "mirrored") and cluster is not None and cluster.n_workers > 1:
        raise InvalidInput(f"train.distribute = \"{mode}\" but TF_CONFIG names a cluster of {cluster.n_workers} "
                           f"workers: every worker would train alone; use \"auto\" or \"multi_worker\"")
    if mode == "none":
        return Plan("none", None, "distribute = \"none\"")
    if mode == "mirrored":
        return Plan("mirrored", None, "distribute = \"mirrored\"")
    if cluster is not None and cluster.n_workers > 1:
        return Plan("multi_worker", cluster, f"auto: TF_CONFIG names {cluster.n_workers} workers")
    gpus = gpu_count()
    if gpus > 1:
        return Plan("mirrored", None, f"auto: {gpus} GPUs visible")
    return Plan("none", None, "auto: one worker, at most one GPU")


def local_tf_configs(n: int, ports: list[int], host: str = "127.0.0.1") -> list[str]:
    """TF_CONFIG for each of `n` local workers (worker 0 is the chief), as a launcher sets them."""
    workers = [f"{host}:{p}" for p in ports[:n]]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}) for i in range(n)]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports that were free a moment ago (bound together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def missing_task(message: str, me: Cluster | None) -> str | None:
    """The peer a TF collective error blames ("worker 1 (127.0.0.1:2223)"), not counting this process."""
    found: list[tuple[str, int]] = [(job, int(i)) for job, i in _TASK.findall(message)]
    others = [t for t in found if me is None or t != (me.task_type, me.task_index)]
    if not others:
        return None
    job, index = others[-1]
    address = me.address_of(job, index) if me is not None else None
    return f"{job} {index}" + (f" ({address})" if address else "")


def describe_cluster(plan: Plan, shard: Any = None) -> dict[str, Any]:
    """For the run record: how the run was distributed (`shard`: a maasctl.training.shard.Shard when sharded by
    file: which files each worker read and its training rows)."""
    out: dict[str, Any] = {"mode": plan.mode, "workers": plan.n_workers}
    if plan.devices:
        out["devices"] = list(plan.devices)
    if shard is not None:  # the names as the config gave them, absolute (as the lineage's data_files)
        from pathlib import Path

        n = shard.n_workers
        names = [name if name.startswith("s3://") else str(Path(name).resolve()) for name in shard.names]
        out.update({"shard": "file", "worker_files": [names[r::n] for r in range(n)],
                    "worker_train_rows": list(shard.train_rows)})
    return out
