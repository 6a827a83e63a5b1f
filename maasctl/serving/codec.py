"""JSON <-> tensors for TF Serving's REST API, validated against a signature (pure Python + NumPy).

Decoding uses orjson (several times faster than the stdlib on number-heavy bodies, which is what limits
large predict requests) and falls back to the stdlib parser only when orjson rejects the body, because
TF Serving accepts the non-standard `NaN`/`Infinity` tokens that orjson refuses.

Every error is an InvalidInput whose message says what the signature expects and what arrived, and where
(`instances[2]`, `inputs['a']`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from maasctl.errors import InvalidInput
from maasctl.store.savedmodel import format_spec

DEFAULT_SIGNATURE = "serving_default"

_NUMPY_DTYPES: dict[str, Any] = {
    "float16": np.float16, "float32": np.float32, "float64": np.float64, "bfloat16": np.float32,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64, "bool": np.bool_,
}
_FLOAT_KINDS = frozenset("fiu")
_INT_KINDS = frozenset("iu")
# dtypes orjson serializes natively from NumPy arrays (OPT_SERIALIZE_NUMPY)
_ORJSON_NUMPY = frozenset(np.dtype(t) for t in ("float32", "float64", "int8", "int16", "int32", "int64",
                                                 "uint8", "uint16", "uint32", "uint64", "bool"))


@dataclass
class PredictRequest:
    """A validated predict request: NumPy inputs keyed by signature input name."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    row_format: bool
    rows: int | None  # common leading dimension when every input has one (batchable), else None


# -- JSON ------------------------------------------------------------------------------------------
def loads(body: bytes) -> Any:
    """Parse a request body; `JSON Parse error: ...` (TF Serving's prefix) on failure."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"JSON Parse error: the body is not UTF-8 text (invalid byte at offset {exc.start})") \
            from None
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
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


# -- request decoding ------------------------------------------------------------------------------
def _describe(value: Any) -> str:
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


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of a nested list, or None when ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    inner = [_shape_of(v) for v in value]
    first = inner[0]
    if first is None or any(s != first for s in inner[1:]):
        return None
    return (len(value), *first)


def _first_ragged(value: list, where: str) -> str:
    """Path and description of the first element whose shape differs from its siblings."""
    shapes = [_shape_of(v) for v in value]
    for i, s in enumerate(shapes):
        if s is None:
            return _first_ragged(value[i], f"{where}[{i}]")
    base = shapes[0]
    for i, s in enumerate(shapes[1:], 1):
        if s != base:
            return f"{where}[{i}] has shape {list(s)} but {where}[0] has shape {list(base)}"
    return f"{where} is ragged"


def _rows_shape_message(values: list, where: str, expected_row: list[int]) -> str | None:
    """For row-format data: which row has the wrong shape (the first one that differs from expected)."""
    for i, v in enumerate(values):
        s = _shape_of(v)
        if s is None:
            return f"got a ragged nested list: {_first_ragged(v, f'{where}[{i}]')}"
        if len(s) != len(expected_row) or any(e != -1 and e != d for e, d in zip(expected_row, s)):
            if len(s) == 1 and len(expected_row) == 1:
                return f"got rows of length {s[0]} at {where}[{i}]"
            if not s:
                return f"got a scalar at {where}[{i}] (each row must be a list of shape {expected_row})"
            return f"got a row of shape {list(s)} at {where}[{i}]"
    return None


def _find_bad_leaf(value: Any, where: str, ok) -> str | None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_bad_leaf(v, f"{where}[{i}]", ok)
            if found:
                return found
        return None
    return None if ok(value) else f"{_describe(value)} ({_short(value)}) at {where}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _string_leaf(value: Any, where: str, name: str, spec: dict[str, Any]) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and len(value) == 1 and "b64" in value and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{_expects(name, spec)}; got invalid base64 in {{\"b64\": ...}} at {where}") from None
    raise InvalidInput(f"{_expects(name, spec)}; got {_describe(value)} ({_short(value)}) at {where} "
                       f"(use a JSON string or {{\"b64\": \"...\"}})")


def _strings(value: Any, where: str, name: str, spec: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_strings(v, f"{where}[{i}]", name, spec) for i, v in enumerate(value)]
    return _string_leaf(value, where, name, spec)


def to_array(value: Any, name: str, spec: dict[str, Any], where: str, *, row_format: bool) -> np.ndarray:
    """Convert one input's JSON value to an array of the signature's dtype and check its shape.

    In row format, `value` is the list of per-example values (the batch dimension is the list)."""
    dtype = spec["dtype"]
    shape = spec["shape"]
    if dtype == "string":
        nested = _strings(value, where, name, spec)
        s = _shape_of(nested)
        if s is None:
            raise InvalidInput(f"{_expects(name, spec)}; got a ragged nested list: {_first_ragged(nested, where)}")
        arr = np.empty(s, dtype=object)
        if s == ():
            arr[()] = nested
        else:
            arr[...] = _object_fill(nested, s)
    else:
        target = _NUMPY_DTYPES.get(dtype)
        if target is None:
            raise InvalidInput(f"{_expects(name, spec)}; inputs of type {dtype} cannot be sent as JSON")
        try:
            arr = np.asarray(value)
        except (ValueError, OverflowError):
            arr = None
        if arr is None or arr.dtype == object or arr.dtype.kind in "US":
            _raise_bad_values(value, name, spec, where, row_format)
        kind = arr.dtype.kind
        if dtype == "bool":
            if kind != "b":
                _raise_bad_values(value, name, spec, where, row_format)
        elif dtype.startswith(("float", "bfloat")):
            if kind not in _FLOAT_KINDS:
                _raise_bad_values(value, name, spec, where, row_format)
            with np.errstate(over="ignore"):
                arr = arr.astype(target, copy=False)
        else:
            if kind not in _INT_KINDS:
                _raise_bad_values(value, name, spec, where, row_format)
            info = np.iinfo(target)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise InvalidInput(f"{_expects(name, spec)}; got a value out of range for {dtype} "
                                   f"[{info.min}, {info.max}] in {where}")
            arr = arr.astype(target, copy=False)
    if shape is not None:
        bad = arr.ndim != len(shape) or any(e != -1 and e != d for e, d in zip(shape, arr.shape))
        if bad:
            detail = _rows_shape_message(value, where, shape[1:]) if row_format and isinstance(value, list) else None
            raise InvalidInput(f"{_expects(name, spec)}; " + (detail or f"got shape {list(arr.shape)} in {where}"))
    return arr


def _object_fill(nested: Any, shape: tuple[int, ...]) -> np.ndarray:
    flat: list[bytes] = []

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


def _raise_bad_values(value: Any, name: str, spec: dict[str, Any], where: str, row_format: bool) -> None:
    """Find and describe the first offending element (slow path, errors only)."""
    dtype = spec["dtype"]
    shape = spec["shape"]
    if isinstance(value, list):
        s = _shape_of(value)
        if s is None:
            detail = (_rows_shape_message(value, where, (shape or [-1])[1:]) if row_format else None)
            raise InvalidInput(f"{_expects(name, spec)}; "
                               + (detail or f"got a ragged nested list: {_first_ragged(value, where)}"))
    if dtype == "bool":
        ok, want = (lambda v: isinstance(v, bool)), "true/false"
    elif dtype.startswith(("float", "bfloat")):
        ok, want = _is_number, "numbers"
    else:
        ok, want = _is_int, "integers"
    bad = _find_bad_leaf(value, where, ok) or f"a value that does not fit {dtype} in {where}"
    raise InvalidInput(f"{_expects(name, spec)} ({want}); got {bad}")


def parse_predict(doc: Any, signatures: dict[str, dict[str, Any]]) -> PredictRequest:
    """Validate a decoded :predict body against the model's signatures and build its input arrays."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"the request body must be a JSON object with 'instances' or 'inputs'; got {_describe(doc)}")
    sig_name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(sig_name, str):
        raise InvalidInput(f"'signature_name' must be a string; got {_describe(sig_name)}")
    sig_name = sig_name or DEFAULT_SIGNATURE
    sig = signatures.get(sig_name)
    if sig is None:
        raise InvalidInput(f"Serving signature name: '{sig_name}' not found in signature def "
                           f"(available: {', '.join(sorted(signatures)) or 'none'})")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise InvalidInput("Not allowed to have both 'inputs' and 'instances' keys in a request (use one)")
    if not has_instances and not has_inputs:
        raise InvalidInput("Missing 'inputs' or 'instances' key (row format: {\"instances\": [...]}, "
                           "columnar: {\"inputs\": ...})")
    specs = sig["inputs"]
    if not specs:
        raise InvalidInput(f"signature '{sig_name}' takes no inputs")
    if has_instances:
        inputs = _parse_instances(doc["instances"], specs)
    else:
        inputs = _parse_columnar(doc["inputs"], specs)
    # batchable only when every input has a free leading (batch) dimension and all agree on its size
    free = all(specs[n]["shape"] and specs[n]["shape"][0] == -1 for n in inputs)
    leading = {a.shape[0] if a.ndim else None for a in inputs.values()}
    rows = leading.pop() if free and len(leading) == 1 else None
    return PredictRequest(sig_name, inputs, has_instances, rows)


def _parse_instances(instances: Any, specs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidInput(f"'instances' must be a list of examples; got {_describe(instances)}")
    if not instances:
        raise InvalidInput("'instances' is empty: send at least one example")
    names = list(specs)
    if len(names) == 1:
        name = names[0]
        first = instances[0]
        if isinstance(first, dict) and set(first) == {name} and not _is_b64(first, specs[name]):
            values = []
            for i, inst in enumerate(instances):
                if not isinstance(inst, dict) or set(inst) != {name}:
                    raise InvalidInput(f"instances[{i}] must be an object with key '{name}' like instances[0]")
                values.append(inst[name])
        else:
            values = instances
        return {name: to_array(values, name, specs[name], "instances", row_format=True)}
    columns: dict[str, list] = {n: [] for n in names}
    expected = set(names)
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise InvalidInput(f"the signature has {len(names)} inputs ({', '.join(names)}), so each instance "
                               f"must be an object with those keys; got {_describe(inst)} at instances[{i}]")
        keys = set(inst)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(keys - expected)
            what = "; ".join(x for x in (f"missing {', '.join(repr(m) for m in missing)}" if missing else "",
                                         f"unknown {', '.join(repr(e) for e in extra)}" if extra else "") if x)
            raise InvalidInput(f"instances[{i}] must have exactly the keys {', '.join(names)}: {what}")
        for n in names:
            columns[n].append(inst[n])
    return {n: to_array(columns[n], n, specs[n], f"instances[*]['{n}']", row_format=True) for n in names}


def _is_b64(value: dict, spec: dict[str, Any]) -> bool:
    return spec["dtype"] == "string" and set(value) == {"b64"}


def _parse_columnar(inputs: Any, specs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    names = list(specs)
    if len(names) == 1:
        name = names[0]
        if isinstance(inputs, dict) and set(inputs) == {name} and not _is_b64(inputs, specs[name]):
            inputs = inputs[name]
        return {name: to_array(inputs, name, specs[name], "inputs", row_format=False)}
    if not isinstance(inputs, dict):
        raise InvalidInput(f"the signature has {len(names)} inputs ({', '.join(names)}), so 'inputs' must be an "
                           f"object with those keys; got {_describe(inputs)}")
    keys, expected = set(inputs), set(names)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        parts = [f"missing {', '.join(repr(m) for m in missing)}" if missing else "",
                 f"unknown {', '.join(repr(e) for e in extra)}" if extra else ""]
        raise InvalidInput(f"'inputs' must have exactly the keys {', '.join(names)}: "
                           + "; ".join(p for p in parts if p))
    return {n: to_array(inputs[n], n, specs[n], f"inputs['{n}']", row_format=False) for n in names}


# -- response encoding -----------------------------------------------------------------------------
class _NeedsStdlib(Exception):
    """An output holds NaN/Infinity: orjson would write null where TF Serving writes the bare tokens."""


def _jsonable(name: str, arr: np.ndarray) -> Any:
    """An output array as something orjson can write: the array itself on the fast path."""
    if arr.dtype in _ORJSON_NUMPY:
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise _NeedsStdlib
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    if arr.dtype.kind in "OSU":
        return _strings_out(arr.tolist(), name.endswith("_bytes"))
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise _NeedsStdlib
        return arr
    return arr.tolist()


def _plain_output(name: str, arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OSU":
        return _strings_out(arr.tolist(), name.endswith("_bytes"))
    if arr.dtype.kind == "f":
        return arr.astype(np.float64).tolist()
    return arr.tolist()


def _strings_out(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_strings_out(v, as_b64) for v in value]
    if isinstance(value, bytes):
        if not as_b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _response(outputs: dict[str, Any], row_format: bool) -> dict[str, Any]:
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values()))}
        return {"outputs": outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    n = min((len(v) for v in outputs.values()), default=0)
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(n)]}


def encode_predict(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    """TF Serving's response: `predictions` (row format) or `outputs` (columnar)."""
    try:
        doc = _response({k: _jsonable(k, v) for k, v in outputs.items()}, row_format)
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except (_NeedsStdlib, TypeError):
        doc = _response({k: _plain_output(k, v) for k, v in outputs.items()}, row_format)
        return json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()


def format_signature(sig: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {format_spec(v)}" for k, v in sig["inputs"].items())
