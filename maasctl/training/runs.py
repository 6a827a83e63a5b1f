"""Training runs in the store: `runs/<run-id>/` holds `model/` (the exported SavedModel), `run.json`,
`config.toml` (the effective config) and `tensorboard/` (train and validation scalars per epoch).

A run is written into a staging directory and renamed into `runs/` only when complete, so an interrupted
or failed training never leaves a half run. Run ids sort by creation time: `20261123-115500-ab12cd` (UTC).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, NotFound, OperationFailed
from maasctl.store import ModelStore, RegisterResult
from maasctl.store import manifest as mf
from maasctl.store.hashing import fsync_dir

RUN_FILE = "run.json"
MODEL_DIR = "model"
CONFIG_COPY = "config.toml"
TENSORBOARD_DIR = "tensorboard"  # event files for `tensorboard --logdir <store>/runs` (written by maasctl.tf.train)
FORMAT_VERSION = 1


@dataclass
class Run:
    run_id: str
    path: Path
    model_dir: Path
    meta: dict[str, Any]  # manifest.META_KEYS: task, feature_names, class_names, metrics, params, lineage, environment
    register_name: str | None
    record: dict[str, Any]  # the whole run.json

    @property
    def config_stem(self) -> str | None:
        """The training config's file name without .toml (recorded in lineage.config_path)."""
        path = (self.meta.get("lineage") or {}).get("config_path")
        return Path(path).stem.lower() if isinstance(path, str) and path else None

    def default_name(self, given: str | None = None) -> str:
        """The model name to package/register under: `given`, else [register] name, else the config's stem."""
        from maasctl.refs import NAME_RE

        if given:
            return given
        if self.register_name:
            return self.register_name
        stem = self.config_stem
        if stem and NAME_RE.fullmatch(stem):
            return stem
        why = f"the config's file name {stem!r} is not a valid model name" if stem else "no config path is recorded"
        raise InvalidInput(f"run {self.run_id}: its config has no [register] name and {why}; pass --name NAME")

    @property
    def primary_metric(self) -> tuple[str, float] | None:
        """The one metric a run list shows: validation accuracy/loss if recorded, else the training one."""
        metrics = self.meta.get("metrics") or {}
        order = (("val_accuracy", "accuracy", "val_loss", "loss") if self.meta.get("task") == "classification"
                 else ("val_loss", "loss"))
        for key in (*order, *metrics):
            if isinstance(metrics.get(key), (int, float)):
                return key, metrics[key]
        return None

    @property
    def register_aliases(self) -> list[str]:
        return list((self.meta.get("params") or {}).get("register", {}).get("aliases", []))

    @property
    def created_at(self) -> str:
        return self.record.get("created_at", "")

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "path": str(self.path), "model_dir": str(self.model_dir), **self.record}


def new_run_id(now: float | None = None) -> str:
    """Sortable (UTC second) and unique (random suffix)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith(".") or os.sep in run_id:
        raise InvalidInput(f"{run_id!r} is not a run id (see: maasctl runs list)")


def commit_run(store: ModelStore, staged: Path, run_id: str) -> Path:
    """Rename a complete staged run (model/ + run.json) into `runs/<run_id>/`."""
    if not (staged / RUN_FILE).is_file() or not (staged / MODEL_DIR).is_dir():
        raise OperationFailed(f"{staged}: incomplete run (needs {RUN_FILE} and {MODEL_DIR}/)")
    fsync_dir(staged)
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    final = store.runs_dir / run_id
    if final.exists():
        raise OperationFailed(f"run {run_id} already exists in {store.runs_dir}")
    os.rename(staged, final)
    fsync_dir(store.runs_dir)
    return final


def write_record(directory: Path, record: dict[str, Any]) -> None:
    data = (json.dumps(record, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n").encode()
    with open(directory / RUN_FILE, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _git(base: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(base), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_lineage(config_path: Path, data_paths: list[str]) -> dict[str, Any]:
    """The config directory's git commit, and whether the config or data differ from it (None: not in git)."""
    found = _git(config_path.parent, "rev-parse", "HEAD", "--show-toplevel")
    if not found or len(found.splitlines()) != 2:
        return {"git_commit": None}
    commit, top = found.splitlines()
    inside = [p for p in (str(config_path), *data_paths) if Path(p).resolve().is_relative_to(Path(top).resolve())]
    status = _git(config_path.parent, "status", "--porcelain", "--", *inside)
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def _run_ids(store: ModelStore) -> list[str]:
    if not store.runs_dir.is_dir():
        return []
    return sorted(p.name for p in store.runs_dir.iterdir() if (p / RUN_FILE).is_file())


RUN_PREFIX_RE = re.compile(r"\d{8}-[0-9a-f-]*")  # what a (prefix of a) run id looks like: 20261125-2330...


def find_run_id(store: ModelStore, given: str) -> str:
    """The run id `given` names: itself, or the one run id it is a unique prefix of (several: InvalidInput)."""
    _check_run_id(given)
    if (store.runs_dir / given / RUN_FILE).is_file():
        return given
    matches = [r for r in _run_ids(store) if r.startswith(given)]
    if len(matches) > 1:
        raise InvalidInput(f"'{given}' matches several runs ({', '.join(matches)}); give more of the id")
    return matches[0] if matches else given


def is_run_ref(store: ModelStore, source: str) -> bool:
    """Whether SOURCE (of package/register) names a run: a run id, or a unique-or-not prefix shaped like one."""
    if "@" in source or "/" in source or source.startswith("."):
        return False
    if (store.runs_dir / source).is_dir():
        return True
    return bool(RUN_PREFIX_RE.fullmatch(source)) and any(r.startswith(source) for r in _run_ids(store))


def load_run(store: ModelStore, run_id: str) -> Run:
    """Read one run (given by its id or a unique prefix of it); NotFound lists the most recent run ids."""
    run_id = find_run_id(store, run_id)
    path = store.runs_dir / run_id
    file = path / RUN_FILE
    try:
        record = json.loads(file.read_bytes())
    except FileNotFoundError:
        recent = _run_ids(store)[-5:]
        hint = f"recent runs: {', '.join(reversed(recent))}" if recent else f"no runs in {store.root}"
        raise NotFound(f"run '{run_id}' not found ({hint}; see: maasctl runs list)") from None
    except ValueError as exc:
        raise OperationFailed(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise OperationFailed(f"{file}: expected a JSON object")
    meta = {k: record[k] for k in mf.META_KEYS if record.get(k) is not None}
    name = ((record.get("params") or {}).get("register") or {}).get("name")
    return Run(run_id, path, path / MODEL_DIR, meta, name, record)


def list_runs(store: ModelStore) -> list[Run]:
    """Every complete run, oldest first."""
    runs = []
    for run_id in _run_ids(store):
        try:
            runs.append(load_run(store, run_id))
        except (NotFound, OperationFailed):
            continue  # removed meanwhile, or damaged: `runs show` reports it
    return runs


def runs_in_use(store: ModelStore) -> set[str]:
    """Run ids that a live registered version came from (lineage.run_id)."""
    used = set()
    for m in store.list_models():
        for v in store.list_versions(m.name):
            run_id = (v.lineage or {}).get("run_id")
            if isinstance(run_id, str):
                used.add(run_id)
    return used


def _created(run: Run) -> float:
    """The run's creation time (epoch seconds): its record, else the time in its id."""
    import calendar

    for text, fmt in ((run.created_at, "%Y-%m-%dT%H:%M:%SZ"), (run.run_id[:15], "%Y%m%d-%H%M%S")):
        try:
            return calendar.timegm(time.strptime(text[:20], fmt))
        except (ValueError, TypeError):
            continue
    return time.time()


def unused_runs_older_than(store: ModelStore, days: float, now: float | None = None) -> list[Run]:
    """Runs created more than `days` ago that no live version came from (what `gc --runs-older-than` removes)."""
    if days < 0:
        raise InvalidInput(f"--runs-older-than must be at least 0 days (got {days:g})")
    cutoff = (time.time() if now is None else now) - days * 86400
    used = runs_in_use(store)
    return [r for r in list_runs(store) if r.run_id not in used and _created(r) < cutoff]


def _discard(store: ModelStore, path: Path) -> None:
    """Move a run out of runs/ first (into the store's local staging, swept if we die), then delete it."""
    import shutil
    import uuid

    store.staging_root.mkdir(parents=True, exist_ok=True)
    trash = store.staging_root / f"trash-{uuid.uuid4().hex[:12]}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_runs(store: ModelStore, run_ids: list[str], *, dry_run: bool = False) -> list[str]:
    """Remove runs (ids or unique prefixes); all are found first, so a typo removes nothing. Versions
    registered from a run are copies and stay."""
    found = [find_run_id(store, r) for r in run_ids]
    for given, run_id in zip(run_ids, found):
        if not (store.runs_dir / run_id / RUN_FILE).is_file():
            load_run(store, given)  # raises NotFound with the recent ids
    removed = []
    for run_id in dict.fromkeys(found):
        if not dry_run:
            _discard(store, store.runs_dir / run_id)
        removed.append(run_id)
    return removed


def register_run(store: ModelStore, run_id: str, name: str | None, **options: Any) -> RegisterResult:
    """Register a run's model as NAME@N (name and aliases default to the config's [register] section)."""
    run = load_run(store, run_id)
    run_id = run.run_id  # the full id when a prefix was given
    name = run.default_name(name)
    if not run.model_dir.is_dir():
        raise OperationFailed(f"run {run_id}: {run.model_dir} is missing")
    reg = (run.meta.get("params") or {}).get("register") or {}
    options = dict(options)
    if not options.get("aliases"):
        options["aliases"] = list(reg.get("aliases", []))
    if not options.get("description") and reg.get("description"):
        options["description"] = reg["description"]
    if reg.get("tags"):
        options["tags"] = {**reg["tags"], **(options.get("tags") or {})}
    options.setdefault("source_label", f"run {run_id}")
    meta = {k: v for k, v in run.meta.items() if k in mf.META_KEYS}
    return store.register(run.model_dir, name, meta=meta, **options)
