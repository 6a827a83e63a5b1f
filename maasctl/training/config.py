"""The training config (TOML): load, apply `--set` overrides, validate everything, fill defaults.

Pure Python on purpose: a bad key fails in milliseconds, before TensorFlow loads. Every error is one line
naming the file, the key as a dotted path (`model.layers[1].units`) and what was expected.
The full reference is README.md, "Training config reference".
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from maasctl.errors import InvalidInput, NotFound
from maasctl.refs import check_alias, check_name
from maasctl.training.distribute import MODES
from maasctl.training.sources import is_glob

TASKS = ("classification", "regression")
DATA_SUFFIXES = (".csv", ".jsonl", ".npz")
# Names accepted by train.optimizer (lower case) -> keras.optimizers class name.
OPTIMIZERS = {
    "adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion",
    "lamb": "Lamb", "adafactor": "Adafactor",
}
DEFAULT_LOSS = {"classification": "sparse_categorical_crossentropy", "regression": "mean_squared_error"}
DEFAULT_METRICS = {"classification": ["accuracy"], "regression": ["mean_absolute_error"]}
LAYERS_DOCS = "https://keras.io/api/layers/"

# keras.layers classes usable in a [[model.layers]] stack (Keras 3). Checked here so a typo fails before
# TensorFlow loads; tests/test_train.py checks that every name still exists in the installed Keras.
# Layers that need Python objects (Lambda, wrappers, framework bridges) are left out: use `builder`.
KERAS_LAYERS = frozenset(["Activation", "ActivityRegularization", "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D", "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D", "AdditiveAttention", "AlphaDropout", "Attention", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNormalization", "CategoryEncoding", "Conv1D", "Conv1DTranspose", "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "Convolution1D", "Convolution1DTranspose", "Convolution2D", "Convolution2DTranspose", "Convolution3D", "Convolution3DTranspose", "Cropping1D", "Cropping2D", "Cropping3D", "Dense", "DepthwiseConv1D", "DepthwiseConv2D", "Discretization", "Dropout", "ELU", "EinsumDense", "Embedding", "Flatten", "GRU", "GaussianDropout", "GaussianNoise", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GroupNormalization", "Hashing", "Identity", "LSTM", "LayerNormalization", "LeakyReLU", "Masking", "MaxPool1D", "MaxPool2D", "MaxPool3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MultiHeadAttention", "Normalization", "PReLU", "Permute", "RMSNormalization", "ReLU", "RepeatVector", "Rescaling", "Reshape", "SimpleRNN", "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "UnitNormalization", "UpSampling1D", "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"])

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BUILDER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)$")
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)((?:\[-?\d+\])*)$")


@dataclass
class TrainConfig:
    """A validated config. `values` is the effective config (defaults filled, overrides applied)."""

    path: Path
    values: dict[str, Any]
    text_sha256: str
    overrides: list[str] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        """The config's directory, absolute (builders are imported from here)."""
        return self.path.resolve().parent

    @property
    def data(self) -> dict[str, Any]:
        return self.values["data"]

    @property
    def model(self) -> dict[str, Any]:
        return self.values["model"]

    @property
    def train(self) -> dict[str, Any]:
        return self.values["train"]

    @property
    def register(self) -> dict[str, Any]:
        return self.values.get("register", {})

    @property
    def task(self) -> str:
        return self.model["task"]

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's directory (kept relative to the working
        directory when the config path was, so messages show paths the way the user wrote them)."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def error(self, key: str, problem: str) -> InvalidInput:
        return InvalidInput(f"{self.path}: {key}: {problem}")


# -- describing values in messages ---------------------------------------------------------------------
def describe(value: Any) -> str:
    """A value as a user wrote it in TOML, with its type: `the string "ten"`, `the integer 3`."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {value}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""


# -- value checkers: return the normalized value or raise _Bad(expected) -----------------------------
class _Bad(Exception):
    """A value did not match; the message says what was expected."""


Checker = Callable[[Any], Any]


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("a non-empty string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _int(minimum: int) -> Checker:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Bad(f"an integer >= {minimum}")
        return value
    return check


def _number(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = True) -> Checker:
    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (value > low if low_open else value >= low) and (
                high is None or (value < high if high_open else value <= high))
        if not ok:
            lo = f"> {low}" if low_open else f">= {low}"
            hi = "" if high is None else (f" and < {high}" if high_open else f" and <= {high}")
            raise _Bad(f"a number {lo}{hi}")
        return float(value)
    return check


def _choice(options: tuple[str, ...] | dict[str, Any], *, lower: bool = False) -> Checker:
    def check(value: Any) -> str:
        v = value.lower() if lower and isinstance(value, str) else value
        if not isinstance(v, str) or v not in options:
            hint = did_you_mean(value, options) if isinstance(value, str) else ""
            raise _Bad(f"one of {', '.join(options)}{hint}")
        return v
    return check


def _string_list(*, unique: bool = True, nonempty: bool = True) -> Checker:
    def check(value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _Bad("an array of non-empty strings")
        if nonempty and not value:
            raise _Bad("a non-empty array of strings")
        if unique:
            dupes = sorted({v for v in value if value.count(v) > 1})
            if dupes:
                raise _Bad(f"an array without duplicates ('{dupes[0]}' appears twice)")
        return list(value)
    return check


def _label(value: Any) -> str | list[str]:
    if isinstance(value, str) and value:
        return value
    try:
        return _string_list()(value)
    except _Bad:
        raise _Bad("a column name, or an array of column names (regression with several targets)") from None


def _free_table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad("a table")
    return value


def _data_path(value: Any) -> str:
    value = _string(value)
    if not value.lower().endswith(DATA_SUFFIXES):
        raise _Bad(f"a .csv, .jsonl or .npz file (got \"{value}\")")
    return value


def _one_data_file(value: Any) -> str:
    value = _data_path(value)
    if is_glob(value):
        raise _Bad(f"one file, not a glob (got \"{value}\")")
    return value


def _data_paths(value: Any) -> str | list[str]:
    """One file, a glob ("parts/*.csv") or s3:// URL, or a list of them, all of one type."""
    if not isinstance(value, list):
        return _data_path(value)
    if not value:
        raise _Bad("a file, a glob or a non-empty list of files")
    paths = [_data_path(v) for v in value]
    if len({p.lower().rsplit(".", 1)[-1] for p in paths}) > 1:
        raise _Bad(f"files of one type (got {', '.join(paths)})")
    return paths


def first_path(value: str | list[str]) -> str:
    return value if isinstance(value, str) else value[0]


def _single_char(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 1 or value in "\"\r\n":
        raise _Bad("a single character such as \",\", \";\" or \"\\t\"")
    return value


def _builder(value: Any) -> str:
    if not isinstance(value, str) or not _BUILDER.match(value):
        raise _Bad('"module:function", e.g. "my_models:build" (my_models.py beside the config)')
    return value


def _name(value: Any) -> str:
    value = _string(value)
    try:
        check_name(value)
    except InvalidInput as exc:
        raise _Bad(f"a valid model name ({exc})") from None
    return value


def _aliases(value: Any) -> list[str]:
    value = _string_list(nonempty=False)(value)
    for a in value:
        try:
            check_alias(a)
        except InvalidInput as exc:
            raise _Bad(f"valid alias names ({exc})") from None
    return value


def _str_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Bad("a table of strings, e.g. { team = \"ml\" }")
    return dict(value)


# -- the schema ------------------------------------------------------------------------------------------
# section -> key -> checker. Defaults that depend on other keys are filled by the section checks
# (`_check_data`, `_check_model`, `_check_train`).
SCHEMA: dict[str, dict[str, Checker | None]] = {
    "data": {
        "path": _data_paths, "label": _label, "features": _string_list(), "validation_split": _number(0.0, 1.0),
        "validation_path": _one_data_file, "shuffle": _bool, "delimiter": _single_char,
    },
    "model": {
        "task": _choice(TASKS), "normalize": _bool, "layers": None, "builder": _builder, "params": _free_table,
    },
    "train": {
        "epochs": _int(1), "batch_size": _int(1), "optimizer": _choice(OPTIMIZERS, lower=True),
        "learning_rate": _number(0.0, low_open=True, high=None), "loss": _string,
        "metrics": _string_list(nonempty=False), "seed": _int(0), "early_stopping": None,
        "class_weight": None, "distribute": _choice(MODES),
    },
    "register": {"name": _name, "aliases": _aliases, "description": _string, "tags": _str_table},
}
EARLY_STOPPING: dict[str, Checker] = {
    "monitor": _string, "patience": _int(0), "min_delta": _number(0.0, None),
    "restore_best_weights": _bool, "mode": _choice(("auto", "min", "max")),
}
REQUIRED = (("data", "path"), ("model", "task"))
# Keys free-form below this point (checked by Keras, or by the user's builder).
FREE_TABLES = {("model", "params"), ("register", "tags"), ("train", "class_weight")}


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read, override, validate and complete a training config. Raises InvalidInput/NotFound, never imports TF."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, expected a TOML config file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: config is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    for item in overrides:
        apply_override(doc, item)
    cfg = TrainConfig(path, {}, hashlib.sha256(raw).hexdigest(), list(overrides))
    cfg.values = validate(doc, cfg)
    from maasctl.training.builders import check_builder_importable

    check_builder_importable(cfg)
    return cfg


# -- --set ---------------------------------------------------------------------------------------------
def parse_override(item: str) -> tuple[list[str | int], Any]:
    """`a.b[1].c=VALUE` -> (["a", "b", 1, "c"], value). VALUE is TOML; a bare word is taken as a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInput(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
    parts: list[str | int] = []
    for seg in key.split("."):
        m = _SEGMENT.match(seg.strip())
        if not m:
            raise InvalidInput(f"--set {item!r}: bad key segment {seg!r} (expected name or name[index])")
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(-?\d+)\]", m.group(2)))
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if not text or any(c in text for c in "[]{}\"'="):
            raise InvalidInput(f"--set {key}: value {text!r} is not a TOML value "
                               f"(quote strings: --set '{key}=\"...\"')") from None
        value = text  # a bare word such as train.optimizer=sgd or data.path=other.csv
    return parts, value


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def apply_override(doc: dict[str, Any], item: str) -> None:
    """Set one key in the raw document; the key must be one the schema knows (or under a free-form table)."""
    parts, value = parse_override(item)
    dotted = _dotted(parts)
    section = parts[0]
    if not isinstance(section, str) or section not in SCHEMA:
        raise InvalidInput(f"--set {dotted}: unknown section '{section}'{did_you_mean(str(section), SCHEMA)} "
                           f"(sections: {', '.join(SCHEMA)})")
    if len(parts) == 1:
        raise InvalidInput(f"--set {dotted}: name a key inside [{section}], e.g. {section}.{next(iter(SCHEMA[section]))}")
    key = parts[1]
    if not isinstance(key, str) or key not in SCHEMA[section]:
        raise InvalidInput(f"--set {dotted}: unknown key '{key}' in [{section}]{did_you_mean(str(key), SCHEMA[section])}"
                           f" (keys: {', '.join(SCHEMA[section])})")
    rest = parts[2:]
    if (section, key) == ("model", "layers"):
        layers = doc.get("model", {}).get("layers")
        if not rest or not isinstance(rest[0], int):
            raise InvalidInput(f"--set {dotted}: address one layer argument, e.g. model.layers[0].units=8")
        if not isinstance(layers, list) or not -len(layers) <= rest[0] < len(layers):
            n = len(layers) if isinstance(layers, list) else 0
            raise InvalidInput(f"--set {dotted}: the config has {n} [[model.layers]] (valid indexes 0..{n - 1})")
        if len(rest) != 2 or not isinstance(rest[1], str):
            raise InvalidInput(f"--set {dotted}: address one layer argument, e.g. model.layers[{rest[0]}].units=8")
        target = layers[rest[0]]
        if not isinstance(target, dict):
            raise InvalidInput(f"--set {dotted}: model.layers[{rest[0]}] is not a table")
        target[rest[1]] = value
        return
    if rest:
        if key == "early_stopping":
            if len(rest) != 1 or rest[0] not in EARLY_STOPPING:
                unknown = str(rest[0])
                raise InvalidInput(f"--set {dotted}: unknown key '{unknown}' in train.early_stopping"
                                   f"{did_you_mean(unknown, EARLY_STOPPING)} (keys: {', '.join(EARLY_STOPPING)})")
        elif (section, key) not in FREE_TABLES or len(rest) != 1 or not isinstance(rest[0], str):
            raise InvalidInput(f"--set {dotted}: {section}.{key} has no sub-keys")
    sec = doc.setdefault(section, {})
    if not isinstance(sec, dict):
        raise InvalidInput(f"--set {dotted}: [{section}] is not a table in the config")
    if not rest:
        sec[key] = value
        return
    sub = sec.get(key)
    if not isinstance(sub, dict):
        sub = {} if sub in (None, True) else None
        if sub is None:
            raise InvalidInput(f"--set {dotted}: {section}.{key} is not a table in the config")
        sec[key] = sub
    sub[rest[0]] = value


# -- validation ----------------------------------------------------------------------------------------
def validate(doc: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """Check every key of the raw document and return the effective config (a new dict)."""
    doc = copy.deepcopy(doc)
    for top, value in doc.items():
        if top not in SCHEMA:
            owner = [s for s, keys in SCHEMA.items() if top in keys]
            if owner:
                hint = f" (did you mean {owner[0]}.{top}, i.e. under [{owner[0]}]?)"
            else:
                hint = did_you_mean(top, SCHEMA)
            raise cfg.error(top, f"unknown top-level key{hint}; expected sections {', '.join(f'[{s}]' for s in SCHEMA)}")
        if not isinstance(value, dict):
            raise cfg.error(top, f"expected a table [{top}], got {describe(value)}")
    for section, key in REQUIRED:
        if key not in doc.get(section, {}):
            raise cfg.error(f"{section}.{key}", "required key is missing" + _required_hint(section, key))
    out: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        given = doc.get(section)
        if given is None:
            continue
        sec: dict[str, Any] = {}
        for key, value in given.items():
            if key not in keys:
                raise cfg.error(f"{section}.{key}", f"unknown key in [{section}]{did_you_mean(key, keys)}; "
                                f"expected one of {', '.join(keys)}")
            checker = keys[key]
            if checker is None:
                sec[key] = value  # checked below with its own rules
                continue
            try:
                sec[key] = checker(value)
            except _Bad as exc:
                raise cfg.error(f"{section}.{key}", f"expected {exc}, got {describe(value)}") from None
        out[section] = sec
    _check_model(out["model"], cfg)
    _check_train(out, cfg)
    _check_data(out["data"], out["model"]["task"], cfg)
    return out


def _required_hint(section: str, key: str) -> str:
    examples = {("data", "path"): 'path = "train.csv"', ("model", "task"): 'task = "classification" or "regression"'}
    return f" (add under [{section}]: {examples[(section, key)]})"


def _check_data(data: dict[str, Any], task: str, cfg: TrainConfig) -> None:
    is_npz = first_path(data["path"]).lower().endswith(".npz")
    if "label" not in data and not is_npz:
        raise cfg.error("data.label", "required key is missing: name the label column (e.g. label = \"species\")")
    if is_npz:
        if isinstance(data.get("label"), list):
            raise cfg.error("data.label", "expected the name of one .npz array (targets may be 2-D), got an array")
        data.setdefault("label", "y")
    if isinstance(data.get("label"), list) and task == "classification":
        raise cfg.error("data.label", "expected one label column for classification, got an array "
                        "(several label columns are for regression)")
    label = data.get("label")
    labels = [label] if isinstance(label, str) else (label or [])
    overlap = [f for f in data.get("features", []) if f in labels]
    if overlap:
        raise cfg.error("data.features", f"'{overlap[0]}' is the label column; it cannot also be a feature")
    if "validation_path" in data:
        if "validation_split" in data:
            raise cfg.error("data.validation_split", "give either validation_split or validation_path, not both")
        if data["validation_path"].lower().rsplit(".", 1)[-1] != first_path(data["path"]).lower().rsplit(".", 1)[-1]:
            raise cfg.error("data.validation_path", "expected the same file type as data.path")
        data["validation_split"] = 0.0
    data.setdefault("validation_split", 0.2)
    data.setdefault("shuffle", True)
    data.setdefault("delimiter", ",")


def _check_model(model: dict[str, Any], cfg: TrainConfig) -> None:
    has_layers, has_builder = "layers" in model, "builder" in model
    if has_layers == has_builder:
        raise cfg.error("model.layers", "expected exactly one of [[model.layers]] (a layer stack) or "
                        "model.builder = \"module:function\"" + (", not both" if has_layers else ""))
    model.setdefault("normalize", True)
    if has_builder:
        return
    layers = model["layers"]
    if not isinstance(layers, list) or not layers or not all(isinstance(x, dict) for x in layers):
        raise cfg.error("model.layers", "expected one or more [[model.layers]] tables, got "
                        + ("an empty array" if layers == [] else describe(layers)))
    for i, layer in enumerate(layers):
        where = f"model.layers[{i}]"
        kind = layer.get("type")
        if kind is None:
            raise cfg.error(f"{where}.type", 'required key is missing: a keras.layers class name, e.g. type = "Dense"')
        if not isinstance(kind, str):
            raise cfg.error(f"{where}.type", f"expected a keras.layers class name, got {describe(kind)}")
        if kind in ("Input", "InputLayer"):
            raise cfg.error(f"{where}.type", "the input layer is implicit (float32 'features' with one column per "
                            "feature); start the stack with the first hidden layer")
        if kind not in KERAS_LAYERS:
            raise cfg.error(f"{where}.type", f"unknown layer type '{kind}'{did_you_mean(kind, KERAS_LAYERS)}; "
                            f"expected a keras.layers class name (see {LAYERS_DOCS}), or use model.builder "
                            f"for custom layers")
        for arg in layer:
            if not _IDENT.match(arg):
                raise cfg.error(f"{where}.{arg}", "expected a Python identifier (a keyword argument of the layer)")
        if "name" in layer and layer["name"] == "features":
            raise cfg.error(f"{where}.name", "'features' is the name of the model input; choose another")


def _check_train(out: dict[str, Any], cfg: TrainConfig) -> None:
    task = out["model"]["task"]
    train = out.setdefault("train", {})
    train.setdefault("epochs", 10)
    train.setdefault("batch_size", 32)
    train.setdefault("optimizer", "adam")
    train.setdefault("learning_rate", 0.001)
    train.setdefault("loss", DEFAULT_LOSS[task])
    train.setdefault("metrics", list(DEFAULT_METRICS[task]))
    train.setdefault("seed", 42)
    train.setdefault("distribute", "auto")
    es = train.get("early_stopping")
    if es is not None:
        if es is False:
            del train["early_stopping"]
        else:
            train["early_stopping"] = _early_stopping({} if es is True else es, cfg)
    cw = train.get("class_weight")
    if cw is not None:
        if task != "classification":
            raise cfg.error("train.class_weight", "only applies to classification")
        if cw != "balanced" and not (isinstance(cw, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in cw.values())):
            raise cfg.error("train.class_weight", 'expected "balanced" or a table of class name -> weight >= 0, '
                            f"got {describe(cw)}")


def _early_stopping(es: Any, cfg: TrainConfig) -> dict[str, Any]:
    if not isinstance(es, dict):
        raise cfg.error("train.early_stopping", f"expected true or a table such as "
                        f"{{ monitor = \"val_loss\", patience = 5 }}, got {describe(es)}")
    out = {}
    for key, value in es.items():
        if key not in EARLY_STOPPING:
            raise cfg.error(f"train.early_stopping.{key}", f"unknown key{did_you_mean(key, EARLY_STOPPING)}; "
                            f"expected one of {', '.join(EARLY_STOPPING)}")
        try:
            out[key] = EARLY_STOPPING[key](value)
        except _Bad as exc:
            raise cfg.error(f"train.early_stopping.{key}", f"expected {exc}, got {describe(value)}") from None
    out.setdefault("monitor", "val_loss")
    out.setdefault("patience", 5)
    out.setdefault("min_delta", 0.0)
    out.setdefault("restore_best_weights", True)
    out.setdefault("mode", "auto")
    return out


# -- checks that need the data (still before TensorFlow) ------------------------------------------------
def check_against_data(cfg: TrainConfig, n_features: int, n_outputs: int, class_names: list[str] | None) -> None:
    """Checks that need the data's shape: the output layer size, monitored metrics, class weights."""
    data, train = cfg.data, cfg.train
    has_val = data["validation_split"] > 0 or "validation_path" in data
    es = train.get("early_stopping")
    if es and es["monitor"].startswith("val_") and not has_val:
        raise cfg.error("train.early_stopping.monitor", f"'{es['monitor']}' needs validation data; set "
                        "data.validation_split > 0 or data.validation_path, or monitor \"loss\"")
    cw = train.get("class_weight")
    if isinstance(cw, dict) and class_names is not None:
        for k in cw:
            if k not in class_names:
                raise cfg.error(f"train.class_weight.{k}", f"not a class of the data{did_you_mean(k, class_names)} "
                                f"(classes: {', '.join(class_names)})")
    layers = cfg.model.get("layers")
    if not layers:
        return
    last = layers[-1]
    where = f"model.layers[{len(layers) - 1}]"
    units = last.get("units")
    if isinstance(units, int) and not isinstance(units, bool) and units != n_outputs:
        if cfg.task == "classification":
            names = ", ".join(class_names or [])
            raise cfg.error(f"{where}.units", f"the output layer has {units} units but the data has {n_outputs} "
                            f"classes ({names}); set units = {n_outputs}")
        raise cfg.error(f"{where}.units", f"the output layer has {units} units but there are {n_outputs} "
                        f"regression target(s); set units = {n_outputs}")
    if cfg.task == "classification" and last.get("type") == "Dense" and last.get("activation") != "softmax":
        got = f'"{last["activation"]}"' if "activation" in last else "no activation"
        raise cfg.error(f"{where}.activation", f'expected "softmax" on the output layer of a classifier '
                        f"(the model outputs class probabilities), got {got}")

