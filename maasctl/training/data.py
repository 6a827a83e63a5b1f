"""Training data: CSV, JSON Lines and NPZ files read into NumPy arrays (no TensorFlow).

The CSV fast path is one `numpy.loadtxt` pass (C parser) with a converter on the label column only; when it
fails, or finds NaN, a slow exact scan with the csv module finds the first bad cell and reports it as
`file:line: column 'x': ...`. Classification labels become ids 0..k-1 in sorted order (numeric order when
every label is a number); the class names are kept for the run record.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput, NotFound
from maasctl.store.hashing import hash_file
from maasctl.training.config import TrainConfig, check_against_data, did_you_mean, load_config
from maasctl.training.distribute import Plan, resolve
from maasctl.training.limits import check_file_lines
from maasctl.training.shard import Shard, ShardUnreadable, plan_files, rank_of
from maasctl.training.sources import data_sources


@dataclass
class Table:
    """One data file read: float features, and labels as floats (regression) or string tokens (classification)."""

    x: np.ndarray  # float32 [n, n_features]
    y: np.ndarray  # float32 [n, k] (regression), or int codes into `tokens` (classification)
    feature_names: list[str]
    tokens: list[str] | None = None  # classification: the distinct label strings, indexed by code


@dataclass
class Dataset:
    """Arrays ready for Keras plus everything the run record needs to know about them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    feature_names: list[str]
    class_names: list[str] | None
    task: str
    files: list[dict[str, Any]] = field(default_factory=list)  # [{"role", "path", "size", "sha256"}]
    reading: str = ""  # which files this process reads, for its log (under multi_worker)
    shard: Shard | None = None  # sharded by file: this worker's part (see maasctl.training.shard)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Number of classes (classification) or of regression targets."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.y_train.shape[1])

    def summary(self) -> dict[str, Any]:
        if self.shard is not None and self.shard.train_rows:  # every worker's rows
            n_val = sum(self.shard.val_rows) if self.shard.local_split else 0 if self.x_val is None else len(self.x_val)
            rows = {"train_rows": sum(self.shard.train_rows), "validation_rows": n_val}
        else:
            rows = {"train_rows": len(self.x_train), "validation_rows": 0 if self.x_val is None else len(self.x_val)}
        return {**rows,
                "n_features": self.n_features, "n_outputs": self.n_outputs, "files": self.files}

    def describe(self, validation: str = "") -> str:
        """For people, before training starts: rows, features, classes with counts or the target range."""
        n_train, n_val = len(self.x_train), 0 if self.x_val is None else len(self.x_val)
        rows = f"{n_train + n_val:,} rows ({n_train:,} training, {n_val:,} validation{validation})"
        names = ", ".join(self.feature_names[:6]) + (", ..." if len(self.feature_names) > 6 else "")
        parts = [rows, f"{self.n_features} features ({names})"]
        if self.shard is not None:  # the classes and their counts are the cluster's, known once it is up
            return f"data (this worker's shard): {'; '.join(parts)}"
        if self.class_names is not None:
            codes = [np.asarray(y).ravel().astype(np.int64) for y in (self.y_train, self.y_val) if y is not None]
            counts = np.bincount(np.concatenate(codes), minlength=len(self.class_names))
            parts.append(f"{len(self.class_names)} classes: " + ", ".join(
                f"{c} {int(n):,}" for c, n in zip(self.class_names, counts)))
        else:
            y = np.concatenate([np.asarray(v).reshape(len(v), -1) for v in (self.y_train, self.y_val) if v is not None])
            ranges = [f"{_num(float(y[:, j].min()))} to {_num(float(y[:, j].max()))}" for j in range(y.shape[1])]
            parts.append(("target " if len(ranges) == 1 else f"{len(ranges)} targets: ") + "; ".join(ranges))
        return "data: " + "; ".join(parts)


def _num(v: float) -> str:
    return f"{v:.4g}"


def prepare(config_path: str | Path, overrides: list[str] | tuple[str, ...] = (),
            env: Mapping[str, str] | None = None) -> tuple[TrainConfig, Dataset]:
    """Everything that can be checked before TensorFlow loads: the config, the data, and how they fit.

    With `env` (a training process's environment: TF_CONFIG) a multi_worker worker reads only its files when
    data.path names at least one per worker; the checks that need every worker's data come later (merge).
    """
    cfg = load_config(config_path, overrides)
    plan = resolve(cfg.train["distribute"], env) if env is not None else None
    ds = load_dataset(cfg, plan)
    if ds.shard is None:
        check_against_data(cfg, ds.n_features, ds.n_outputs, ds.class_names)
    return cfg, ds


def load_dataset(cfg: TrainConfig, plan: Plan | None = None) -> Dataset:
    """Read the training (and validation) data a config names; split, map labels, hash the files."""
    data = cfg.data
    classify = cfg.task == "classification"
    picked: dict[str, Any] = {}

    def pick(names: list[str]) -> Sequence[int]:
        assert plan is not None
        picked["mine"], picked["note"] = plan_files(plan, names, cfg.train["batch_size"])
        picked["names"] = names
        return range(len(names)) if picked["mine"] is None else picked["mine"]

    with _own_files(plan, lambda: picked.get("mine") is not None):  # e.g. its own s3:// object is missing
        sources = data_sources(cfg, "data.path", data["path"], pick if plan is not None else None)
    with _own_files(plan if picked.get("mine") is not None else None):
        paths = [_existing(cfg, "data.path", src.local) for src in sources]
        path = paths[0]
        tables = [read_table(path, cfg, features=data.get("features"))]
        tables += [read_table(p, cfg, features=tables[0].feature_names) for p in paths[1:]]
        table = concat_tables(tables)
        files = [_file_record("train", p, src.name) for src, p in zip(sources, paths)]
    val_table = None
    if "validation_path" in data:
        (vsource,) = data_sources(cfg, "data.validation_path", data["validation_path"])
        vpath = _existing(cfg, "data.validation_path", vsource.local)
        val_table = read_table(vpath, cfg, features=table.feature_names)
        files.append(_file_record("validation", vpath, vsource.name))
    if picked.get("mine") is not None:
        assert plan is not None and plan.cluster is not None
        shard = Shard(rank_of(plan.cluster), plan.n_workers, picked["names"], picked["mine"], cfg.train["batch_size"],
                      tokens=table.tokens, val_tokens=val_table.tokens if val_table is not None else None)
        with _own_files(plan):  # e.g. validation_split too large for this worker's rows
            return _shard_dataset(cfg, table, val_table, files, shard, picked["note"])
    class_names = None
    y = table.y
    y_val = val_table.y if val_table is not None else None
    if classify:
        assert table.tokens is not None
        class_names, lut = class_mapping(table.tokens)
        if len(class_names) < 2:
            raise InvalidInput(f"{path}: the label '{data.get('label', 'y')}' has a single value "
                               f"({', '.join(class_names)}); classification needs at least two classes")
        y = lut[table.y]
        if val_table is not None:
            assert val_table.tokens is not None
            index = {name: i for i, name in enumerate(class_names)}
            vnames = [canonical_label(t, numeric=_all_numeric(table.tokens)) for t in val_table.tokens]
            unseen = [n for n in vnames if n not in index]
            if unseen:
                raise InvalidInput(f"{vpath}: label '{unseen[0]}' does not occur in the training data "
                                   f"(classes: {', '.join(class_names)})")
            y_val = np.array([index[n] for n in vnames], dtype=np.int32)[val_table.y]
    x, x_val = table.x, val_table.x if val_table is not None else None
    if val_table is None and data["validation_split"] > 0:
        x, y, x_val, y_val = split(x, y, data["validation_split"], shuffle=data["shuffle"],
                                   seed=cfg.train["seed"], where=f"{cfg.path}: data.validation_split")
    return Dataset(x, y, x_val, y_val, table.feature_names, class_names, cfg.task, files,
                   reading=picked.get("note", ""))


@contextlib.contextmanager
def _own_files(plan: Plan | None, sharded: Callable[[], bool] = lambda: True) -> Iterator[None]:
    """With `plan` (sharded by file: `sharded()`, asked when it fails), bad input found in this worker's own files
    is ShardUnreadable: no other worker sees it, so `maasctl train` must tell them (they would wait for this one
    until --cluster-timeout)."""
    try:
        yield
    except (InvalidInput, NotFound) as exc:
        if plan is None or not sharded():
            raise
        raise ShardUnreadable(exc, plan) from exc


def _shard_dataset(cfg: TrainConfig, table: Table, val_table: Table | None, files: list[dict[str, Any]],
                   shard: Shard, note: str) -> Dataset:
    """This worker's rows; labels stay raw token codes until merged with the cluster's (maasctl.training.shard).
    validation_split holds out that fraction of this worker's own rows (the same rule as one process)."""
    x, y = table.x, table.y
    x_val, y_val = (val_table.x, val_table.y) if val_table is not None else (None, None)
    if val_table is None and cfg.data["validation_split"] > 0:
        mine = ", ".join(shard.names[i] for i in shard.mine)
        x, y, x_val, y_val = split(x, y, cfg.data["validation_split"], shuffle=cfg.data["shuffle"],
                                   seed=cfg.train["seed"], where=f"{cfg.path}: data.validation_split (on {mine})")
        shard.local_split = True
    return Dataset(x, y, x_val, y_val, table.feature_names, None, cfg.task, files, reading=note, shard=shard)


def _existing(cfg: TrainConfig, key: str, path: Path) -> Path:
    """`path` as data_sources resolved it (resolving it again would prefix a relative config's folder twice)."""
    if path.is_dir():
        raise InvalidInput(f"{cfg.path}: {key}: is a directory: {path}")
    if path.exists() and not path.is_file():
        raise InvalidInput(f"{cfg.path}: {key}: not a regular file (a FIFO or device can't be read twice; copy it "
                           f"to a file): {path}")
    if not path.is_file():  # a missing file is "not found" (exit 3) everywhere, as a missing config is
        raise NotFound(f"{cfg.path}: {key}: file not found: {path}")
    return path


def _file_record(role: str, path: Path, name: str | None = None) -> dict[str, Any]:
    entry = hash_file(path)
    shown = name if name and name.startswith("s3://") else str(path.resolve())
    return {"role": role, "path": shown, "size": entry.size, "sha256": entry.sha256}


def concat_tables(tables: list[Table]) -> Table:
    """Several files of one dataset as one table (their label tokens merged, in order of appearance)."""
    if len(tables) == 1:
        return tables[0]
    x = np.concatenate([t.x for t in tables])
    if tables[0].tokens is None:
        return Table(x, np.concatenate([t.y for t in tables]), tables[0].feature_names)
    index: dict[str, int] = {}
    ys = []
    for t in tables:
        assert t.tokens is not None
        lut = np.array([index.setdefault(tok, len(index)) for tok in t.tokens], dtype=np.int64)
        ys.append(lut[np.asarray(t.y, dtype=np.int64)])
    return Table(x, np.concatenate(ys), tables[0].feature_names, list(index))


def split(x: np.ndarray, y: np.ndarray, fraction: float, *, shuffle: bool, seed: int, where: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `fraction` of the rows (a seeded random subset, or the last rows when not shuffling)."""
    n = len(x)
    n_val = round(n * fraction)
    if n_val < 1 or n - n_val < 1:
        raise InvalidInput(f"{where}: {fraction} of {n} rows leaves {n - n_val} for training and {n_val} for "
                           f"validation; both need at least one row")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    tr, va = order[: n - n_val], order[n - n_val:]
    return x[tr], y[tr], x[va], y[va]


# -- labels ----------------------------------------------------------------------------------------------
def _is_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def _all_numeric(tokens: list[str]) -> bool:
    return all(_is_number(t) for t in tokens)


def canonical_label(token: str, *, numeric: bool) -> str:
    """A label's class name: numbers in their shortest form ("1.0" -> "1"), strings as written (trimmed)."""
    if not numeric or not _is_number(token):
        return token
    v = float(token)
    return str(int(v)) if v.is_integer() else repr(v)


def class_mapping(tokens: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted class names and a lookup array token code -> class id."""
    numeric = _all_numeric(tokens)
    names = {canonical_label(t, numeric=numeric) for t in tokens}
    ordered = sorted(names, key=float) if numeric else sorted(names)
    index = {n: i for i, n in enumerate(ordered)}
    lut = np.array([index[canonical_label(t, numeric=numeric)] for t in tokens], dtype=np.int32)
    return ordered, lut


# -- reading files ---------------------------------------------------------------------------------------
def read_table(path: Path, cfg: TrainConfig, *, features: list[str] | None) -> Table:
    suffix = path.suffix.lower()
    label = cfg.data.get("label")
    labels = [label] if isinstance(label, str) else list(label or [])
    classify = cfg.task == "classification"
    try:
        return _read_table(path, cfg, suffix, labels, features, classify)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason} in byte {exc.object[exc.start:exc.start + 1]!r})") \
            from None


def _read_table(path: Path, cfg: TrainConfig, suffix: str, labels: list[str], features: list[str] | None,
                classify: bool) -> Table:
    if suffix == ".csv":
        return read_csv(path, labels, features, classify=classify, delimiter=cfg.data.get("delimiter", ","))
    if suffix == ".jsonl":
        return read_jsonl(path, labels, features, classify=classify)
    return read_npz(path, labels[0] if labels else "y", features, classify=classify)


def _select(path: Path, columns: list[str], labels: list[str], features: list[str] | None,
            kind: str) -> tuple[list[int], list[int]]:
    """Indexes of the feature and label columns; errors list what the file has."""
    index: dict[str, int] = {}
    for i, c in enumerate(columns):
        if c in index:
            raise InvalidInput(f"{path}: {kind} '{c}' appears twice in the header")
        index[c] = i
    found = ", ".join(columns)
    for lab in labels:
        if lab not in index:
            raise InvalidInput(f"{path}: label {kind} '{lab}' not found{did_you_mean(lab, columns)}; "
                               f"{kind}s found: {found} (set data.label)")
    if features is None:
        feats = [i for i, c in enumerate(columns) if c not in labels]
    else:
        for f in features:
            if f not in index:
                raise InvalidInput(f"{path}: feature {kind} '{f}' not found{did_you_mean(f, columns)}; "
                                   f"{kind}s found: {found} (see data.features)")
        feats = [index[f] for f in features]
    if not feats:
        raise InvalidInput(f"{path}: no feature {kind}s (the file only has the label {kind})")
    return feats, [index[lab] for lab in labels]


def read_csv(path: Path, labels: list[str], features: list[str] | None, *, classify: bool,
             delimiter: str = ",") -> Table:
    check_file_lines(path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        header_line = f.readline()
        header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter), [])]
        if not header or header == [""]:
            raise InvalidInput(f"{path}:1: empty file; expected a header row with column names")
        if any(not h for h in header):
            raise InvalidInput(f"{path}:1: column {header.index('') + 1} of the header has no name")
        feats, labs = _select(path, header, labels, features, "column")
        codes: dict[str, int] = {}
        converters: dict[int | str, Callable[[str], Any]] | None = (
            {labs[0]: lambda s: codes.setdefault(s.strip(), len(codes))} if classify else None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
                arr = np.loadtxt(f, delimiter=delimiter, dtype=np.float32, usecols=feats + labs, ndmin=2,
                                 converters=converters, comments=None, quotechar='"', encoding=None)
        except ValueError as exc:
            _scan_csv(path, header, feats, labs, classify, delimiter)
            raise InvalidInput(f"{path}: cannot read as CSV: {exc}") from None
    if arr.shape[0] == 0:
        raise InvalidInput(f"{path}: no data rows after the header")
    x = arr[:, : len(feats)]
    if not np.isfinite(arr).all() or (classify and "" in codes):
        _scan_csv(path, header, feats, labs, classify, delimiter)
        raise InvalidInput(f"{path}: contains NaN or infinite values")  # pragma: no cover - the scan names it
    names = [header[i] for i in feats]
    if classify:
        return Table(np.ascontiguousarray(x), arr[:, -1].astype(np.int32), names, list(codes))
    return Table(np.ascontiguousarray(x), np.ascontiguousarray(arr[:, len(feats):]), names)


def _bad_number(cell: str) -> str | None:
    """Why a cell is not a usable number, or None when it is one."""
    if cell == "":
        return "empty cell (every feature cell needs a number)"
    try:
        v = float(cell)
    except ValueError:
        return f"'{cell}' is not a number"
    if not math.isfinite(v):
        return f"'{cell}' is not allowed (NaN and infinite values must be cleaned or imputed first)"
    return None


def _scan_csv(path: Path, header: list[str], feats: list[int], labs: list[int], classify: bool,
              delimiter: str) -> None:
    """Find the first bad row or cell exactly (slow; only runs when the fast path failed) and raise."""
    numeric = feats + ([] if classify else labs)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        next(reader, None)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise InvalidInput(f"{path}:{line}: expected {len(header)} columns as in the header, "
                                   f"found {len(row)}")
            for i in numeric:
                problem = _bad_number(row[i].strip())
                if problem:
                    raise InvalidInput(f"{path}:{line}: column '{header[i]}': {problem}")
            if classify and not row[labs[0]].strip():
                raise InvalidInput(f"{path}:{line}: label column '{header[labs[0]]}' is empty")


def read_jsonl(path: Path, labels: list[str], features: list[str] | None, *, classify: bool) -> Table:
    check_file_lines(path)
    objs: list[dict[str, Any]] = []
    lines: list[int] = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise InvalidInput(f"{path}:{lineno}: invalid JSON ({getattr(exc, 'msg', exc)})") from None
            if not isinstance(obj, dict):
                raise InvalidInput(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            objs.append(obj)
            lines.append(lineno)
    if not objs:
        raise InvalidInput(f"{path}: no data lines")
    keys = list(objs[0])
    feats, _ = _select(path, keys, labels, features, "key")
    names = [keys[i] for i in feats]
    try:
        x = np.array([[o[k] for k in names] for o in objs], dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError
    except (KeyError, ValueError, TypeError):
        _scan_jsonl(path, objs, lines, names, "feature")
        raise InvalidInput(f"{path}: feature values must be numbers") from None  # pragma: no cover
    for o, line in zip(objs, lines):
        for lab in labels:
            if lab not in o:
                raise InvalidInput(f"{path}:{line}: label key '{lab}' is missing")
    if classify:
        codes: dict[str, int] = {}
        y = np.empty(len(objs), dtype=np.int32)
        for r, (o, line) in enumerate(zip(objs, lines)):
            v = o[labels[0]]
            if isinstance(v, (dict, list)) or v is None or v == "":
                raise InvalidInput(f"{path}:{line}: label '{labels[0]}' must be a string or a number, "
                                   f"got {json.dumps(v)}")
            token = json.dumps(v) if isinstance(v, bool) else str(v).strip()
            y[r] = codes.setdefault(token, len(codes))
        return Table(x, y, names, list(codes))
    try:
        y = np.array([[o[lab] for lab in labels] for o in objs], dtype=np.float32)
        if not np.isfinite(y).all():
            raise ValueError
    except (ValueError, TypeError):
        _scan_jsonl(path, objs, lines, labels, "label")
        raise  # pragma: no cover
    return Table(x, y, names)


def _scan_jsonl(path: Path, objs: list[dict[str, Any]], lines: list[int], keys: list[str], role: str) -> None:
    for o, line in zip(objs, lines):
        for k in keys:
            if k not in o:
                raise InvalidInput(f"{path}:{line}: {role} key '{k}' is missing")
            v = o[k]
            if isinstance(v, str):
                raise InvalidInput(f"{path}:{line}: {role} '{k}': {json.dumps(v)} is not a number")
            if not isinstance(v, (int, float)):
                raise InvalidInput(f"{path}:{line}: {role} '{k}' is {json.dumps(v)}, expected a number")
            if not math.isfinite(v):
                raise InvalidInput(f"{path}:{line}: {role} '{k}' is not finite (NaN and infinite values are "
                                   f"not allowed)")


def read_npz(path: Path, label: str, features: list[str] | None, *, classify: bool) -> Table:
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"{path}: not a readable .npz file ({exc})") from None
    with z:
        found = ", ".join(z.files) or "none"
        for key, role in (("x", "features [rows, columns]"), (label, "labels [rows] or [rows, targets]")):
            if key not in z.files:
                raise InvalidInput(f"{path}: array '{key}' ({role}) not found; arrays found: {found}")
        try:
            x, y = z["x"], z[label]
            stored_names = [str(s) for s in z["feature_names"]] if "feature_names" in z.files else None
        except ValueError as exc:  # object arrays need pickle, which we refuse
            raise InvalidInput(f"{path}: cannot read arrays ({exc})") from None
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise InvalidInput(f"{path}: array 'x' must be numeric with shape [rows, columns], got {x.dtype} {list(x.shape)}")
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise InvalidInput(f"{path}: array '{label}' must have {len(x)} rows like 'x', got shape {list(y.shape)}")
    if len(x) == 0:
        raise InvalidInput(f"{path}: no rows")
    x = x.astype(np.float32)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = bad[0]
        raise InvalidInput(f"{path}: x[{r}, {c}] is {x[r, c]} (NaN and infinite values are not allowed)")
    if stored_names is not None:
        if len(stored_names) != x.shape[1]:
            raise InvalidInput(f"{path}: 'feature_names' has {len(stored_names)} names but 'x' has {x.shape[1]} columns")
        names = stored_names
        if features is not None:
            feats, _ = _select(path, names, [], features, "feature")
            x, names = x[:, feats], [names[i] for i in feats]
    elif features is not None:
        if len(features) != x.shape[1]:
            raise InvalidInput(f"{path}: data.features names {len(features)} features but 'x' has {x.shape[1]} "
                               f"columns (without a 'feature_names' array, data.features names every column)")
        names = list(features)
    else:
        names = [f"x{i}" for i in range(x.shape[1])]
    if classify:
        if y.ndim != 1:
            raise InvalidInput(f"{path}: classification labels '{label}' must be 1-D, got shape {list(y.shape)}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise InvalidInput(f"{path}: '{label}' contains NaN or infinite values")
        uniq, codes = np.unique(y, return_inverse=True)
        if y.dtype.kind == "S":
            tokens = [u.decode("utf-8", "replace") for u in uniq.tolist()]
        else:
            tokens = [str(u) for u in uniq.tolist()]
        return Table(x, codes.astype(np.int32), names, tokens)
    if y.dtype.kind not in "biuf":
        raise InvalidInput(f"{path}: regression targets '{label}' must be numeric, got {y.dtype}")
    y = y.astype(np.float32).reshape(len(y), -1)
    if not np.isfinite(y).all():
        raise InvalidInput(f"{path}: '{label}' contains NaN or infinite values")
    return Table(x, y, names)
