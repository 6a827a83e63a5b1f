"""TF Serving's gRPC messages for the predict client, encoded and decoded by hand (no TensorFlow, no pb2).

`tensorflow-serving-api`'s generated modules import TensorFlow's protos, i.e. the whole of TensorFlow
(seconds of start-up) — the cost `maasctl predict` avoids. The client needs four messages, so they are
written here on the protobuf wire format directly: PredictRequest (inputs as `tensor_content`, strings as
`string_val`), PredictResponse, GetModelMetadataRequest and GetModelMetadataResponse (SignatureDefMap read
with the SavedModel reader's decoder). tests/test_grpc_predict.py checks them against the generated classes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from maasctl import tensors
from maasctl.errors import InvalidInput, OperationFailed
from maasctl.refs import ModelRef
from maasctl.store.savedmodel import _DecodeError, _fields, _map_entry, _signature_def

PREDICT = "/tensorflow.serving.PredictionService/Predict"
METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"

# TensorFlow's DataType numbers for the dtypes NumPy can hold, from the one dtype table (maasctl/tensors.py)
DTYPE_ENUM = {name: number for number, name in tensors.DTYPE_ENUM.items() if name in tensors.NUMPY_TWINS}
_ENUM_DTYPE = {v: k for k, v in DTYPE_ENUM.items()}
_LE = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "uint8": "u1", "int16": "<i2", "int8": "i1",
       "int64": "<i8", "bool": "?", "uint16": "<u2", "float16": "<f2", "uint32": "<u4", "uint64": "<u8"}
# packed repeated value fields of TensorProto -> (dtype of the wire values)
_PACKED = {5: "<f4", 6: "<f8"}
_VARINT_FIELDS = {7, 10, 11, 16, 17}  # int_val, int64_val, bool_val, uint32_val, uint64_val


# -- encoding ---------------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _model_spec(ref: ModelRef, signature: str = "") -> bytes:
    out = _bytes_field(1, ref.name.encode())
    if ref.version is not None:
        out += _bytes_field(2, _key(1, 0) + _varint(ref.version))
    if signature:
        out += _bytes_field(3, signature.encode())
    if ref.alias is not None:
        out += _bytes_field(4, ref.alias.encode())
    return out


def tensor_proto(arr: np.ndarray, dtype: str) -> bytes:
    """A TensorProto of `dtype` (the signature's) holding `arr`."""
    shape = b"".join(_bytes_field(2, _key(1, 0) + _varint(d)) for d in arr.shape)
    out = _key(1, 0) + _varint(DTYPE_ENUM[dtype]) + _bytes_field(2, shape)
    if dtype == "string":
        for v in arr.reshape(-1).tolist():
            out += _bytes_field(8, v if isinstance(v, bytes) else str(v).encode())
        return out
    return out + _bytes_field(4, np.ascontiguousarray(arr, dtype=_LE[dtype]).tobytes())


def predict_request(ref: ModelRef, signature: str, inputs: dict[str, np.ndarray], dtypes: dict[str, str]) -> bytes:
    out = _bytes_field(1, _model_spec(ref, signature))
    for name, arr in inputs.items():
        entry = _bytes_field(1, name.encode()) + _bytes_field(2, tensor_proto(arr, dtypes[name]))
        out += _bytes_field(2, entry)
    return out


def metadata_request(ref: ModelRef) -> bytes:
    return _bytes_field(1, _model_spec(ref)) + _bytes_field(2, b"signature_def")


# -- decoding ---------------------------------------------------------------------------------------------------
def _spec(buf: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "", "version": None, "signature_name": ""}
    for f, _, v in _fields(buf):
        if f == 1:
            spec["name"] = bytes(v).decode()
        elif f == 2:
            spec["version"] = 0
            for vf, _, vv in _fields(v):
                if vf == 1:
                    spec["version"] = vv
        elif f == 3:
            spec["signature_name"] = bytes(v).decode()
    return spec


def _unpacked_varints(buf: bytes) -> list[int]:
    from maasctl.store.savedmodel import _varint as read_varint

    values, pos = [], 0
    while pos < len(buf):
        v, pos = read_varint(buf, pos)
        values.append(v)
    return values


def tensor_from_proto(buf: bytes) -> np.ndarray:
    dtype_enum, dims, content = 0, [], None
    strings: list[bytes] = []
    values: list[Any] = []
    for f, wire, v in _fields(buf):
        if f == 1:
            dtype_enum = v
        elif f == 2:
            for sf, _, sv in _fields(v):
                if sf == 2:
                    size = 0
                    for df, _, dv in _fields(sv):
                        if df == 1:
                            size = dv
                    dims.append(size)
        elif f == 4:
            content = bytes(v)
        elif f == 8:
            strings.append(bytes(v))
        elif f in _PACKED:
            values.extend(np.frombuffer(bytes(v), _PACKED[f]).tolist() if wire == 2
                          else struct.unpack("<f" if f == 5 else "<d", bytes(v)))
        elif f in _VARINT_FIELDS:
            raw = _unpacked_varints(bytes(v)) if wire == 2 else [v]
            values.extend(raw if f == 17 else (x - (1 << 64) if x >= 1 << 63 else x for x in raw))
    dtype = _ENUM_DTYPE.get(dtype_enum)
    if dtype is None:
        raise OperationFailed(f"the server answered a tensor of dtype enum {dtype_enum}, which maasctl cannot read")
    count = int(np.prod(dims)) if dims else 1
    if dtype == "string":
        arr = np.empty(count, dtype=object)
        arr[:] = strings if len(strings) == count else (strings * count)[:count]
        return arr.reshape(dims)
    if content is not None:
        return np.frombuffer(content, _LE[dtype]).reshape(dims)
    arr = np.asarray(values, dtype=_LE[dtype])
    if arr.size != count:
        arr = np.resize(arr, count) if arr.size else np.zeros(count, _LE[dtype])
    return arr.reshape(dims)


def predict_response(buf: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """PredictResponse -> ({output: array}, model_spec)."""
    outputs: dict[str, np.ndarray] = {}
    spec: dict[str, Any] = {}
    try:
        for f, _, v in _fields(buf):
            if f == 1:
                key, value = _map_entry(v)
                outputs[key] = tensor_from_proto(value)
            elif f == 2:
                spec = _spec(v)
    except _DecodeError as exc:
        raise OperationFailed(f"the server's PredictResponse is malformed ({exc})") from None
    return outputs, spec


def metadata_response(buf: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """GetModelMetadataResponse -> ({signature name: Signature}, model_spec)."""
    sigs: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    try:
        for f, _, v in _fields(buf):
            if f == 1:
                spec = _spec(v)
            elif f == 2:
                key, any_msg = _map_entry(v)
                if key != "signature_def":
                    continue
                payload = b"".join(bytes(av) for af, _, av in _fields(any_msg) if af == 2)
                for sf, _, sv in _fields(payload):
                    if sf == 1:
                        name, sig = _map_entry(sv)
                        if not name.startswith("__"):
                            sigs[name] = _signature_def(sig)
    except _DecodeError as exc:
        raise OperationFailed(f"the server's GetModelMetadataResponse is malformed ({exc})") from None
    if not sigs:
        raise InvalidInput("the server's metadata has no signature_def")
    return sigs, spec
