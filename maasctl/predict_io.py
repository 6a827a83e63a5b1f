"""Predict inputs and outputs: read rows/records/request bodies, check them against a signature, write results.

No TensorFlow here. The pieces:

- `ModelSchema`: a signature plus what maasctl recorded with the model (feature names, class names), and the
  "tabular layout" of its inputs (a flat list of scalar columns) when the inputs allow one.
- `open_input`: an `InputSource` over a file or stdin in one of the formats json / jsonl / csv, yielding either one
  TF Serving request body (`{"instances"}`/`{"inputs"}`, passed through as is) or chunks of rows/records.
- `Encoder`: turns a chunk into `{input name: np.ndarray}` of the signature's dtypes, or raises InvalidInput
  naming the file, row and column. Nothing is sent before a chunk has passed it.
- The wire format: request bodies and response decoding (shared by the server path and --local).
Output writers live in maasctl.predict_output.

Records are mapped to columns by name: the feature names recorded with the model (single-input models) or the
input names (models whose inputs are all scalar per row). When no names are known (a model only reachable
through a server, which has no feature-name route), records and CSV columns are taken in the file's order and
must have exactly as many fields as the model has columns; a warning says so.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np

from maasctl.errors import InvalidInput

try:  # optional speed-up: numpy-aware, 10x faster JSON encoding/decoding of numeric batches
    import orjson
except ImportError:  # pragma: no cover - orjson is present wherever the serve extra is installed
    orjson = None

FORMATS = ("json", "jsonl", "csv")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_FLOATS = {"float16": np.float16, "bfloat16": np.float32, "float32": np.float32, "float64": np.float64}
_INTS = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
         "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64}
_DT_NAMES = {"DT_HALF": "float16", "DT_BFLOAT16": "bfloat16", "DT_FLOAT": "float32", "DT_DOUBLE": "float64",
             "DT_STRING": "string", "DT_BOOL": "bool", **{f"DT_{k.upper()}": k for k in _INTS}}


def dtype_kind(dtype: str) -> str:
    """'float', 'int', 'bool' or 'string'; InvalidInput for dtypes a JSON client cannot feed."""
    if dtype in _FLOATS:
        return "float"
    if dtype in _INTS:
        return "int"
    if dtype in ("bool", "string"):
        return dtype
    raise InvalidInput(f"inputs of dtype {dtype} are not supported by maasctl predict")


def numpy_dtype(dtype: str) -> Any:
    if dtype in _FLOATS:
        return _FLOATS[dtype]
    if dtype in _INTS:
        return _INTS[dtype]
    return np.bool_ if dtype == "bool" else object


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
            if dtype_kind_safe(spec["dtype"]) == "float" and shape and len(shape) == 2 and shape[1] in (n, -1):
                if len(self.outputs) == 1 or shape[1] == n:
                    return name
        return None


def dtype_kind_safe(dtype: str) -> str:
    try:
        return dtype_kind(dtype)
    except InvalidInput:
        return "other"


def schema_from_signature(sig: dict[str, Any], signature_name: str, meta: dict[str, Any] | None = None
                          ) -> ModelSchema:
    meta = meta or {}
    return ModelSchema(signature_name, {k: dict(v) for k, v in sig["inputs"].items()},
                       {k: dict(v) for k, v in sig["outputs"].items()},
                       feature_names=meta.get("feature_names") or None, class_names=meta.get("class_names") or None,
                       task=meta.get("task"))


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
        return {"dtype": _DT_NAMES.get(t.get("dtype", ""), str(t.get("dtype", "")).lower()), "shape": shape,
                "tensor": t.get("name", "")}

    sig = sigs[signature_name]
    return {"inputs": {k: spec(v) for k, v in sorted(sig.get("inputs", {}).items())},
            "outputs": {k: spec(v) for k, v in sorted(sig.get("outputs", {}).items())},
            "method_name": sig.get("method_name", "")}


# -- reading -------------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    """A run of consecutive input rows. `start` is the 0-based index of the first row in the whole input."""

    kind: str  # "values" (JSON rows and/or records) or "csv" (raw CSV lines)
    items: list[Any]
    start: int
    first_line: int = 0  # csv: 1-based line number of items[0]
    consumed: int = 0  # bytes (characters) of input consumed so far, for progress
    has_bool: bool = True  # JSON: whether a true/false token may occur (False allows a faster check)

    @property
    def rows(self) -> int:
        return len(self.items)


def detect_format(path: str, explicit: str | None) -> str | None:
    if explicit:
        if explicit not in FORMATS:
            raise InvalidInput(f"--input-format {explicit!r}: expected one of {', '.join(FORMATS)}")
        return explicit
    if path == "-":
        return None
    ext = Path(path).suffix.lower()
    if ext not in _EXTENSIONS:
        raise InvalidInput(f"{path}: cannot tell the input format from the extension '{ext}' "
                           f"(expected .json, .jsonl, .csv); pass --input-format")
    return _EXTENSIONS[ext]


class InputSource:
    """One input (file or stdin) in one format. Iterate `chunks()`; `body` is set for request bodies."""

    def __init__(self, path: str, fmt: str | None = None, *, stream: TextIO | None = None) -> None:
        self.path = path
        self.where = "<stdin>" if path == "-" else path
        fmt = detect_format(path, fmt)
        self._regular = False  # a regular file can be read twice (check everything, then send)
        if path == "-":
            self._file = stream or sys.stdin
            self.size = 0
        else:
            try:
                self._file = open(path, encoding="utf-8-sig", newline="")
            except FileNotFoundError:
                raise InvalidInput(f"{path}: no such file") from None
            except (IsADirectoryError, PermissionError) as exc:
                raise InvalidInput(f"{path}: cannot read ({exc.strerror})") from None
            st = os.fstat(self._file.fileno())
            # A FIFO, /dev/stdin or a process substitution (<(...)) is a path but a stream: read it once.
            self._regular = stat.S_ISREG(st.st_mode)
            self.size = st.st_size if self._regular else 0
        self._pushback: list[str] = []
        self._header_len = 0
        self._has_bool = True
        if fmt is None:
            fmt = self._sniff()
        self.format = fmt
        self.body: dict[str, Any] | None = None
        self._values: list[Any] | None = None
        if fmt == "json":
            self._load_json()

    @property
    def rewindable(self) -> bool:
        """Whether `rewind` can replay the input: a regular file, or a JSON document (held in memory)."""
        return self._regular or self.format == "json"

    def close(self) -> None:
        if self.path != "-":
            self._file.close()

    def rewind(self) -> None:
        """Start again from the first row (CSV: call `header()` again)."""
        if self.format == "json":
            return
        self._file.seek(0)
        self._pushback = []

    def _readline(self) -> str:
        if self._pushback:
            return self._pushback.pop(0)
        return self._file.readline()

    def _sniff(self) -> str:
        """stdin without --input-format: JSON Lines if the first line is a whole JSON value and more follow."""
        first = self._file.readline()
        while first and not first.strip():
            first = self._file.readline()
        self._pushback = [first]
        if not first.lstrip().startswith(("{", "[")):
            return "csv"
        try:
            json.loads(first)
        except ValueError:
            return "json"
        second = self._file.readline()
        self._pushback.append(second)
        while second and not second.strip():
            second = self._file.readline()
            self._pushback.append(second)
        return "jsonl" if second.strip() else "json"

    def _load_json(self) -> None:
        text = "".join(self._pushback) + self._file.read()
        self._pushback = []
        self.size = len(text)
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"{self.where}: not valid JSON ({exc})") from None
        if isinstance(doc, dict):
            if "instances" in doc or "inputs" in doc:
                if "instances" in doc and "inputs" in doc:
                    raise InvalidInput(f"{self.where}: a request body has either 'instances' or 'inputs', not both")
                self.body = doc
                return
            raise InvalidInput(f"{self.where}: a JSON object input must be a TF Serving request body with "
                               f"'instances' or 'inputs' (found keys: {', '.join(list(doc)[:5]) or 'none'})")
        if not isinstance(doc, list):
            raise InvalidInput(f"{self.where}: expected a JSON array of rows or records, or a request body")
        self._values = doc
        self._has_bool = "true" in text or "false" in text

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        if self.body is not None:
            return iter(())
        if self.format == "json":
            return self._json_chunks(batch_size)
        if self.format == "jsonl":
            return self._jsonl_chunks(batch_size)
        return self._csv_chunks(batch_size)

    def _json_chunks(self, batch_size: int) -> Iterator[Chunk]:
        values = self._values or []
        for i in range(0, len(values), batch_size):
            yield Chunk("values", values[i:i + batch_size], i, consumed=self.size * min(len(values), i + batch_size)
                        // max(1, len(values)), has_bool=self._has_bool)

    def _jsonl_chunks(self, batch_size: int) -> Iterator[Chunk]:
        row = consumed = 0
        line_no = 0
        items: list[Any] = []
        has_bool = False
        loads = orjson.loads if orjson else json.loads
        while True:
            line = self._readline()
            if not line:
                break
            line_no += 1
            consumed += len(line)
            if not line.strip():
                continue
            try:
                items.append(loads(line))
            except ValueError as exc:
                raise InvalidInput(f"{self.where}: line {line_no} (row {row + len(items) + 1}): not valid JSON "
                                   f"({str(exc).splitlines()[0]})") from None
            has_bool = has_bool or "true" in line or "false" in line
            if len(items) == batch_size:
                yield Chunk("values", items, row, consumed=consumed, has_bool=has_bool)
                row += len(items)
                items, has_bool = [], False
        if items:
            yield Chunk("values", items, row, consumed=consumed, has_bool=has_bool)

    def header(self) -> list[str]:
        """The CSV header (read once, before `chunks`)."""
        line = self._readline()
        while line and not line.strip():
            line = self._readline()
        if not line:
            raise InvalidInput(f"{self.where}: empty CSV input (expected a header row)")
        names = [c.strip() for c in next(csv.reader([line], skipinitialspace=True))]
        self._header_len = len(line)
        return names

    def _csv_chunks(self, batch_size: int) -> Iterator[Chunk]:
        # The header line was consumed by header(); chunks are raw lines so numeric CSVs parse in bulk.
        # (A quoted field spanning lines is not supported: a chunk boundary may cut it.)
        row, line_no, consumed = 0, 2, self._header_len
        read = self._file.readline
        while True:
            lines, self._pushback = self._pushback[:batch_size], self._pushback[batch_size:]
            lines = [ln for ln in lines if ln]
            lines.extend(itertools.islice(iter(read, ""), batch_size - len(lines)))
            if not lines:
                return
            consumed += sum(map(len, lines))
            yield Chunk("csv", lines, row, first_line=line_no, consumed=consumed)
            row += len(lines)
            line_no += len(lines)


def open_input(path: str, fmt: str | None = None) -> InputSource:
    return InputSource(path, fmt)


# -- validation and encoding ---------------------------------------------------------------------------------
_KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false", "string": "a string"}


def _type_ok(value: Any, kind: str) -> bool:
    t = type(value)
    if kind == "float":
        return t is float or t is int
    if kind == "int":
        return t is int
    if kind == "bool":
        return t is bool
    return t is str or (t is dict and set(value) == {"b64"} and isinstance(value["b64"], str))


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shape_of(value: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


class Encoder:
    """Checks chunks of input against a ModelSchema and turns them into input arrays."""

    def __init__(self, schema: ModelSchema, where: str, warn: Callable[[str], None] | None = None) -> None:
        self.schema = schema
        self.where = where
        self._warn = warn or (lambda text: None)
        self._warned = False
        self._csv_perm: list[int] | None = None
        self._csv_header: list[str] | None = None

    # messages -----------------------------------------------------------------------------------------------
    def _err(self, row: int, text: str, line: int | None = None) -> InvalidInput:
        at = f"row {row}" + (f" (line {line})" if line else "")
        return InvalidInput(f"{self.where}: {at}: {text}")

    def _positional_warning(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            cols = self.schema.columns or []
            self._warn(f"warning: no feature names are known for this model; {what} are mapped to its "
                       f"{len(cols)} input columns in the file's order (register the model with feature_names, "
                       f"or predict with --model from the store, to map them by name)")

    # CSV ----------------------------------------------------------------------------------------------------
    def set_csv_header(self, header: list[str]) -> None:
        cols = self.schema.columns
        if cols is None:
            raise InvalidInput(f"{self.where}: CSV input needs a model whose inputs are scalar columns; this model's "
                               f"inputs are {self._describe_inputs()} (use JSON rows or a request body)")
        seen: set[str] = set()
        for h in header:
            if h in seen:
                raise InvalidInput(f"{self.where}: line 1 (header): column '{h}' appears twice")
            seen.add(h)
        names = [c.name for c in cols]
        if self.schema.names_known:
            missing = [n for n in names if n not in seen]
            unknown = [h for h in header if h not in names]
            if missing:
                raise InvalidInput(f"{self.where}: line 1 (header): missing column '{missing[0]}' "
                                   f"(expected: {', '.join(names)})")
            if unknown:
                raise InvalidInput(f"{self.where}: line 1 (header): unknown column '{unknown[0]}' "
                                   f"(expected: {', '.join(names)})")
            self._csv_perm = [header.index(n) for n in names]
        else:
            if len(header) != len(cols):
                raise InvalidInput(f"{self.where}: line 1 (header): {len(header)} columns, the model takes "
                                   f"{len(cols)} ({self._describe_inputs()})")
            self._positional_warning("CSV columns")
            self._csv_perm = list(range(len(cols)))
        self._csv_header = header

    def encode(self, chunk: Chunk) -> dict[str, np.ndarray]:
        if chunk.kind == "csv":
            return self._encode_csv(chunk)
        return self._encode_values(chunk.items, chunk.start, chunk.has_bool)

    def _encode_csv(self, chunk: Chunk) -> dict[str, np.ndarray]:
        cols = self.schema.columns
        assert cols is not None and self._csv_perm is not None and self._csv_header is not None
        kinds = {c.kind for c in cols}
        n = len(cols)
        if len(kinds) == 1 and kinds <= {"float", "int"}:
            # bulk path: NumPy's C CSV parser; anything it rejects is re-parsed slowly for an exact message
            try:
                arr = np.loadtxt(chunk.items, delimiter=",", quotechar='"', comments=None, ndmin=2,
                                 dtype=np.float64 if "float" in kinds else np.int64)
            except ValueError:
                arr = None
            if arr is not None and arr.shape[1] == n:
                if self._csv_perm != list(range(n)):
                    arr = arr[:, self._csv_perm]
                return self._from_columns(arr)
        return self._encode_csv_slow(chunk)

    def _encode_csv_slow(self, chunk: Chunk) -> dict[str, np.ndarray]:
        cols = self.schema.columns
        assert cols is not None and self._csv_perm is not None and self._csv_header is not None
        header, perm, width = self._csv_header, self._csv_perm, len(self._csv_header)
        parsed: list[list[Any]] = []
        line = chunk.first_line
        row = chunk.start
        for fields in _csv_rows(chunk.items, self.where, chunk.first_line):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                line += 1
                continue
            row += 1
            if len(fields) != width:
                raise self._err(row, f"{len(fields)} fields, the header has {width} ({', '.join(header)})", line)
            out = []
            for c, j in zip(cols, perm):
                cell = fields[j]
                out.append(self._parse_cell(cell, c, row, line, header[j]))
            parsed.append(out)
            line += 1
        if len(cols) and all(c.kind in ("float", "int") for c in cols) and len({c.kind for c in cols}) == 1:
            arr = np.array(parsed, dtype=np.float64 if cols[0].kind == "float" else np.int64).reshape(-1, len(cols))
            return self._from_columns(arr)
        return self._from_column_lists([[r[k] for r in parsed] for k in range(len(cols))], len(parsed))

    def _parse_cell(self, cell: str, col: Column, row: int, line: int, header_name: str) -> Any:
        kind = col.kind
        text = cell.strip()
        try:
            if kind == "float":
                return float(text)
            if kind == "int":
                return int(text)
        except ValueError:
            what = "empty" if not text else repr(cell)
            raise self._err(row, f"column '{header_name}': {what} is not {_KIND_WORDS[kind]} "
                                 f"(input '{col.input}' is {self._dtype(col.input)})", line) from None
        if kind == "bool":
            low = text.lower()
            if low in ("true", "1"):
                return True
            if low in ("false", "0"):
                return False
            raise self._err(row, f"column '{header_name}': {cell!r} is not true or false", line)
        return cell

    # JSON rows / records ------------------------------------------------------------------------------------
    def _encode_values(self, items: list[Any], start: int, has_bool: bool = True) -> dict[str, np.ndarray]:
        schema = self.schema
        cols = schema.columns
        single = schema.single_input
        if items and all(isinstance(v, dict) for v in items):
            if single and all(set(v) == {single} for v in items) and (cols is None or cols[0].name != single):
                return self._encode_structured([{single: v[single]} for v in items], start)
            if cols is None:
                return self._encode_structured(items, start)
            rows = self._records_to_rows(items, start)
            return self._encode_rows(rows, start, has_bool)
        for i, v in enumerate(items):
            if isinstance(v, dict):
                raise self._err(start + i + 1, "a record among rows (use either rows or records throughout)")
        if single is None:
            raise self._err(start + 1, f"a row, but this model has several inputs ({self._describe_inputs()}); "
                                       f"give records keyed by input name")
        if cols is None:
            return self._encode_structured([{single: v} for v in items], start)
        return self._encode_rows(items, start, has_bool)

    def _records_to_rows(self, records: list[dict[str, Any]], start: int) -> list[list[Any]]:
        cols = self.schema.columns
        assert cols is not None
        names = [c.name for c in cols]
        if not self.schema.names_known:
            self._positional_warning("record fields")
            rows = []
            for i, rec in enumerate(records):
                if len(rec) != len(names):
                    raise self._err(start + i + 1, f"{len(rec)} fields, the model takes {len(names)} "
                                                   f"({self._describe_inputs()})")
                rows.append(list(rec.values()))
            return rows
        wanted = set(names)
        rows = []
        for i, rec in enumerate(records):
            if rec.keys() != wanted:
                missing = [n for n in names if n not in rec]
                if missing:
                    raise self._err(start + i + 1, f"missing field '{missing[0]}' (expected: {', '.join(names)})")
                unknown = next(k for k in rec if k not in wanted)
                raise self._err(start + i + 1, f"unknown field '{unknown}' (expected: {', '.join(names)})")
            rows.append([rec[n] for n in names])
        return rows

    def _encode_rows(self, rows: list[Any], start: int, has_bool: bool) -> dict[str, np.ndarray]:
        """Rows of len(columns) scalars (a single vector input, or records flattened to columns)."""
        cols = self.schema.columns
        assert cols is not None
        n = len(cols)
        kinds = {c.kind for c in cols}
        scalar_input = len(cols) == 1 and cols[0].index is None and self.schema.single_input
        if scalar_input:  # a [-1] input: each row is the value itself (or a one-element list from records)
            rows = [r[0] if isinstance(r, list) and len(r) == 1 else r for r in rows]
            rows = [[r] for r in rows]
        if len(kinds) == 1 and kinds <= {"float", "int"} and not has_bool:
            try:
                arr = np.array(rows)
            except ValueError:
                arr = None
            if arr is not None and arr.ndim == 2 and arr.shape[1] == n and (
                    arr.dtype.kind == "i" or (arr.dtype.kind == "f" and "float" in kinds)):
                return self._from_columns(arr)
        # slow path: find the first bad cell
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise self._err(start + i + 1, f"expected a list of {n} values, got {_show(row)}")
            if len(row) != n:
                raise self._err(start + i + 1, f"{len(row)} values, the model takes {n} "
                                               f"({self._describe_inputs()})")
            for c, v in zip(cols, row):
                if not _type_ok(v, c.kind):
                    raise self._err(start + i + 1, f"column '{c.name}': {_show(v)} is not {_KIND_WORDS[c.kind]} "
                                                   f"(input '{c.input}' is {self._dtype(c.input)})")
        if len(kinds) == 1 and kinds <= {"float", "int", "bool"}:
            kind = next(iter(kinds))
            arr = np.array(rows, dtype={"float": np.float64, "int": np.int64, "bool": np.bool_}[kind])
            return self._from_columns(arr.reshape(-1, n))
        return self._from_column_lists([[r[k] for r in rows] for k in range(n)], len(rows))

    def _from_columns(self, arr: np.ndarray) -> dict[str, np.ndarray]:
        """(rows, columns) array -> input arrays of the signature's dtypes."""
        cols = self.schema.columns
        assert cols is not None
        single = self.schema.single_input
        if single:
            spec = self.schema.inputs[single]
            out = arr[:, 0] if cols[0].index is None else arr
            return {single: self._cast(out, spec, single)}
        result = {}
        for k, c in enumerate(cols):
            spec = self.schema.inputs[c.input]
            col = arr[:, k] if c.index is None else arr[:, k:k + 1]
            result[c.input] = self._cast(col, spec, c.input)
        return result

    def _from_column_lists(self, columns: list[list[Any]], nrows: int) -> dict[str, np.ndarray]:
        cols = self.schema.columns
        assert cols is not None
        single = self.schema.single_input
        if single and cols[0].index is not None:
            spec = self.schema.inputs[single]
            arr = np.empty((nrows, len(cols)), dtype=numpy_dtype(spec["dtype"]))
            for k, values in enumerate(columns):
                arr[:, k] = self._values_array(values, spec)
            return {single: arr}
        result = {}
        for c, values in zip(cols, columns):
            spec = self.schema.inputs[c.input]
            arr = self._values_array(values, spec)
            result[c.input] = arr if c.index is None else arr.reshape(-1, 1)
        return result

    def _values_array(self, values: list[Any], spec: dict[str, Any]) -> np.ndarray:
        if spec["kind"] == "string":
            arr = np.empty(len(values), dtype=object)
            arr[:] = [_decode_string(v) for v in values]
            return arr
        return np.array(values, dtype=numpy_dtype(spec["dtype"]))

    def _cast(self, arr: np.ndarray, spec: dict[str, Any], name: str) -> np.ndarray:
        target = numpy_dtype(spec["dtype"])
        if spec["kind"] == "int":
            info = np.iinfo(target)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                row = int(np.argwhere((arr < info.min) | (arr > info.max))[0][0])
                raise InvalidInput(f"{self.where}: input '{name}': a value in row {row + 1} of its batch is out of "
                                   f"range for {spec['dtype']}")
        return np.ascontiguousarray(arr, dtype=target)

    # structured (non-tabular) values -------------------------------------------------------------------------
    def _encode_structured(self, records: list[dict[str, Any]], start: int) -> dict[str, np.ndarray]:
        names = list(self.schema.inputs)
        per_input: dict[str, list[Any]] = {n: [] for n in names}
        for i, rec in enumerate(records):
            if rec.keys() != set(names):
                missing = [n for n in names if n not in rec]
                if missing:
                    raise self._err(start + i + 1, f"missing field '{missing[0]}' (inputs: {', '.join(names)})")
                unknown = next(k for k in rec if k not in per_input)
                raise self._err(start + i + 1, f"unknown field '{unknown}' (inputs: {', '.join(names)})")
            for n in names:
                per_input[n].append(rec[n])
        return {n: self._tensor(per_input[n], n, start) for n in names}

    def _tensor(self, values: list[Any], name: str, start: int) -> np.ndarray:
        """Rows of one input (each of the input's per-row shape) -> an array; errors name the row."""
        spec = self.schema.inputs[name]
        kind = spec["kind"]
        inner = None if spec["shape"] is None else spec["shape"][1:]
        first_shape: tuple[int, ...] | None = None
        flat: list[Any] = []
        for i, v in enumerate(values):
            shape = _shape_of(v)
            if inner is not None and (len(shape) != len(inner) or any(
                    d >= 0 and d != s for d, s in zip(inner, shape))):
                want = "a scalar" if not inner else f"shape [{', '.join('?' if d < 0 else str(d) for d in inner)}]"
                raise self._err(start + i + 1, f"input '{name}': expected {want}, got shape "
                                               f"[{', '.join(map(str, shape))}] ({_show(v)})")
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise self._err(start + i + 1, f"input '{name}': shape [{', '.join(map(str, shape))}] differs "
                                               f"from row {start + 1}'s [{', '.join(map(str, first_shape))}]")
            for leaf in _leaves(v, shape, lambda: self._err(start + i + 1, f"input '{name}': ragged nested list")):
                if not _type_ok(leaf, kind):
                    raise self._err(start + i + 1, f"input '{name}': {_show(leaf)} is not {_KIND_WORDS[kind]} "
                                                   f"(input '{name}' is {self._dtype(name)})")
                flat.append(leaf)
        full = (len(values), *(first_shape or ()))
        if kind == "string":
            arr = np.empty(len(flat), dtype=object)
            arr[:] = [_decode_string(v) for v in flat]
            return arr.reshape(full)
        return self._cast(np.array(flat, dtype=np.float64 if kind == "float" else None).reshape(full), spec, name)

    # request bodies -----------------------------------------------------------------------------------------
    def encode_body(self, body: dict[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        """Check a TF Serving request body against the signature; returns (input arrays, batch rows)."""
        sig = body.get("signature_name", self.schema.signature_name)
        if sig != self.schema.signature_name:
            raise InvalidInput(f"{self.where}: the body asks for signature '{sig}', predicting with "
                               f"'{self.schema.signature_name}' (pass --signature {sig})")
        names = list(self.schema.inputs)
        if "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise InvalidInput(f"{self.where}: 'instances' must be a list of examples")
            if not instances:
                raise InvalidInput(f"no rows in {self.where}: 'instances' is empty (nothing to predict)")
            if len(names) == 1:
                if instances and all(isinstance(v, dict) and set(v) == set(names) for v in instances):
                    instances = [v[names[0]] for v in instances]
                arr = self._tensor(instances, names[0], 0)
                return {names[0]: arr}, len(instances)
            for i, v in enumerate(instances):
                if not isinstance(v, dict):
                    raise self._err(i + 1, f"with several inputs ({', '.join(names)}) each instance is an object "
                                           f"keyed by input name")
            return self._encode_structured(instances, 0), len(instances)
        inputs = body["inputs"]
        if len(names) == 1 and not (isinstance(inputs, dict) and set(inputs) == set(names)):
            inputs = {names[0]: inputs}
        if not isinstance(inputs, dict):
            raise InvalidInput(f"{self.where}: 'inputs' must be an object keyed by input name ({', '.join(names)})")
        for n in names:
            if n not in inputs:
                raise InvalidInput(f"{self.where}: 'inputs' is missing input '{n}' (inputs: {', '.join(names)})")
        for k in inputs:
            if k not in self.schema.inputs:
                raise InvalidInput(f"{self.where}: 'inputs' has unknown input '{k}' (inputs: {', '.join(names)})")
        arrays = {}
        rows = None
        for n in names:
            value = inputs[n]
            if not isinstance(value, list):
                raise InvalidInput(f"{self.where}: input '{n}' must be a list (a batch)")
            arrays[n] = self._tensor(value, n, 0)
            if rows is not None and len(value) != rows:
                raise InvalidInput(f"{self.where}: input '{n}' has {len(value)} rows, the others {rows}")
            rows = len(value)
        if not rows:
            raise InvalidInput(f"no rows in {self.where}: the batch in 'inputs' is empty (nothing to predict)")
        return arrays, rows

    def _dtype(self, name: str) -> str:
        from maasctl.savedmodel import format_spec

        return format_spec(self.schema.inputs[name])

    def _describe_inputs(self) -> str:
        return ", ".join(f"{n} {self._dtype(n)}" for n in self.schema.inputs)


def _csv_rows(lines: list[str], where: str, first_line: int) -> Iterator[list[str]]:
    reader = csv.reader(lines, skipinitialspace=True)
    try:
        yield from reader
    except csv.Error as exc:
        raise InvalidInput(f"{where}: line {first_line + reader.line_num - 1}: bad CSV ({exc})") from None


def _leaves(value: Any, shape: tuple[int, ...], ragged: Callable[[], Exception]) -> Iterator[Any]:
    if not shape:
        if isinstance(value, list):
            raise ragged()
        yield value
        return
    if not isinstance(value, list) or len(value) != shape[0]:
        raise ragged()
    for v in value:
        yield from _leaves(v, shape[1:], ragged)


def _decode_string(v: Any) -> Any:
    if isinstance(v, dict):
        return base64.b64decode(v["b64"])
    return v


# -- wire format (shared by the client path and --local) ------------------------------------------------------
def jsonable(arr: np.ndarray) -> Any:
    if arr.dtype == object or arr.dtype.kind in ("S", "U"):
        return _strings(arr.tolist())
    return arr.tolist()


def _strings(v: Any) -> Any:
    if isinstance(v, list):
        return [_strings(x) for x in v]
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(v).decode()}
    return v


def dumps(doc: Any) -> bytes:
    if orjson is not None:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)
    return json.dumps(doc, default=_default).encode()


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return jsonable(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def loads(data: bytes | str) -> Any:
    return orjson.loads(data) if orjson is not None else json.loads(data)


def request_body(schema: ModelSchema, inputs: dict[str, np.ndarray]) -> bytes:
    """A TF Serving predict body: row format for one input, columnar for several (cheaper to build)."""
    prepared = {k: (jsonable(v) if v.dtype == object else v) for k, v in inputs.items()}
    doc: dict[str, Any] = {"signature_name": schema.signature_name}
    if schema.single_input:
        doc["instances"] = prepared[schema.single_input]
    else:
        doc["inputs"] = prepared
    return dumps(doc)


def response_outputs(schema: ModelSchema, doc: Any, rows: int, where: str) -> dict[str, np.ndarray]:
    """A predict response body (row or columnar) -> {output name: array with `rows` rows}."""
    names = list(schema.outputs)
    if not isinstance(doc, dict) or not ("predictions" in doc or "outputs" in doc):
        raise InvalidInput(f"{where}: the response has neither 'predictions' nor 'outputs'")
    if "predictions" in doc:
        preds = doc["predictions"]
        if len(names) == 1 and not (preds and isinstance(preds[0], dict) and set(preds[0]) == set(names)):
            cols = {names[0]: preds}
        else:
            cols = {n: [p[n] for p in preds] for n in names}
    else:
        outs = doc["outputs"]
        cols = outs if isinstance(outs, dict) and set(outs) == set(names) else {names[0]: outs}
    result = {}
    for n, values in cols.items():
        if not isinstance(values, list) or len(values) != rows:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise InvalidInput(f"{where}: output '{n}' has {got} rows, expected {rows}")
        result[n] = _output_array(values, schema.outputs.get(n, {}).get("dtype", "float32"))
    return result


def _output_array(values: list[Any], dtype: str) -> np.ndarray:
    kind = dtype_kind_safe(dtype)
    if kind in ("float", "int", "bool"):
        return np.asarray(values, dtype=numpy_dtype(dtype))
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def predictions_doc(schema: ModelSchema, outputs: dict[str, np.ndarray], columnar: bool = False) -> dict[str, Any]:
    """TF Serving's response body for given outputs (as a server would answer)."""
    names = list(outputs)
    if columnar:
        if len(names) == 1:
            return {"outputs": jsonable(outputs[names[0]])}
        return {"outputs": {n: jsonable(a) for n, a in outputs.items()}}
    if len(names) == 1:
        return {"predictions": jsonable(outputs[names[0]])}
    lists = {n: jsonable(a) for n, a in outputs.items()}
    return {"predictions": [dict(zip(names, vals)) for vals in zip(*lists.values())]}


__all__ = ["Chunk", "Column", "Encoder", "InputSource", "ModelSchema", "detect_format", "dumps", "loads",
           "open_input", "predictions_doc", "request_body", "response_outputs", "schema_from_signature",
           "signature_from_metadata"]
