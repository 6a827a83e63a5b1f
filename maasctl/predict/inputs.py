"""Reading predict input: json / jsonl / csv files or stdin, as one request body or chunks of rows."""

from __future__ import annotations

import csv
import itertools
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from maasctl.errors import InvalidInput, NotFound
from maasctl.predict.schema import _EXTENSIONS, FORMATS
from maasctl.training.limits import max_line_bytes, too_long


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
                self._file = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by close()
            except FileNotFoundError:
                raise NotFound(f"{path}: no such file") from None
            except (IsADirectoryError, PermissionError) as exc:
                raise InvalidInput(f"{path}: cannot read ({exc.strerror})") from None
            st = os.fstat(self._file.fileno())
            # A FIFO, /dev/stdin or a process substitution (<(...)) is a path but a stream: read it once.
            self._regular = stat.S_ISREG(st.st_mode)
            self.size = st.st_size if self._regular else 0
        self._pushback: list[str] = []
        self._limit = max_line_bytes()
        if csv.field_size_limit() < self._limit:
            csv.field_size_limit(self._limit)  # else the csv module's own 128 KiB cap fails first, unhelpfully
        self._lines_read = 0  # lines taken from the file so far (for the line number in a too-long error)
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
        self._lines_read = 0

    def _readline(self) -> str:
        if self._pushback:
            return self._pushback.pop(0)
        return self._read_bounded()

    def _read_bounded(self) -> str:
        """One line from the file, never more than the line cap in memory (see training/limits.py)."""
        line = self._file.readline(self._limit + 2)
        self._lines_read += 1
        if len(line) > self._limit and len(line.rstrip("\r\n")) > self._limit:
            raise too_long(self.where, self._lines_read, self._limit)
        return line

    def _sniff(self) -> str:
        """stdin without --input-format: JSON Lines if the first line is a whole JSON value and more follow."""
        first = self._read_bounded()
        while first and not first.strip():
            first = self._read_bounded()
        self._pushback = [first]
        if not first.lstrip().startswith(("{", "[")):
            return "csv"
        try:
            json.loads(first)
        except ValueError:
            return "json"
        second = self._read_bounded()
        self._pushback.append(second)
        while second and not second.strip():
            second = self._read_bounded()
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
            doc = [doc]  # one record: {feature: value, ...}
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
        loads = orjson.loads
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
        read = self._read_bounded
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


