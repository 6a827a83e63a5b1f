"""The longest line a CSV or JSON Lines file may have, checked before any line is parsed.

A single 100 MiB line makes Python's csv module and NumPy's parser hold many times its size in memory before
they fail; so `train` and `predict` refuse a longer line up front, naming the file and line (exit 2). The cap
is `MAASCTL_MAX_LINE_BYTES` (default 4 MiB), far above any real row (10,000 numeric columns are ~100 KiB).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from maasctl.errors import InvalidInput
from maasctl.settings import env_int

ENV = "MAASCTL_MAX_LINE_BYTES"
DEFAULT = 4 * 1024 * 1024
_CHUNK = 4 * 1024 * 1024


def max_line_bytes() -> int:
    return env_int(ENV, DEFAULT)


def too_long(where: str, line: int, limit: int) -> InvalidInput:
    return InvalidInput(f"{where}: line {line} is longer than {limit} bytes, the limit for one line "
                        f"(set {ENV} to raise it)")


def check_file_lines(path: Path, where: str | None = None) -> None:
    """Refuse a file with a line over the cap, reading it in bounded chunks (never a whole line at once)."""
    limit = max_line_bytes()
    where = where or str(path)
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)  # the csv module's own cap (128 KiB) would otherwise fail first, unhelpfully
    line, current = 1, 0  # current: bytes of the line in progress
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            if nl.size == 0:
                current += len(chunk)
                if current > limit:
                    raise too_long(where, line, limit)
                continue
            lengths = np.diff(nl, prepend=-1) - 1  # bytes before each newline in this chunk
            lengths[0] += current
            over = np.flatnonzero(lengths > limit)
            if over.size:
                raise too_long(where, line + int(over[0]), limit)
            line += int(nl.size)
            current = len(chunk) - int(nl[-1]) - 1
            if current > limit:
                raise too_long(where, line, limit)
