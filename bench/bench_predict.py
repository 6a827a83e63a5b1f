"""Benchmark `maasctl predict` on a 1,000,000-row, 4-feature CSV with the small (4->16->3) model.

Rates measured in the same run:
  baseline   the SavedModel called in-process (tf.saved_model.load) on the same rows, batches of 1024,
             rows already in memory as float32 (no parsing, no output)
  baseline+  the same, plus reading the CSV with NumPy and nothing written (what a hand-written script does)
  server     `maasctl predict --url` against a local `maasctl serve` (or, if `serve` is missing, the stub
             TF Serving server in this process; said so), CSV in -> JSON predictions to a file
  local      `maasctl predict --local` on the same file
Command-line runs are timed wall-clock as a user sees them; for --local the fixed start-up (Python, TensorFlow
import, model load), measured on a 1-row file, is also reported separately, and so is the library call that
`--local` runs (maasctl.predict.run_predict with the model already loaded).

Targets: server >= 0.5x baseline, local >= 0.8x baseline.

Usage: python bench/bench_predict.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "maasctl", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO, check=False)
    if proc.returncode:
        raise SystemExit(f"maasctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_csv(path: Path, x: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write(",".join(FEATURES) + "\n")
        f.writelines("\n".join(",".join(map(repr, r)) for r in x[i:i + 100_000].tolist()) + "\n" for i in range(0, len(x), 100_000))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.rows

    from maasctl.store import Store
    from maasctl.tensors import DEFAULT_SIGNATURE
    from maasctl.tf import load_tensorflow
    from maasctl.tf.testing import build_mlp

    tf = load_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    model_dir = build_mlp(tf, work / "small", [4, 16, 3], seed=1)
    store = Store(work / "store")
    store.register(model_dir, "small", meta={"task": "classification", "feature_names": FEATURES,
                                             "class_names": ["a", "b", "c"]})
    env = {"MAASCTL_HOME": str(store.root)}
    rng = np.random.default_rng(0)
    x = np.round(rng.uniform(-5, 5, size=(n, 4)), 4)
    data = work / "data.csv"
    write_csv(data, x)
    one = work / "one.csv"
    write_csv(one, x[:1])
    print(f"{n:,} rows x 4 features, {data.stat().st_size / 2**20:.0f} MiB CSV; small model 4->16->3")

    # -- baselines ----------------------------------------------------------------------------------------
    fn = tf.saved_model.load(str(model_dir)).signatures[DEFAULT_SIGNATURE]
    xf = x.astype(np.float32)
    fn(features=tf.constant(xf[:1024]))

    def in_process() -> None:
        for i in range(0, n, 1024):
            fn(features=tf.constant(xf[i:i + 1024]))["output_0"].numpy()

    def in_process_csv() -> None:
        with open(data) as f:
            next(f)
            while True:
                lines = f.readlines(1024 * 30)
                if not lines:
                    break
                arr = np.array("".join(lines).replace("\n", ",").split(",")[:-1], dtype=np.float32).reshape(-1, 4)
                for i in range(0, len(arr), 1024):
                    fn(features=tf.constant(arr[i:i + 1024]))["output_0"].numpy()

    base = n / min(timed(in_process) for _ in range(3))
    base_csv = n / min(timed(in_process_csv) for _ in range(2))

    # -- through a server ---------------------------------------------------------------------------------
    out = work / "out.json"
    help_text = subprocess.run([sys.executable, "-m", "maasctl", "--help"], capture_output=True, text=True,
                               cwd=REPO, check=False).stdout
    stub = None
    server_id = None
    if " serve " in help_text:
        url = cli("serve", "small", "--port", "0", "--max-batch-size", "1024", "--detach", env=env).stdout.strip()
        server_id = json.loads(cli("ps", "--json", env=env).stdout)[0]["id"]
        label = "maasctl serve"
    else:
        from tfserving_stub_server import StubServer

        stub = StubServer(model_dir, "small").start()
        url, label = stub.url, "stub TF Serving server (maasctl serve not available)"
    try:
        cli("predict", "--url", url, "-m", "small", "-i", str(one), env=env)  # warm-up
        t_server = timed(lambda: cli("predict", "--url", url, "-m", "small", "-i", str(data), "-o", str(out),
                                     env=env))
    finally:
        if server_id:
            cli("stop", server_id, env=env)
        if stub:
            stub.stop()
    server = n / t_server
    got = np.array(json.loads(out.read_text())["predictions"][-5:])
    assert np.allclose(got, fn(features=tf.constant(xf[-5:]))["output_0"].numpy(), atol=1e-6)

    # -- in-process through the CLI -----------------------------------------------------------------------
    t_start = timed(lambda: cli("predict", "--local", "-m", "small", "-i", str(one), env=env))
    t_local = timed(lambda: cli("predict", "--local", "-m", "small", "-i", str(data), "-o", str(out), env=env))
    local = n / t_local
    local_steady = n / max(1e-9, t_local - t_start)

    # -- the same --local pipeline as a library call (no process start-up, model already loaded) -----------
    from maasctl.predict.inputs import open_input
    from maasctl.predict.pipeline import local_target, run_predict
    from maasctl.predict.writers import make_writer
    from maasctl.tf.loader import load_version

    target = local_target(store, "small", load=load_version)

    def library() -> None:
        source = open_input(str(data))
        with open(out, "w") as f:
            run_predict(target, source, make_writer("json", f, target.schema))
        source.close()

    lib = n / min(timed(library) for _ in range(2))

    print(f"baseline   in-process, rows in memory, batches of 1024 : {base:12,.0f} rows/s")
    print(f"baseline+  in-process, reading the CSV with NumPy      : {base_csv:12,.0f} rows/s")
    print(f"server     maasctl predict --url ({label}): {server:12,.0f} rows/s "
          f"({t_server:.1f} s)  ratio {server / base:.2f}x baseline (target 0.5x), {server / base_csv:.2f}x baseline+")
    print(f"local      maasctl predict --local               : {local:12,.0f} rows/s "
          f"({t_local:.1f} s)  ratio {local / base:.2f}x baseline (target 0.8x), {local / base_csv:.2f}x baseline+")
    print(f"local      excluding {t_start:.1f} s start-up (TF import, load)  : {local_steady:12,.0f} rows/s  "
          f"ratio {local_steady / base:.2f}x baseline, {local_steady / base_csv:.2f}x baseline+")
    print(f"library    run_predict in-process (what --local runs): {lib:12,.0f} rows/s  "
          f"ratio {lib / base:.2f}x baseline, {lib / base_csv:.2f}x baseline+")


if __name__ == "__main__":
    main()
