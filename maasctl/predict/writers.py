"""Output writers for `maasctl predict`: json (TF Serving's response body), jsonl, csv, table.

Writers receive output arrays chunk by chunk, in input order, and write as they go (except `table`, which is
for people and renders at the end). For classification models with recorded class names, jsonl/csv/table add
`label` and `score`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.predict import fastfmt
from maasctl.predict.schema import ModelSchema
from maasctl.tensors import to_jsonable

OUTPUT_FORMATS = ("json", "jsonl", "csv", "table")


class Writer:
    """Receives output arrays chunk by chunk, in input order."""

    def __init__(self, out: TextIO, schema: ModelSchema, keep: list[str] | tuple[str, ...] = ()) -> None:
        self.out = out
        self.schema = schema
        self.label_output = schema.label_output
        self.keep = list(keep)  # input columns copied to the output, before the model's outputs
        self.rows = 0

    def write(self, outputs: dict[str, np.ndarray], kept: dict[str, list[Any]] | None = None) -> None:
        raise NotImplementedError

    def write_body(self, body: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
        """A whole response for a request-body input; `outputs` is its decoded form."""
        self.write(outputs)

    def close(self) -> None:
        self.out.flush()

    def _write_bytes(self, data: bytes) -> None:
        buffer = getattr(self.out, "buffer", None)
        if buffer is None:
            self.out.write(data.decode())
            return
        self.out.flush()
        buffer.write(data)

    def labels(self, outputs: dict[str, np.ndarray]) -> tuple[list[str], list[float]] | None:
        if self.label_output is None or self.label_output not in outputs:
            return None
        probs = outputs[self.label_output]
        if probs.ndim != 2 or probs.shape[1] != len(self.schema.class_names or []):
            return None
        idx = probs.argmax(axis=1)
        names = np.asarray(self.schema.class_names, dtype=object)
        return names[idx].tolist(), probs[np.arange(len(idx)), idx].tolist()


class JsonWriter(Writer):
    """One JSON document `{"predictions": [...]}`, written incrementally, one prediction per line."""

    def __init__(self, out: TextIO, schema: ModelSchema, keep: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(out, schema, keep)
        self._started = False
        self._body_written = False

    def write(self, outputs: dict[str, np.ndarray], kept: dict[str, list[Any]] | None = None) -> None:
        self._start()
        names = list(outputs)
        if not names or not len(outputs[names[0]]):
            return
        arr = outputs[names[0]]
        if len(names) == 1 and arr.dtype != object and arr.dtype.kind in "fiub" and finite(arr):
            # bulk path: one orjson call, a newline between rows by byte replacement (no per-row work)
            data = orjson.dumps(np.ascontiguousarray(arr), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
            k = arr.ndim - 1
            sep = b"]" * k + b"," + b"[" * k
            data = data.replace(sep, sep[:k + 1] + b"\n" + sep[k + 1:])
            self._write_bytes((b",\n" if self.rows else b"") + data)
            self.rows += len(arr)
            return
        if len(names) == 1:
            texts = _row_texts(arr)
        else:
            keys = [json.dumps(n) for n in names]
            texts = ["{" + ",".join(f"{k}:{v}" for k, v in zip(keys, vals)) + "}"
                     for vals in zip(*(_row_texts(outputs[n]) for n in names))]
        self.out.write((",\n" if self.rows else "") + ",\n".join(texts))
        self.rows += len(texts)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self.out.write('{"predictions": [\n')

    def write_body(self, body: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
        self.out.write(json.dumps(body) + "\n")
        self._body_written = True

    def close(self) -> None:
        if not self._body_written:
            self._start()
            self.out.write("\n]}\n")
        super().close()


def finite(arr: np.ndarray) -> bool:
    """orjson writes NaN and infinities as null; arrays holding them take the stdlib path, which writes TF
    Serving's tokens NaN, Infinity and -Infinity (the one convention, see README "Non-finite numbers")."""
    return arr.dtype.kind != "f" or bool(np.isfinite(arr).all())


def _row_texts(arr: np.ndarray) -> list[str]:
    """Each row of `arr` as JSON text (a number, or a nested list). Numeric arrays go through orjson in bulk,
    which also writes float32 in its shortest form."""
    if arr.dtype != object and arr.dtype.kind in "fiub" and len(arr) and finite(arr):
        text = orjson.dumps(np.ascontiguousarray(arr), option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1]
        if arr.ndim == 1:
            return text.split(",")
        sep = "]" * (arr.ndim - 1) + "," + "[" * (arr.ndim - 1)
        parts = text.split(sep)
        if len(parts) == len(arr):
            return [_wrap(p, i, len(parts), arr.ndim) for i, p in enumerate(parts)]
    if arr.dtype == np.float32:  # shortest float32 text, as orjson writes it, with non-finite tokens
        return [json.dumps(v, separators=(",", ":")) for v in np.vectorize(_f32, otypes=[object])(arr).tolist()] \
            if arr.ndim > 1 else [json.dumps(_f32(v)) for v in arr]
    return [json.dumps(v, separators=(",", ":")) for v in to_jsonable(arr)]


def _f32(v: Any) -> Any:
    f = float(v)
    return f if not np.isfinite(f) else float(str(np.float32(v)))


def _wrap(part: str, i: int, n: int, ndim: int) -> str:
    """Restore the brackets that splitting a nested list on `]],[[`-style separators removed."""
    k = ndim - 1
    if i > 0:
        part = "[" * k + part
    if i < n - 1:
        part = part + "]" * k
    return part


def _flat_header(name: str, width: int, class_names: list[str] | None = None) -> list[str]:
    """CSV header cells of one flattened output: p_CLASS for class scores, else name_0, name_1..."""
    if class_names and len(class_names) == width:
        return [f"p_{c}" for c in class_names]
    return [f"{name}_{j}" for j in range(width)]


def _flat_texts(name: str, arr: np.ndarray, class_names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """CSV header cells and, per row, the comma-joined cells of one output (flattened: name_0, name_1...)."""
    if arr.ndim == 1:
        cells = _row_texts(arr) if arr.dtype != object else [_csv_cell(v) for v in to_jsonable(arr)]
        return [name], cells
    flat = arr.reshape(len(arr), -1)
    header = _flat_header(name, flat.shape[1], class_names)
    if flat.dtype != object:
        return header, [t[1:-1] for t in _row_texts(flat)]
    return header, [",".join(_csv_cell(v) for v in row) for row in to_jsonable(flat)]


def _kept_columns(keep: list[str], kept: dict[str, list[Any]] | None, rows: int, as_text: Callable[[Any], str]
                  ) -> list[list[str]]:
    """Per --keep column, its cells for these rows (empty when a chunk came without them)."""
    kept = kept or {}
    return [[as_text(v) for v in kept[k]] if k in kept else [as_text(None)] * rows for k in keep]


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    text = v if isinstance(v, str) else json.dumps(v)
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


class JsonlWriter(Writer):
    """One JSON object per input row: {kept column, ..., output: value, ..., label, score}."""

    def write(self, outputs: dict[str, np.ndarray], kept: dict[str, list[Any]] | None = None) -> None:
        names = list(outputs)
        if not names or not len(outputs[names[0]]):
            return
        rows = len(outputs[names[0]])
        # no input columns to repeat and no NaN/Infinity (written as tokens below): the vectorised path (fastfmt.py)
        if not self.keep and all(finite(v) for v in outputs.values()):
            fast = fastfmt.jsonl_chunk(outputs, fastfmt.label_columns(outputs, self.label_output,
                                                                      self.schema.class_names, json.dumps))
            if fast is not None:
                self._write_bytes(fast)
                self.rows += rows
                return
        keys = [json.dumps(n) for n in self.keep] + [json.dumps(n) for n in names]
        columns = _kept_columns(self.keep, kept, rows, json.dumps) + [_row_texts(outputs[n]) for n in names]
        labels = self.labels(outputs)
        if labels is not None:
            keys += ['"label"', '"score"']
            columns += [[json.dumps(x) for x in labels[0]], _row_texts(np.asarray(labels[1], dtype=np.float32))]
        lines = ["{" + ",".join(f"{k}:{v}" for k, v in zip(keys, vals)) + "}" for vals in zip(*columns)]
        self.out.write("\n".join(lines) + "\n")
        self.rows += len(lines)


class CsvWriter(Writer):
    """A header row, then one row per input row: --keep columns, flattened outputs (`p_CLASS` for class
    scores, else `name_j`), then label and score."""

    def __init__(self, out: TextIO, schema: ModelSchema, keep: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(out, schema, keep)
        self._header: list[str] | None = None

    def write(self, outputs: dict[str, np.ndarray], kept: dict[str, list[Any]] | None = None) -> None:
        rows = len(next(iter(outputs.values()))) if outputs else 0
        if self._header is not None and rows and not self.keep and all(finite(v) for v in outputs.values()):
            # the vectorised path (fastfmt.py); NaN/Infinity take the one below, which writes TF Serving's tokens
            fast_labels = fastfmt.label_columns(outputs, self.label_output, self.schema.class_names, _csv_cell)
            fast = fastfmt.csv_chunk(outputs, fast_labels)
            if fast is not None:
                self._write_bytes(fast)
                self.rows += rows
                return
        header: list[str] = list(self.keep)
        columns: list[list[str]] = _kept_columns(self.keep, kept, rows, _csv_cell)
        for n, arr in outputs.items():
            h, c = _flat_texts(n, arr, self.schema.class_names if n == self.label_output else None)
            header += h
            columns.append(c)
        labels = self.labels(outputs)
        if labels is not None:
            header += ["label", "score"]
            columns += [[_csv_cell(x) for x in labels[0]], _row_texts(np.asarray(labels[1], dtype=np.float32))]
        if self._header is None:
            self._header = header
            self.out.write(",".join(_csv_cell(h) for h in header) + "\n")
        if columns and columns[0]:
            self.out.write("\n".join(",".join(vals) for vals in zip(*columns)) + "\n")
            self.rows += len(columns[0])

    def close(self) -> None:
        if self._header is None:  # no rows: still a header, from the signature's output shapes
            header = list(self.keep)
            for name, spec in self.schema.outputs.items():
                shape = spec.get("shape") or [-1]
                width = int(np.prod(shape[1:])) if len(shape) > 1 and min(shape[1:]) > 0 else 0
                classes = self.schema.class_names if name == self.label_output else None
                header += _flat_header(name, width, classes) if len(shape) > 1 else [name]
            if self.label_output:
                header += ["label", "score"]
            self.out.write(",".join(_csv_cell(h) for h in header) + "\n")
        super().close()


class TableWriter(Writer):
    """A rich table on close (for people; keeps the rows, so meant for small inputs)."""

    def __init__(self, out: TextIO, schema: ModelSchema, keep: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(out, schema, keep)
        self._rows: list[list[str]] = []
        self._header: list[str] = []

    def write(self, outputs: dict[str, np.ndarray], kept: dict[str, list[Any]] | None = None) -> None:
        names = list(outputs)
        self._header = ["#", *self.keep, *names]
        lists = [to_jsonable(outputs[n]) for n in names]
        rows = len(lists[0]) if lists else 0
        extra = _kept_columns(self.keep, kept, rows, lambda v: "" if v is None else str(v))
        labels = self.labels(outputs)
        if labels is not None:
            self._header += ["label", "score"]
        for i, vals in enumerate(zip(*lists)):
            cells = [str(self.rows + i + 1), *(c[i] for c in extra), *(_fmt(v) for v in vals)]
            if labels is not None:
                cells += [labels[0][i], f"{labels[1][i]:.4f}"]
            self._rows.append(cells)
        self.rows += len(lists[0]) if lists else 0

    def close(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_edge=False, header_style="bold")
        for h in self._header or ["#"]:
            table.add_column(h, justify="right" if h in ("#", "score") else "left")
        for r in self._rows:
            table.add_row(*r)
        Console(file=self.out, soft_wrap=True).print(table)
        super().close()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


WRITERS = {"json": JsonWriter, "jsonl": JsonlWriter, "csv": CsvWriter, "table": TableWriter}


def check_format(fmt: str) -> str:
    if fmt not in WRITERS:
        raise InvalidInput(f"--format {fmt!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


OUTPUT_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def output_format(fmt: str | None, path: str | None) -> str:
    """--format if given, else from --output's extension (.json, .jsonl, .csv), else json.

    An --output whose extension names no format, without --format, is InvalidInput (before any work)."""
    if fmt is not None:
        return check_format(fmt)
    if path is None or path == "-" or Path(path).is_dir():  # a directory: open_output says what is wrong
        return "json"
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise InvalidInput(f"--output {path}: cannot tell the format from the extension '{ext}' (expected "
                           f".json, .jsonl or .csv); pass --format {'|'.join(OUTPUT_FORMATS)}")
    return OUTPUT_EXTENSIONS[ext]


def make_writer(fmt: str, out: TextIO, schema: ModelSchema, keep: list[str] | tuple[str, ...] = ()) -> Writer:
    if keep and fmt == "json":
        raise InvalidInput(f"--keep {','.join(keep)}: the json format is TF Serving's response body, which has no "
                           f"room for input columns; use --format jsonl, csv or table")
    return WRITERS[check_format(fmt)](out, schema, keep)


def open_output(path: str | None) -> tuple[TextIO, Callable[[bool], None]]:
    """stdout, or FILE written as FILE.partial and renamed on success (removed on failure).

    Call before any work: a FILE that cannot be written (a directory, a missing or read-only folder) is an
    InvalidInput here, not an error after the whole prediction.
    """
    if path is None or path == "-":
        return sys.stdout, lambda ok: None
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"--output {path}: is a directory (pass a file name, e.g. {target / 'predictions.json'})")
    if target.exists() and not os.access(target, os.W_OK):
        raise InvalidInput(f"--output {path}: cannot write (permission denied)")
    tmp = target.with_name(target.name + ".partial")
    try:
        f = open(tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - returned; closed by finish()
    except OSError as exc:
        raise InvalidInput(f"--output {path}: cannot write {tmp.name} in {target.parent} "
                           f"({exc.strerror})") from None

    def finish(ok: bool) -> None:
        f.close()
        if not ok:
            tmp.unlink(missing_ok=True)
            return
        try:
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OperationFailed(f"--output {path}: cannot replace it with the predictions ({exc.strerror}); "
                                  f"nothing was written") from None

    return f, finish
