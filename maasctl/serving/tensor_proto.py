"""TensorFlow's TensorProto <-> NumPy, without TensorFlow (works on any object with TensorProto's fields).

The fast path is `tensor_content` (what `tf.make_tensor_proto` writes for NumPy arrays): the raw
little-endian buffer becomes an array with `np.frombuffer`, no copy. The typed repeated fields
(`float_val`, `int_val`, ...) are read too, with TensorFlow's rule that a shorter list repeats its last value
(one value fills the whole shape). Outputs are written as `tensor_content` (strings as `string_val`), which
is what TF Serving answers and what `tf.make_ndarray` reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maasctl import tensors
from maasctl.errors import InvalidInput

# tensorflow/core/framework/types.proto, from the one dtype table (maasctl/tensors.py)
ENUM_NAME: dict[int, str] = {k: v for k, v in tensors.DTYPE_ENUM.items()
                             if v in tensors.NUMPY_TWINS or v == "bfloat16"}
DTYPE_ENUM: dict[str, int] = {v: k for k, v in ENUM_NAME.items()}
# the names TensorFlow prints in its own messages ("Expects arg[0] to be float but double is provided")
TF_NAME = {"float32": "float", "float64": "double", "float16": "half"}
NUMPY: dict[str, Any] = {
    "float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "int32": np.dtype("<i4"), "uint8": np.dtype("u1"),
    "int16": np.dtype("<i2"), "int8": np.dtype("i1"), "int64": np.dtype("<i8"), "bool": np.dtype("?"),
    "uint16": np.dtype("<u2"), "float16": np.dtype("<f2"), "uint32": np.dtype("<u4"), "uint64": np.dtype("<u8"),
}
# which repeated field holds the values of each dtype when tensor_content is empty
_VAL_FIELD = {
    "float32": "float_val", "float64": "double_val", "int32": "int_val", "uint8": "int_val", "int16": "int_val",
    "int8": "int_val", "int64": "int64_val", "bool": "bool_val", "uint16": "int_val", "float16": "half_val",
    "uint32": "uint32_val", "uint64": "uint64_val", "string": "string_val",
}
MAX_ELEMENTS = 1 << 31


def dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.kind in "OSU":
        return "string"
    name = arr.dtype.name
    if name not in DTYPE_ENUM:
        raise InvalidInput(f"outputs of type {name} cannot be sent as a TensorProto")
    return name


def shape_of(proto: Any) -> list[int]:
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise InvalidInput("a tensor with unknown rank cannot be fed")
    return [d.size for d in shape.dim]


def to_array(proto: Any, where: str) -> np.ndarray:
    """A TensorProto as an array of its own dtype (validated against a signature by `check`)."""
    name = ENUM_NAME.get(proto.dtype)
    if name is None or name == "bfloat16":
        raise InvalidInput(f"{where}: tensors of dtype enum {proto.dtype} are not supported")
    dims = shape_of(proto)
    if any(d < 0 for d in dims):
        raise InvalidInput(f"{where}: tensor shape {dims} has a negative dimension")
    count = 1
    for d in dims:
        count *= d
    if count > MAX_ELEMENTS:
        raise InvalidInput(f"{where}: tensor shape {dims} is too large")
    if name == "string":
        values = list(proto.string_val)
        arr = np.empty(count, dtype=object)
        if values:
            if len(values) not in (1, count):
                raise InvalidInput(f"{where}: {len(values)} strings for shape {dims} ({count} elements)")
            arr[:] = values if len(values) == count else values * count
        elif count:
            raise InvalidInput(f"{where}: no values for shape {dims}")
        return arr.reshape(dims)
    dt = NUMPY[name]
    content = proto.tensor_content
    if content:
        if len(content) != count * dt.itemsize:
            raise InvalidInput(f"{where}: tensor_content has {len(content)} bytes; shape {dims} of {name} "
                               f"needs {count * dt.itemsize}")
        return np.frombuffer(content, dtype=dt).reshape(dims)
    field = _VAL_FIELD[name]
    values = getattr(proto, field)
    n = len(values)
    if name == "float16":  # half_val holds the raw 16-bit patterns as ints
        raw = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        raw = np.asarray(values, dtype=dt)
    if n == count:
        return raw.reshape(dims)
    if n == 0:
        if count == 0:
            return np.zeros(dims, dtype=dt)
        raise InvalidInput(f"{where}: no values for shape {dims}")
    if n > count:
        raise InvalidInput(f"{where}: {n} values in {field} for shape {dims} ({count} elements)")
    # TensorFlow's rule: the last value fills the rest
    out = np.empty(count, dtype=dt)
    out[:n] = raw
    out[n:] = raw[-1]
    return out.reshape(dims)


def check(arr: np.ndarray, given: str, name: str, spec: dict[str, Any]) -> None:
    """The signature's dtype and shape, as TF Serving reports a mismatch (INVALID_ARGUMENT)."""
    want = spec["dtype"]
    if given != want:
        raise InvalidInput(f"Expects arg '{name}' to be {TF_NAME.get(want, want)} but "
                           f"{TF_NAME.get(given, given)} is provided")
    shape = spec["shape"]
    if shape is not None and (arr.ndim != len(shape)
                              or any(e != -1 and e != d for e, d in zip(shape, arr.shape))):
        dims = ", ".join("?" if d == -1 else str(d) for d in shape)
        raise InvalidInput(f"input '{name}' expects shape [{dims}] {want}; got shape {list(arr.shape)}")


def fill(proto: Any, arr: np.ndarray) -> None:
    """Write `arr` into an empty TensorProto message."""
    arr = np.asarray(arr)
    name = dtype_name(arr)
    proto.dtype = DTYPE_ENUM[name]
    dims = proto.tensor_shape.dim
    for d in arr.shape:
        dims.add().size = d
    if name == "string":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(arr, dtype=NUMPY[name]).tobytes()
