"""Read a SavedModel's signatures straight from `saved_model.pb`, without importing TensorFlow.

Importing TensorFlow costs seconds; `register`, `show`, `package` and `inspect` only need the signature
table, which is a few fields of the SavedModel protobuf. This module decodes exactly those fields with a
small wire-format reader and skips everything else (the graph, the object graph) by length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, NotFound
from maasctl.tensors import DEFAULT_SIGNATURE, DTYPE_ENUM

_INIT_OP_KEY = "__saved_model_init_op"

Signature = dict[str, Any]
"""{"inputs": {name: TensorSpec}, "outputs": {...}, "method_name": str}; TensorSpec is
{"dtype": "float32", "shape": [-1, 4] or None when the rank is unknown, "tensor": "serving_default_x:0"}."""


class _DecodeError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise _DecodeError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) for one message; length-delimited values are bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _DecodeError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise _DecodeError(f"unsupported wire type {wire}")
        if pos > end:
            raise _DecodeError("truncated message")
        yield field, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for f, _, v in _fields(buf):
        if f == 1:
            key = bytes(v).decode()
        elif f == 2:
            value = bytes(v)
    return key, value


def _tensor_shape(buf: bytes) -> list[int] | None:
    dims: list[int] = []
    for f, _, v in _fields(buf):
        if f == 2:
            size = 0
            for df, _, dv in _fields(v):
                if df == 1:
                    size = _signed(dv)
            dims.append(size)
        elif f == 3 and v:
            return None
    return dims


def _tensor_info(buf: bytes) -> dict[str, Any]:
    info: dict[str, Any] = {"dtype": "invalid", "shape": None, "tensor": ""}
    for f, _, v in _fields(buf):
        if f == 1:
            info["tensor"] = bytes(v).decode()
        elif f == 2:
            info["dtype"] = DTYPE_ENUM.get(v, f"dtype_{v}")
        elif f == 3:
            info["shape"] = _tensor_shape(v)
    return info


def _signature_def(buf: bytes) -> Signature:
    sig: Signature = {"inputs": {}, "outputs": {}, "method_name": ""}
    for f, _, v in _fields(buf):
        if f in (1, 2):
            key, value = _map_entry(v)
            sig["inputs" if f == 1 else "outputs"][key] = _tensor_info(value)
        elif f == 3:
            sig["method_name"] = bytes(v).decode()
    for side in ("inputs", "outputs"):
        sig[side] = dict(sorted(sig[side].items()))
    return sig


def _meta_graph(buf: bytes) -> tuple[list[str], dict[str, Signature]]:
    tags: list[str] = []
    sigs: dict[str, Signature] = {}
    for f, _, v in _fields(buf):
        if f == 1:
            tags += [bytes(tv).decode() for tf_, _, tv in _fields(v) if tf_ == 4]
        elif f == 5:
            key, value = _map_entry(v)
            if key != _INIT_OP_KEY:
                sigs[key] = _signature_def(value)
    return tags, dict(sorted(sigs.items()))


def parse_signatures(data: bytes) -> dict[str, Signature]:
    """Signatures of the `serve` meta graph of a serialized SavedModel proto."""
    graphs = [_meta_graph(bytes(v)) for f, w, v in _fields(data) if f == 2 and w == 2]
    for tags, sigs in graphs:
        if "serve" in tags:
            return sigs
    if graphs:
        return graphs[0][1]
    raise _DecodeError("no meta graph")


_SHARD_RE = re.compile(r"variables\.data-(\d{5})-of-(\d{5})")


def read_signatures(model_dir: str | Path, *, require_default: bool = True) -> dict[str, Signature]:
    """Check that `model_dir` is a complete SavedModel and return its signatures.

    Raises InvalidInput naming the directory and what is wrong: no saved_model.pb, an unreadable proto,
    missing variable shards, or no `serving_default` signature.
    """
    path = Path(model_dir)
    if not path.exists():
        raise NotFound(f"{path}: no such file or directory")
    if not path.is_dir():
        raise InvalidInput(f"{path}: not a SavedModel directory (expected a directory holding saved_model.pb)")
    pb = path / "saved_model.pb"
    if not pb.is_file():
        hint = " (did you mean a model directory inside it?)" if any(p.is_dir() for p in path.iterdir()) else ""
        raise InvalidInput(f"{path}: not a SavedModel: no saved_model.pb{hint}")
    try:
        sigs = parse_signatures(pb.read_bytes())
    except (_DecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{pb}: not a readable SavedModel proto ({exc})") from None
    _check_variables(path)
    if require_default and DEFAULT_SIGNATURE not in sigs:
        found = ", ".join(sigs) or "none"
        raise InvalidInput(f"{path}: SavedModel has no '{DEFAULT_SIGNATURE}' signature (found: {found})")
    return sigs


def _check_variables(path: Path) -> None:
    var_dir = path / "variables"
    if not var_dir.is_dir():
        return
    names = {p.name for p in var_dir.iterdir()}
    shards = [m for m in map(_SHARD_RE.fullmatch, names) if m]
    if not names:
        return
    if "variables.index" not in names:
        raise InvalidInput(f"{var_dir}: incomplete SavedModel: variables.index is missing")
    if shards:
        total = int(shards[0].group(2))
        missing = [f"variables.data-{i:05d}-of-{total:05d}" for i in range(total)
                   if f"variables.data-{i:05d}-of-{total:05d}" not in names]
        if missing:
            raise InvalidInput(f"{var_dir}: incomplete SavedModel: {missing[0]} is missing")
