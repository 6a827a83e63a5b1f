"""Checking chunks of rows against a signature and encoding them as arrays, naming file, row and column."""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput
from maasctl.predict.inputs import Chunk
from maasctl.predict.schema import Column, ModelSchema, numpy_dtype
from maasctl.tensors import claimed_shape, decode_string, format_spec, leaf_ok

# -- validation and encoding ---------------------------------------------------------------------------------
_KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false", "string": "a string"}


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Encoder:
    """Checks chunks of input against a ModelSchema and turns them into input arrays."""

    def __init__(self, schema: ModelSchema, where: str, warn: Callable[[str], None] | None = None,
                 keep: list[str] | tuple[str, ...] = ()) -> None:
        self.schema = schema
        self.where = where
        self._warn = warn or (lambda text: None)
        self._warned = False
        self._csv_perm: list[int] | None = None
        self._csv_header: list[str] | None = None
        # Columns beyond the model's features: the recorded label column is ignored, `keep` columns are passed
        # through to the output (`kept`, per encoded chunk), any others are ignored with one warning.
        self.keep = list(keep)
        self.kept: dict[str, list[Any]] = {}
        self._csv_keep: list[int] = []
        self._extras_warned = False

    # messages -----------------------------------------------------------------------------------------------
    def _err(self, row: int, text: str, line: int | None = None) -> InvalidInput:
        at = f"row {row}" + (f" (line {line})" if line else "")
        return InvalidInput(f"{self.where}: {at}: {text}")

    def _positional_warning(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            cols = self.schema.columns or []
            self._warn(f"warning: no feature names are recorded for this model, so {what} are mapped to its "
                       f"{len(cols)} input columns in the file's order; to map them by name, record the names "
                       f"(maasctl register DIR --name NAME --features A,B,...)")

    def _extra_columns(self, extra: list[str], what: str) -> None:
        """Say once which extra columns/fields are ignored (not features, not the label, not --keep)."""
        ignored = [c for c in extra if c not in self.keep and c not in self.schema.label_columns]
        if ignored and not self._extras_warned:
            self._extras_warned = True
            listed = ", ".join(repr(c) for c in ignored)
            self._warn(f"warning: {self.where}: ignoring {what} the model does not take: {listed} "
                       f"(pass --keep {','.join(ignored)} to copy them to the output)")

    def take_kept(self) -> dict[str, list[Any]]:
        """The --keep values of the chunk encoded last (then forgotten)."""
        kept, self.kept = self.kept, {}
        return kept

    def _keep_needs_names(self) -> None:
        if self.keep:
            raise InvalidInput(f"{self.where}: --keep {','.join(self.keep)} needs named columns (CSV with a header "
                               f"or JSON records) and a model whose feature names are known")

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
            if missing:
                raise InvalidInput(f"{self.where}: line 1 (header): missing column '{missing[0]}' "
                                   f"(expected: {', '.join(names)})")
            for k in self.keep:
                if k not in seen:
                    raise InvalidInput(f"{self.where}: line 1 (header): --keep {k}: no such column "
                                       f"(columns: {', '.join(header)})")
            self._extra_columns([h for h in header if h not in names], "columns")
            self._csv_perm = [header.index(n) for n in names]
            self._csv_keep = [header.index(k) for k in self.keep]
        else:
            self._keep_needs_names()
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
            width = len(self._csv_header)
            try:
                arr = np.loadtxt(chunk.items, delimiter=",", quotechar='"', comments=None, ndmin=2,
                                 dtype=np.float64 if "float" in kinds else np.int64,
                                 usecols=None if width == n else self._csv_perm)
            except ValueError:
                arr = None
            if arr is not None and arr.shape[1] == n and (width == n or self._csv_fields_ok(chunk.items, width)):
                if width == n and self._csv_perm != list(range(n)):
                    arr = arr[:, self._csv_perm]
                if self._csv_keep:
                    self._kept_from_csv(chunk)
                return self._from_columns(arr)
        return self._encode_csv_slow(chunk)

    @staticmethod
    def _csv_fields_ok(lines: list[str], width: int) -> bool:
        """With usecols, loadtxt does not check the field count; a cheap check (exact when nothing is quoted)."""
        return all(line.count(",") == width - 1 for line in lines if line.strip())

    def _kept_from_csv(self, chunk: Chunk) -> None:
        names = self.keep
        kept: dict[str, list[Any]] = {k: [] for k in names}
        for fields in _csv_rows(chunk.items, self.where, chunk.first_line):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            for k, j in zip(names, self._csv_keep):
                kept[k].append(fields[j].strip())
        self.kept = kept

    def _encode_csv_slow(self, chunk: Chunk) -> dict[str, np.ndarray]:
        cols = self.schema.columns
        assert cols is not None and self._csv_perm is not None and self._csv_header is not None
        header, perm, width = self._csv_header, self._csv_perm, len(self._csv_header)
        parsed: list[list[Any]] = []
        kept: dict[str, list[Any]] = {k: [] for k in self.keep}
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
            for k, j in zip(self.keep, self._csv_keep):
                kept[k].append(fields[j].strip())
            line += 1
        if self.keep:
            self.kept = kept
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
        self._keep_needs_names()
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
            self._keep_needs_names()
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
        kept: dict[str, list[Any]] = {k: [] for k in self.keep}
        for i, rec in enumerate(records):
            if rec.keys() != wanted:
                missing = [n for n in names if n not in rec]
                if missing:
                    raise self._err(start + i + 1, f"missing field '{missing[0]}' (expected: {', '.join(names)})")
                self._extra_columns([k for k in rec if k not in wanted], "fields")
            for k in self.keep:
                if k not in rec:
                    raise self._err(start + i + 1, f"--keep {k}: no field '{k}' in this record")
                kept[k].append(rec[k])
            rows.append([rec[n] for n in names])
        if self.keep:
            self.kept = kept
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
                if not leaf_ok(v, c.kind):
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
            arr[:] = [decode_string(v) for v in values]
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
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range is +-Infinity, as in TF
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
            shape = claimed_shape(v)
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
            ragged = functools.partial(self._err, start + i + 1, f"input '{name}': ragged nested list")
            for leaf in _leaves(v, shape, ragged):
                if not leaf_ok(leaf, kind):
                    raise self._err(start + i + 1, f"input '{name}': {_show(leaf)} is not {_KIND_WORDS[kind]} "
                                                   f"(input '{name}' is {self._dtype(name)})")
                flat.append(leaf)
        full = (len(values), *(first_shape or ()))
        if kind == "string":
            arr = np.empty(len(flat), dtype=object)
            arr[:] = [decode_string(v) for v in flat]
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
