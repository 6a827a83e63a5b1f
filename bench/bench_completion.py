"""What one TAB costs: `maasctl` answering a completion request, against baselines measured in the same run.

A TAB starts a Python process that imports maasctl's CLI (no TensorFlow) and reads the store once. The
baselines are a bare `python -c pass` (the floor any Python CLI pays) and `maasctl --help` (the CLI's own
start-up). The store holds MODELS models with VERSIONS versions each (registered from one tiny SavedModel
built here; TensorFlow is imported once in this process, never in the timed ones).

    python bench/bench_completion.py [--models 20] [--versions 10] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str], repeats: int) -> float:
    """Median wall time of running argv, in seconds (after one warm-up run)."""
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_store(root: Path, models: int, versions: int) -> None:
    from maasctl.store import Store
    from maasctl.tf import load_tensorflow
    from maasctl.tf.testing import build_mlp

    tf = load_tensorflow()
    src = build_mlp(tf, root / "src", [4, 3], seed=1)
    store = Store(root / "store")
    for m in range(models):
        for v in range(versions):
            store.register(src, f"model{m:02d}", new_version=True, aliases=["production"] if v == 0 else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_store(root, args.models, args.versions)
        env = {**os.environ, "MAASCTL_HOME": str(root / "store"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        tab = {**env, "_MAASCTL_COMPLETE": "complete_bash", "_MAASCTL_COMPLETE_BREAKS": "@=:"}
        py = sys.executable
        rows = [
            ("python -c pass", timed([py, "-c", "pass"], env, args.repeats)),
            ("maasctl --help", timed([py, "-m", "maasctl", "--help"], env, args.repeats)),
            ("TAB: maasctl se", timed([py, "-m", "maasctl"], {**tab, "_MAASCTL_COMPLETE_LINE": "maasctl se"},
                                      args.repeats)),
            ("TAB: maasctl serve model0", timed([py, "-m", "maasctl"],
                                                {**tab, "_MAASCTL_COMPLETE_LINE": "maasctl serve model0"},
                                                args.repeats)),
            ("TAB: maasctl show model05@", timed([py, "-m", "maasctl"],
                                                 {**tab, "_MAASCTL_COMPLETE_LINE": "maasctl show model05@"},
                                                 args.repeats)),
        ]
    base = rows[0][1]
    print(f"store: {args.models} models x {args.versions} versions; median of {args.repeats} runs")
    print(f"{'command':30} {'seconds':>8} {'x python':>9} {'x --help':>9}")
    for label, t in rows:
        print(f"{label:30} {t:8.3f} {t / base:9.2f} {t / rows[1][1]:9.2f}")


if __name__ == "__main__":
    main()
