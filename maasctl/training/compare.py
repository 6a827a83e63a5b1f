"""Reading runs side by side: per-epoch series, final metrics, the params that differ, data/config digests.

Pure data (no TensorFlow, no rendering): `runs show --plot`, `runs compare` and the web view (maasctl.ui) all
read their figures from here.
"""

from __future__ import annotations

from typing import Any

from maasctl.errors import InvalidInput
from maasctl.training.runs import Run

_MISSING = object()


def metric_names(run: Run) -> list[str]:
    """The base metrics of a run's history, loss first (`loss`, `accuracy`; `val_` folded into its base)."""
    names: list[str] = []
    for row in run.record.get("history") or []:
        for key in row:
            if key == "epoch":
                continue
            base = key.removeprefix("val_")
            if base not in names:
                names.append(base)
    return sorted(names, key=lambda n: (n != "loss", names.index(n)))


def series(run: Run, key: str) -> list[tuple[int, float]]:
    """(epoch, value) for one history key (`loss`, `val_loss` ...), epochs where it was recorded."""
    return [(int(row["epoch"]), float(row[key])) for row in run.record.get("history") or []
            if key in row and row[key] is not None]


def curves(run: Run, metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """Per base metric: its train and validation series (`validation` is empty without validation data)."""
    out = []
    for name in metrics or metric_names(run):
        out.append({"metric": name, "train": series(run, name), "validation": series(run, f"val_{name}")})
    return out


def check_metric(runs: list[Run], metric: str) -> None:
    known = sorted({m for r in runs for m in metric_names(r)})
    if metric.removeprefix("val_") not in known:
        raise InvalidInput(f"--metric {metric!r}: no run has it in its history (metrics: {', '.join(known) or 'none'})")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys as `--set` takes them: `train.epochs`, `model.layers[0].units`."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def differing_params(runs: list[Run]) -> dict[str, list[Any]]:
    """Each effective-config key whose value is not the same in every run -> its value per run (None: absent)."""
    flat = [flatten(r.record.get("params") or {}) for r in runs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    out = {}
    for key in keys:
        values = [f.get(key, _MISSING) for f in flat]
        if any(v != values[0] or (v is _MISSING) != (values[0] is _MISSING) for v in values[1:]):
            out[key] = [None if v is _MISSING else v for v in values]
    return out


def digests(run: Run) -> dict[str, Any]:
    lin = run.record.get("lineage") or {}
    return {"config_sha256": lin.get("config_sha256"), "data_sha256": lin.get("data_sha256"),
            "validation_sha256": lin.get("validation_sha256")}


def compare(runs: list[Run], metric: str | None = None) -> dict[str, Any]:
    """The document behind `runs compare --json`: one entry per run, the differing params, the series of `metric`
    (train and validation) per run."""
    if len(runs) < 2:
        raise InvalidInput("runs compare needs at least two runs (see: maasctl runs list)")
    ids = [r.run_id for r in runs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InvalidInput(f"run {dupes[0]} is given twice")
    if metric is None:
        metric = "loss"
    else:
        check_metric(runs, metric)
    base = metric.removeprefix("val_")
    return {
        "metric": metric,
        "runs": [{"run_id": r.run_id, "created_at": r.created_at, "task": r.record.get("task"),
                  "epochs_run": r.record.get("epochs_run"), "metrics": r.record.get("metrics") or {},
                  **digests(r)} for r in runs],
        "params_differ": differing_params(runs),
        "series": {r.run_id: {"epoch": [e for e, _ in series(r, base)], base: [v for _, v in series(r, base)],
                              f"val_{base}": [v for _, v in series(r, f"val_{base}")]} for r in runs},
    }
