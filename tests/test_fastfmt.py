"""The vectorised CSV/JSONL formatting writes exactly what the per-row writers write."""

from __future__ import annotations

import io

import numpy as np
import pytest

from maasctl.predict import fastfmt
from maasctl.predict.schema import ModelSchema
from maasctl.predict.writers import make_writer

RNG = np.random.default_rng(11)
CASES = {
    "probs+labels": ({"p": RNG.dirichlet([1, 1, 1], size=50).astype(np.float32)}, ["a", 'b,"x"', "c c"]),
    "float64 probs": ({"p": RNG.dirichlet([1, 1], size=7)}, ["no", "yes"]),
    "1-d": ({"p": RNG.normal(size=9).astype(np.float32)}, None),
    "3-d": ({"p": RNG.normal(size=(5, 2, 3)).astype(np.float32)}, None),
    "ints+bools": ({"n": RNG.integers(-5, 5, size=(6, 2)), "b": RNG.normal(size=6) > 0}, None),
    "one row": ({"p": np.array([[0.25, 0.75]], np.float32)}, ["x", "y"]),
    "extremes": ({"p": np.array([[1e-30, -3.4e38], [np.float32(0.1), 1e20]], np.float32)}, None),
}


def _write(fmt, outputs, classes, chunks=3):
    schema = ModelSchema("serving_default", {"x": {"dtype": "float32", "shape": [-1, 4]}},
                         {k: {"dtype": str(v.dtype), "shape": [-1, *v.shape[1:]]} for k, v in outputs.items()},
                         class_names=classes, task="classification" if classes else None)
    out = io.StringIO()
    w = make_writer(fmt, out, schema)
    n = len(next(iter(outputs.values())))
    for part in np.array_split(np.arange(n), min(chunks, n)):
        w.write({k: v[part] for k, v in outputs.items()})
    w.close()
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_equals_row_by_row(fmt, case, monkeypatch):
    outputs, classes = CASES[case]
    fast = _write(fmt, outputs, classes)
    monkeypatch.setattr(fastfmt, "csv_chunk", lambda *a: None)
    monkeypatch.setattr(fastfmt, "jsonl_chunk", lambda *a: None)
    assert fast == _write(fmt, outputs, classes)


def test_fast_path_is_taken_for_numeric_outputs():
    p = RNG.dirichlet([1, 1, 1], size=4).astype(np.float32)
    labels = fastfmt.label_columns({"p": p}, "p", ["a", "b", "c"], str)
    assert fastfmt.csv_chunk({"p": p}, labels).count(b"\n") == 4
    assert fastfmt.jsonl_chunk({"p": p}, labels).count(b'"label":') == 4
    assert fastfmt.csv_chunk({"s": np.array([b"x"], dtype=object)}, None) is None
