"""Benchmark `maasctl package` and `maasctl register PKG` against `tar czf` / `tar xzf` of the same model.

Builds a ~200 MB Keras SavedModel once (cached in bench/out/model_200mb), then, in the same run, times:

    tar czf  vs  maasctl package DIR              (target: ratio <= 2)
    tar xzf  vs  maasctl register PKG             (target: ratio <= 2)
    tar cf   vs  maasctl package --compression none
    tar xf   vs  maasctl register PKG (uncompressed)

Each figure is the best of --repeat runs, contenders interleaved; maasctl runs as a real subprocess
(start-up included). Wall time and CPU time (user+sys) are both shown: CPU time is the steadier figure on
a shared machine, wall time shows the parallel deflate.
`maasctl register` fsyncs every file (a published version must survive a crash); tar does not, so the
script also times `tar xzf` followed by `sync` for reference.

Usage: python bench/bench_package.py [--repeat 2] [--out bench/out]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_model(path: Path) -> None:
    """2048 -> 4096 -> 4096 -> 10 dense layers (25M float32 weights), exported as a ~200 MB SavedModel
    (Keras' export writes each weight twice: once for the layer, once for the serving function's capture)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    from maasctl.tf import load_tensorflow

    load_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(2048,), name="features")
    x = keras.layers.Dense(4096, activation="relu")(inp)
    x = keras.layers.Dense(4096, activation="relu")(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    keras.Model(inp, out).export(str(tmp), verbose=False)
    tmp.rename(path)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = ap.parse_args()
    model = args.out / "model_200mb"
    args.out.mkdir(parents=True, exist_ok=True)
    if not (model / "saved_model.pb").is_file():
        print(f"building the benchmark model in {model} ...", file=sys.stderr)
        build_model(model)
    size = tree_size(model)
    maasctl = [sys.executable, "-m", "maasctl"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for p in model.rglob("*"):  # warm the page cache so every contender reads from memory
        if p.is_file():
            p.read_bytes()

    work = Path(tempfile.mkdtemp(prefix="bench-package-", dir=args.out))
    try:
        def tar_c(flags: str, suffix: str) -> Callable[[int], tuple[float, float]]:
            return lambda i: timed(["tar", flags, str(work / f"base{i}{suffix}"), "-C", str(model), "."])

        def tar_x(flags: str, suffix: str, sync: bool = False) -> Callable[[int], tuple[float, float]]:
            def run(i: int) -> tuple[float, float]:
                dest = work / f"x{flags}{i}{'s' if sync else ''}"
                dest.mkdir()
                cmd = ["tar", flags, str(work / f"base{i}{suffix}"), "-C", str(dest)]
                return timed(["sh", "-c", " ".join(cmd) + " && sync"] if sync else cmd)
            return run

        def package(compression: str) -> Callable[[int], tuple[float, float]]:
            return lambda i: timed([*maasctl, "--store", str(work / "unused"), "package", str(model), "--name", "big",
                                    "--compression", compression, "-o", str(work / f"pkg-{compression}-{i}.maas")],
                                   env=env)

        def register(compression: str) -> Callable[[int], tuple[float, float]]:
            return lambda i: timed([*maasctl, "--store", str(work / f"store-{compression}-{i}"), "register",
                                    str(work / f"pkg-{compression}-{i}.maas")], env=env)

        # Contenders run interleaved (baseline, then maasctl, each repeat) so that load from other processes
        # hits both alike; CPU seconds are reported too, as they barely move under such load.
        steps = {
            "tar czf": tar_c("czf", ".tgz"), "maasctl package (gzip)": package("gzip"),
            "tar xzf": tar_x("xzf", ".tgz"), "tar xzf && sync": tar_x("xzf", ".tgz", sync=True),
            "maasctl register PKG (gzip)": register("gzip"),
            "tar cf": tar_c("cf", ".tar"), "maasctl package --compression none": package("none"),
            "tar xf": tar_x("xf", ".tar"), "maasctl register PKG (none)": register("none"),
        }
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in steps}
        for i in range(args.repeat):
            for label, fn in steps.items():
                runs[label].append(fn(i))
        wall = {k: min(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: min(c for _, c in v) for k, v in runs.items()}
        pkg_gz = (work / "pkg-gzip-0.maas").stat().st_size
        pkg_none = (work / "pkg-none-0.maas").stat().st_size
        rows = [
            ("maasctl package (gzip)", "tar czf"),
            ("maasctl register PKG (gzip)", "tar xzf"),
            ("maasctl register PKG (gzip)", "tar xzf && sync"),
            ("maasctl package --compression none", "tar cf"),
            ("maasctl register PKG (none)", "tar xf"),
            ("maasctl package --compression none", "maasctl package (gzip)"),
        ]
        print(f"model: {model} ({size / 1e6:.1f} MB); package: gzip {pkg_gz / 1e6:.1f} MB "
              f"({pkg_gz / size:.1%}), none {pkg_none / 1e6:.1f} MB; best of {args.repeat}; {os.cpu_count()} CPUs")
        width = max(len(r[0]) for r in rows)
        bwidth = max(len(r[1]) for r in rows)
        for name, base in rows:
            print(f"{name:<{width}}  {wall[name]:6.2f} s  vs  {base:<{bwidth}} {wall[base]:6.2f} s   wall ratio "
                  f"{wall[name] / wall[base]:4.2f}   CPU {cpu[name]:5.2f} s vs {cpu[base]:5.2f} s, ratio "
                  f"{cpu[name] / cpu[base]:4.2f}   (target <= 2) {'ok' if cpu[name] / cpu[base] <= 2 else 'MISSED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
