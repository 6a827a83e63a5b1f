"""A model's inputs and outputs as predict sees them: dtypes, columns, the tabular layout (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maasctl import tensors
from maasctl.errors import InvalidInput

FORMATS = ("json", "jsonl", "csv")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def dtype_kind(dtype: str) -> str:
    """'float', 'int', 'bool' or 'string'; InvalidInput for dtypes a JSON client cannot feed."""
    kind = tensors.dtype_kind(dtype)
    if kind is None:
        raise InvalidInput(f"inputs of dtype {dtype} are not supported by maasctl predict")
    return kind


def numpy_dtype(dtype: str) -> str:
    """The NumPy type an input or output of `dtype` is held in (object for strings and unknown dtypes)."""
    return tensors.json_numpy_dtype(dtype) or "object"


# -- the model's schema --------------------------------------------------------------------------------------
@dataclass
class Column:
    name: str
    input: str
    index: int | None  # position in the input's row vector, or None for a scalar-per-row input
    kind: str


@dataclass
class ModelSchema:
    """What the encoder and writers need to know about one signature of one model."""

    signature_name: str
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    feature_names: list[str] | None = None
    class_names: list[str] | None = None
    task: str | None = None
    label_columns: list[str] = field(default_factory=list)  # the training data's label column(s): never inputs
    columns: list[Column] | None = field(default=None, init=False)
    names_known: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for name, spec in self.inputs.items():
            kind = dtype_kind(spec["dtype"])
            shape = spec.get("shape")
            if shape is not None and len(shape) == 0:
                raise InvalidInput(f"input '{name}' is a scalar (no batch dimension); maasctl predict sends batches")
            spec.setdefault("kind", kind)
        self.columns, self.names_known = self._layout()

    @property
    def single_input(self) -> str | None:
        return next(iter(self.inputs)) if len(self.inputs) == 1 else None

    def _layout(self) -> tuple[list[Column] | None, bool]:
        """Flat scalar columns for CSV/records, when the inputs allow them."""
        if self.single_input:
            name = self.single_input
            spec = self.inputs[name]
            shape = spec["shape"]
            names = self.feature_names
            if shape is not None and len(shape) == 1:
                col = names[0] if names and len(names) == 1 else name
                return [Column(col, name, None, spec["kind"])], True
            if shape is None or len(shape) != 2:
                return None, False
            width = shape[1] if shape[1] > 0 else (len(names) if names else -1)
            if width <= 0:
                return None, False
            if names and len(names) == width:
                return [Column(n, name, j, spec["kind"]) for j, n in enumerate(names)], True
            return [Column(f"{name}[{j}]", name, j, spec["kind"]) for j in range(width)], False
        cols = []
        for name, spec in self.inputs.items():
            shape = spec["shape"]
            if shape is None or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                return None, False
            cols.append(Column(name, name, None if len(shape) == 1 else 0, spec["kind"]))
        return cols, True

    @property
    def label_output(self) -> str | None:
        """The output holding class scores, when class names were recorded with a classification model."""
        if not self.class_names or (self.task not in (None, "classification")):
            return None
        n = len(self.class_names)
        for name, spec in self.outputs.items():
            shape = spec.get("shape")
            if (dtype_kind_safe(spec["dtype"]) == "float" and shape and len(shape) == 2 and shape[1] in (n, -1)
                    and (len(self.outputs) == 1 or shape[1] == n)):
                return name
        return None


def dtype_kind_safe(dtype: str) -> str:
    return tensors.dtype_kind(dtype) or "other"


def schema_from_signature(sig: dict[str, Any], signature_name: str, meta: dict[str, Any] | None = None
                          ) -> ModelSchema:
    meta = meta or {}
    return ModelSchema(signature_name, {k: dict(v) for k, v in sig["inputs"].items()},
                       {k: dict(v) for k, v in sig["outputs"].items()},
                       feature_names=meta.get("feature_names") or None, class_names=meta.get("class_names") or None,
                       task=meta.get("task"), label_columns=recorded_label_columns(meta))


def recorded_label_columns(meta: dict[str, Any]) -> list[str]:
    """The label column(s) of the data the model was trained on (params.data.label), as recorded by train."""
    data = ((meta.get("params") or {}).get("data") or {}) if isinstance(meta.get("params"), dict) else {}
    label = data.get("label") if isinstance(data, dict) else None
    if isinstance(label, str):
        return [label]
    return [x for x in label if isinstance(x, str)] if isinstance(label, list) else []

