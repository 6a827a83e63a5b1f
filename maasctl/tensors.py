"""Tensors as TF Serving's REST API and SavedModel signatures describe them, without TensorFlow.

The one place for: dtype names (TensorFlow's `DT_*` and enum numbers <-> maasctl's names <-> NumPy), the
default signature name, the shape of nested JSON lists, JSON decoding/encoding (orjson, plus TF Serving's
bare `NaN`/`Infinity` tokens) and the checked conversion of one input's JSON value to an array. The server
(`serving/`), the predict client (`predict/`), the SavedModel reader (`store/savedmodel.py`) and the
TensorFlow servable (`tf/servable.py`) all use it.

NumPy is imported by the functions that handle arrays, not by this module: `register`, `show` and the CLI's
start-up need only the names and must not pay for importing NumPy (tests/test_startup.py). Dtypes are given
to NumPy by name ("float32", "object").

A TensorSpec is `{"dtype": "float32", "shape": [-1, 4] or None when the rank is unknown, "tensor": "x:0"}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

if TYPE_CHECKING:
    import numpy as np

from maasctl.errors import InvalidInput

DEFAULT_SIGNATURE = "serving_default"

# -- dtypes ------------------------------------------------------------------------------------------------
DTYPE_ENUM: dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 8: "complex64",
    9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128", 19: "float16", 20: "resource",
    21: "variant", 22: "uint32", 23: "uint64",
}
"""TensorFlow's DataType enum (types.proto) -> maasctl's dtype name."""

TF_NAMES: dict[str, str] = {
    name: "DT_" + {"float16": "HALF", "float32": "FLOAT", "float64": "DOUBLE"}.get(name, name.upper())
    for name in DTYPE_ENUM.values()
}
"""maasctl's dtype name -> TensorFlow's `DT_*` name (as in TF Serving's metadata JSON)."""
_FROM_TF_NAMES = {v: k for k, v in TF_NAMES.items()}

NUMPY_TWINS: dict[str, str] = {
    **{name: name for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                               "uint16", "uint32", "uint64", "bool")},
    "string": "object",
}
"""dtypes with an exact NumPy representation -> its NumPy name (strings are object arrays of bytes)."""

_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_INTS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


def dtype_from_tf_name(name: str) -> str:
    """`DT_FLOAT` -> `float32`; an unknown name is lower-cased."""
    return _FROM_TF_NAMES.get(name, name.lower())


def numpy_twin(dtype: str) -> str | None:
    """The NumPy type holding exactly this dtype's values, or None (bfloat16, complex, resource ...)."""
    return NUMPY_TWINS.get(dtype)


def json_numpy_dtype(dtype: str) -> str | None:
    """The NumPy type JSON values of this dtype are decoded to (bfloat16 as float32, as TF Serving accepts)."""
    return "float32" if dtype == "bfloat16" else NUMPY_TWINS.get(dtype)


def dtype_kind(dtype: str) -> str | None:
    """'float', 'int', 'bool' or 'string' (what a JSON value of the dtype is); None for other dtypes."""
    if dtype in _FLOATS:
        return "float"
    if dtype in _INTS:
        return "int"
    if dtype in ("bool", "string"):
        return dtype
    return None


def leaf_ok(value: Any, kind: str) -> bool:
    """Whether a decoded JSON scalar is a valid value of a dtype kind (strings may be `{"b64": ...}`)."""
    t = type(value)
    if kind == "float":
        return t is float or t is int
    if kind == "int":
        return t is int
    if kind == "bool":
        return t is bool
    return t is str or (t is dict and set(value) == {"b64"} and isinstance(value["b64"], str))


def format_spec(spec: dict[str, Any]) -> str:
    """`float32[-1, 4]`-style text for tables and error messages."""
    shape = spec["shape"]
    dims = "?" if shape is None else ", ".join(str(d) for d in shape)
    return f"{spec['dtype']}[{dims}]"


# -- shapes of nested JSON lists ---------------------------------------------------------------------------
def exact_shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a nested list, checked at every element: None when it is ragged (a scalar is `()`)."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    inner = [exact_shape(v) for v in value]
    first = inner[0]
    if first is None or any(s != first for s in inner[1:]):
        return None
    return (len(value), *first)


def claimed_shape(value: Any) -> tuple[int, ...]:
    """The shape a nested list claims along its first elements (cheap; raggedness is found later)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def first_ragged(value: list[Any], where: str) -> str:
    """Path and description of the first element whose shape differs from its siblings."""
    shapes = [exact_shape(v) for v in value]
    for i, s in enumerate(shapes):
        if s is None:
            return first_ragged(value[i], f"{where}[{i}]")
    base = shapes[0]
    for i, s in enumerate(shapes[1:], 1):
        if s != base:
            return f"{where}[{i}] has shape {list(s or ())} but {where}[0] has shape {list(base or ())}"
    return f"{where} is ragged"


# -- JSON --------------------------------------------------------------------------------------------------
def loads(body: bytes | str) -> Any:
    """Parse JSON (orjson, or the stdlib for TF Serving's `NaN`/`Infinity` tokens that orjson refuses).

    InvalidInput `JSON Parse error: ...` (TF Serving's prefix) on failure."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    if isinstance(body, str):
        text = body
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("JSON Parse error: the body is not UTF-8 text "
                               f"(invalid byte at offset {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_parse_constant, parse_float=_parse_float)
    except (ValueError, RecursionError):
        raise InvalidInput(f"JSON Parse error: {first_error}") from None


def _parse_float(text: str) -> float:
    """Only the literal tokens may be infinite: a number that overflows a double (1e400) is an error, as in
    TF Serving (orjson refuses it too; this runs only on the stdlib fallback path)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range for a 64-bit float")
    return value


def _parse_constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def dumps(doc: Any) -> bytes:
    """Compact JSON; NumPy arrays and scalars are written as numbers (strings as text or `{"b64": ...}`)."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return to_jsonable(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def strings_to_json(value: Any, as_b64: bool = False) -> Any:
    """bytes (nested in lists) as UTF-8 text, or `{"b64": ...}` when not UTF-8 or when `as_b64`."""
    if isinstance(value, list):
        return [strings_to_json(v, as_b64) for v in value]
    if isinstance(value, bytes):
        if not as_b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def to_jsonable(arr: np.ndarray, as_b64: bool = False) -> Any:
    """An array as nested lists of JSON values (TF Serving's rule: outputs named `*_bytes` are base64)."""
    if arr.dtype.kind in "OSU":
        return strings_to_json(arr.tolist(), as_b64)
    return arr.tolist()


def response_doc(outputs: dict[str, Any], row_format: bool) -> dict[str, Any]:
    """TF Serving's predict response: `predictions` (row format) or `outputs` (columnar)."""
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values()))}
        return {"outputs": outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    n = min((len(v) for v in outputs.values()), default=0)
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(n)]}


# dtypes orjson serializes natively from NumPy arrays (OPT_SERIALIZE_NUMPY), when in native byte order
_ORJSON_NUMPY = frozenset(("float32", "float64", "int8", "int16", "int32", "int64",
                                                 "uint8", "uint16", "uint32", "uint64", "bool"))


class _NeedsStdlib(Exception):
    """An output holds NaN/Infinity: orjson would write null where TF Serving writes the bare tokens."""


def _fast_output(name: str, arr: np.ndarray) -> Any:
    """An output array as something orjson can write: the array itself on the fast path."""
    import numpy as np

    if arr.dtype.name in _ORJSON_NUMPY and arr.dtype.isnative:
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise _NeedsStdlib
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    if arr.dtype.kind in "OSU":
        return strings_to_json(arr.tolist(), name.endswith("_bytes"))
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise _NeedsStdlib
        return arr
    return arr.tolist()


def encode_predict(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    """A server's predict response body; NaN/Infinity are written as TF Serving writes them (bare tokens)."""
    try:
        doc = response_doc({k: _fast_output(k, v) for k, v in outputs.items()}, row_format)
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except (_NeedsStdlib, TypeError):
        doc = response_doc({k: to_jsonable(v, k.endswith("_bytes")) for k, v in outputs.items()}, row_format)
        return json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()


# -- signatures in TF Serving's metadata JSON --------------------------------------------------------------
def tf_serving_metadata(sig: dict[str, Any]) -> dict[str, Any]:
    """One signature in TF Serving's metadata JSON shape (snake_case, sizes as strings)."""

    def tensor(spec: dict[str, Any]) -> dict[str, Any]:
        shape = spec["shape"]
        return {
            "dtype": TF_NAMES.get(spec["dtype"], "DT_INVALID"),
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in (shape or [])],
                             "unknown_rank": shape is None},
            "name": spec["tensor"],
        }

    return {
        "inputs": {k: tensor(v) for k, v in sig["inputs"].items()},
        "outputs": {k: tensor(v) for k, v in sig["outputs"].items()},
        "method_name": sig["method_name"],
    }


def signature_from_metadata(doc: dict[str, Any], signature_name: str, where: str) -> dict[str, Any]:
    """One signature from TF Serving's metadata response, in savedmodel.read_signatures' shape."""
    try:
        sigs = doc["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
        raise InvalidInput(f"{where}: metadata response has no metadata.signature_def.signature_def") from None
    if signature_name not in sigs:
        raise InvalidInput(f"{where}: model has no signature '{signature_name}' "
                           f"(available: {', '.join(sorted(k for k in sigs if not k.startswith('__'))) or 'none'})")

    def spec(t: dict[str, Any]) -> dict[str, Any]:
        ts = t.get("tensor_shape") or {}
        shape = None if ts.get("unknown_rank") else [int(d.get("size", -1)) for d in ts.get("dim", [])]
        return {"dtype": dtype_from_tf_name(str(t.get("dtype", ""))), "shape": shape, "tensor": t.get("name", "")}

    sig = sigs[signature_name]
    return {"inputs": {k: spec(v) for k, v in sorted(sig.get("inputs", {}).items())},
            "outputs": {k: spec(v) for k, v in sorted(sig.get("outputs", {}).items())},
            "method_name": sig.get("method_name", "")}


# -- one input's JSON value -> a checked array -------------------------------------------------------------
def describe(value: Any) -> str:
    """What a JSON value is, for messages ("a number", "an object" ...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _expects(name: str, spec: dict[str, Any]) -> str:
    shape = spec["shape"]
    dims = "any shape" if shape is None else f"shape [{', '.join(str(d) for d in shape)}]"
    return f"input '{name}' expects {dims} {spec['dtype']}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rows_shape_message(values: list[Any], where: str, expected_row: list[int]) -> str | None:
    """For row-format data: which row has the wrong shape (the first one that differs from expected)."""
    for i, v in enumerate(values):
        s = exact_shape(v)
        if s is None:
            return f"got a ragged nested list: {first_ragged(v, f'{where}[{i}]')}"
        if len(s) != len(expected_row) or any(e != -1 and e != d for e, d in zip(expected_row, s)):
            if len(s) == 1 and len(expected_row) == 1:
                return f"got rows of length {s[0]} at {where}[{i}]"
            if not s:
                return f"got a scalar at {where}[{i}] (each row must be a list of shape {expected_row})"
            return f"got a row of shape {list(s)} at {where}[{i}]"
    return None


def _find_bad_leaf(value: Any, where: str, kind: str) -> str | None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_bad_leaf(v, f"{where}[{i}]", kind)
            if found:
                return found
        return None
    return None if leaf_ok(value, kind) else f"{describe(value)} ({_short(value)}) at {where}"


def decode_string(value: Any) -> Any:
    """A checked string leaf (text or `{"b64": ...}`) as bytes."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value


def _string_leaf(value: Any, where: str, name: str, spec: dict[str, Any]) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and len(value) == 1 and "b64" in value and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{_expects(name, spec)}; got invalid base64 in {{\"b64\": ...}} at {where}") from None
    raise InvalidInput(f"{_expects(name, spec)}; got {describe(value)} ({_short(value)}) at {where} "
                       f"(use a JSON string or {{\"b64\": \"...\"}})")


def _strings(value: Any, where: str, name: str, spec: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_strings(v, f"{where}[{i}]", name, spec) for i, v in enumerate(value)]
    return _string_leaf(value, where, name, spec)


def object_array(nested: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A nested list of Python objects (of a known, non-ragged shape) as an object array."""
    import numpy as np

    flat: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            flat.append(v)

    walk(nested)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def to_array(value: Any, name: str, spec: dict[str, Any], where: str, *, row_format: bool) -> np.ndarray:
    """Convert one input's JSON value to an array of the signature's dtype and check its shape.

    In row format, `value` is the list of per-example values (the batch dimension is the list). Every error
    is an InvalidInput saying what the signature expects, what arrived and where (`instances[2]`)."""
    import numpy as np

    dtype = spec["dtype"]
    shape = spec["shape"]
    if dtype == "string":
        nested = _strings(value, where, name, spec)
        s = exact_shape(nested)
        if s is None:
            raise InvalidInput(f"{_expects(name, spec)}; got a ragged nested list: {first_ragged(nested, where)}")
        arr = np.empty(s, dtype=object)
        if s == ():
            arr[()] = nested
        else:
            arr[...] = object_array(nested, s)
    else:
        arr = _numeric_array(value, name, spec, where, row_format)
    if shape is not None:
        bad = arr.ndim != len(shape) or any(e != -1 and e != d for e, d in zip(shape, arr.shape))
        if bad:
            detail = _rows_shape_message(value, where, shape[1:]) if row_format and isinstance(value, list) else None
            raise InvalidInput(f"{_expects(name, spec)}; " + (detail or f"got shape {list(arr.shape)} in {where}"))
    return arr


def _numeric_array(value: Any, name: str, spec: dict[str, Any], where: str, row_format: bool) -> np.ndarray:
    import numpy as np

    dtype = spec["dtype"]
    kind = dtype_kind(dtype)
    target = json_numpy_dtype(dtype)
    if target is None or kind is None:
        raise InvalidInput(f"{_expects(name, spec)}; inputs of type {dtype} cannot be sent as JSON")
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):
        _raise_bad_values(value, name, spec, where, row_format)
    if arr.dtype == object or arr.dtype.kind in "US":
        _raise_bad_values(value, name, spec, where, row_format)
    found = arr.dtype.kind
    if kind == "bool":
        if found != "b":
            _raise_bad_values(value, name, spec, where, row_format)
        return arr
    if kind == "float":
        if found not in "fiu":
            _raise_bad_values(value, name, spec, where, row_format)
        with np.errstate(over="ignore"):
            return arr.astype(target, copy=False)
    if found not in "iu":
        _raise_bad_values(value, name, spec, where, row_format)
    info = np.iinfo(target)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise InvalidInput(f"{_expects(name, spec)}; got a value out of range for {dtype} "
                           f"[{info.min}, {info.max}] in {where}")
    return arr.astype(target, copy=False)


def _raise_bad_values(value: Any, name: str, spec: dict[str, Any], where: str, row_format: bool) -> NoReturn:
    """Find and describe the first offending element (slow path, errors only)."""
    dtype = spec["dtype"]
    shape = spec["shape"]
    if isinstance(value, list):
        s = exact_shape(value)
        if s is None:
            detail = (_rows_shape_message(value, where, (shape or [-1])[1:]) if row_format else None)
            raise InvalidInput(f"{_expects(name, spec)}; "
                               + (detail or f"got a ragged nested list: {first_ragged(value, where)}"))
    kind = dtype_kind(dtype) or "int"
    want = {"bool": "true/false", "float": "numbers"}.get(kind, "integers")
    bad = _find_bad_leaf(value, where, kind) or f"a value that does not fit {dtype} in {where}"
    raise InvalidInput(f"{_expects(name, spec)} ({want}); got {bad}")

