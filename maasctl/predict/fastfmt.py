"""Vectorised CSV / JSON Lines formatting of numeric prediction chunks (no Python work per value or row).

Each numeric output is written by one orjson call (float32 in its shortest form, as the per-row writers do)
and cut into row texts with one `bytes.split`; the label column is a NumPy take on per-class texts. The rows
are then assembled by a single `bytes.join` over the columns interleaved with constant separators (slice
assignment into one list), so a 1024-row chunk costs a handful of C calls. Anything else (strings, empty
rows) returns None and the writers fall back to their general path; the bytes produced are identical.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

_NUMERIC = frozenset("fiub")


def row_texts(arr: np.ndarray) -> list[bytes] | None:
    """One text per row of a numeric 1-D or 2-D array: a number, or `a,b,c` (brackets left to the caller)."""
    if arr.dtype == object or arr.dtype.kind not in _NUMERIC or not 1 <= arr.ndim <= 2 \
            or not len(arr) or (arr.ndim == 2 and arr.shape[1] == 0):
        return None
    text = orjson.dumps(np.ascontiguousarray(arr), option=orjson.OPT_SERIALIZE_NUMPY)
    parts = text[1:-1].split(b",") if arr.ndim == 1 else text[2:-2].split(b"],[")
    return parts if len(parts) == len(arr) else None


def _interleave(columns: list[list[bytes]], separators: list[bytes], n: int) -> bytes:
    """columns[0][i] + separators[0] + columns[1][i] + separators[1] ... for every row i, in one join."""
    width = 2 * len(columns)
    parts: list[bytes] = [b""] * (width * n)
    for j, (col, sep) in enumerate(zip(columns, separators)):
        parts[2 * j::width] = col
        parts[2 * j + 1::width] = [sep] * n
    return b"".join(parts)


def label_columns(outputs: dict[str, np.ndarray], label_output: str | None, class_names: list[str] | None,
                  label_text: Any) -> tuple[list[bytes], list[bytes]] | None:
    """(label texts, score texts) per row, or None when this chunk has no label column."""
    if label_output is None or label_output not in outputs or not class_names:
        return None
    probs = outputs[label_output]
    if probs.ndim != 2 or probs.shape[1] != len(class_names) or probs.dtype.kind != "f":
        return None
    idx = probs.argmax(axis=1)
    names = np.array([label_text(c).encode() for c in class_names], dtype=object)
    scores = row_texts(np.asarray(probs[np.arange(len(idx)), idx], dtype=np.float32))
    if scores is None:
        return None
    return names[idx].tolist(), scores


def csv_chunk(outputs: dict[str, np.ndarray], labels: tuple[list[bytes], list[bytes]] | None) -> bytes | None:
    """CSV rows (no header) for numeric outputs: flattened outputs, then label and score."""
    columns = []
    for arr in outputs.values():
        texts = row_texts(arr.reshape(len(arr), -1) if arr.ndim > 2 else arr)
        if texts is None:
            return None
        columns.append(texts)
    if labels is not None:
        columns += [labels[0], labels[1]]
    if not columns:
        return None
    return _interleave(columns, [b","] * (len(columns) - 1) + [b"\n"], len(columns[0]))


def jsonl_chunk(outputs: dict[str, np.ndarray], labels: tuple[list[bytes], list[bytes]] | None) -> bytes | None:
    """JSON Lines `{"out": [...], "label": ..., "score": ...}` for numeric 1-D/2-D outputs."""
    columns, opens, closes, keys = [], [], [], []
    for name, arr in outputs.items():
        texts = row_texts(arr)
        if texts is None:
            return None
        columns.append(texts)
        keys.append(json.dumps(name).encode())
        opens.append(b"[" if arr.ndim == 2 else b"")
        closes.append(b"]" if arr.ndim == 2 else b"")
    if labels is not None:
        columns += [labels[0], labels[1]]
        keys += [b'"label"', b'"score"']
        opens += [b"", b""]
        closes += [b"", b""]
    if not columns:
        return None
    first = b"{" + keys[0] + b":" + opens[0]
    separators = [closes[j] + b"," + keys[j + 1] + b":" + opens[j + 1] for j in range(len(columns) - 1)]
    separators.append(closes[-1] + b"}\n" + first)  # each line's end and the next line's start
    return first + _interleave(columns, separators, len(columns[0]))[:-len(first)]
