"""Regenerate the committed TensorFlow-free test fixtures: real SavedModels built once with TensorFlow.

    python3 tests/data/make_savedmodels.py

writes tests/data/savedmodels/{small,small_b,multi}/ (the same builders and seeds as conftest's TF-built
`models` fixture) and tests/data/savedmodels/SIGNATURES.json (what TensorFlow itself reports for each one's
signatures, so the fast tier can check the proto reader against TensorFlow's view without importing it).
Commit the result; tests in the fast tier (`pytest -m "not tf"`) copy these instead of importing TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "savedmodels"


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(HERE.parent))  # conftest's builders, so fixtures and committed data agree
    from conftest import build_mlp, build_multi_io, tf_view

    from maasctl.tf import load_tensorflow

    tf = load_tensorflow()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    build_mlp(tf, OUT / "small", [4, 16, 3], seed=1)
    build_mlp(tf, OUT / "small_b", [4, 16, 3], seed=2)
    build_multi_io(tf, OUT / "multi")
    views = {name: tf_view(tf, OUT / name) for name in ("small", "small_b", "multi")}
    (OUT / "SIGNATURES.json").write_text(json.dumps(views, indent=1, sort_keys=True) + "\n")
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:>8}  {path.relative_to(HERE)}")


if __name__ == "__main__":
    main()
