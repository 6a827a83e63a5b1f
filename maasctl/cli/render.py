"""Rendering: JSON documents and plain aligned tables on stdout, messages on stderr.

Plain tables keep `maasctl list` fast (no rich import on the hot path); rich is used for progress bars and
the tables that benefit from it, imported where needed.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "—"


def number(v: Any) -> str:
    """The one number format for people: 4 significant digits (0.9500, 0.02827, 6.951e-05), integers whole,
    `—` for missing. Full precision is for --json only."""
    if v is None:
        return MISSING
    if isinstance(v, (bool, int)):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return "0" if v == 0 else f"{v:#.4g}"
    return str(v)


def metrics_line(logs: dict[str, float]) -> str:
    """`loss 0.1234  accuracy 0.9` (an epoch's figures, as the progress lines show them)."""
    return "  ".join(f"{k} {number(v)}" for k, v in logs.items())


def value(v: Any) -> str:
    """Any value for people: numbers as `number`, lists joined, mappings as `k v` pairs, missing as `—`."""
    if v is None or v == "" or v == []:
        return MISSING
    if isinstance(v, (int, float)):
        return number(v)
    if isinstance(v, list):
        return ", ".join(value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {value(x)}" for k, x in v.items()) or MISSING
    return str(v)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def message(text: str) -> None:
    """A human message: always stderr, so stdout stays data."""
    sys.stderr.write(text + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, out=None) -> None:
    """A table for people: rich on a terminal, plain aligned text (stable for scripts and `grep`) in a pipe."""
    texts = [[c if isinstance(c, str) else value(c) for c in r] for r in rows]
    out = out or sys.stdout
    if _isatty(out):
        _rich_table(headers, texts, out)
        return
    widths = [max([len(h)] + [len(r[i]) for r in texts]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in texts]
    out.write("\n".join(lines) + "\n")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _rich_table(headers: Sequence[str], rows: list[list[str]], out: Any) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for h in headers:
        t.add_column(h.upper(), overflow="fold")
    for r in rows:
        t.add_row(*r)
    Console(file=out, highlight=False).print(t)


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
        out.write(f"{k.ljust(width)}  {v if isinstance(v, str) and v else value(v)}\n")


def signature_table(signatures: dict[str, Any], *, out=None) -> None:
    """SIGNATURE SIDE NAME TYPE, one row per input and output tensor (show, inspect)."""
    from maasctl.tensors import format_spec

    table(["signature", "side", "name", "type"],
          [(sname, side[:-1], tname, format_spec(spec))
           for sname, sig in signatures.items() for side in ("inputs", "outputs")
           for tname, spec in sig[side].items()], out=out)
