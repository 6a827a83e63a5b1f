"""Rendering: JSON documents and plain aligned tables on stdout, messages on stderr.

Plain tables keep `maasctl list` fast (no rich import on the hot path); rich is used for progress bars and
the tables that benefit from it, imported where needed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def message(text: str) -> None:
    """A human message: always stderr, so stdout stays data."""
    sys.stderr.write(text + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, out=None) -> None:
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    out = out or sys.stdout
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    out.write("\n".join(lines) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def key_values(pairs: Iterable[tuple[str, Any]], *, out=None) -> None:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    out = out or sys.stdout
    for k, v in pairs:
        out.write(f"{k.ljust(width)}  {v}\n")
