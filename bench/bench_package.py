"""Benchmark `maasctl package` and `maasctl register PKG` against `tar czf` / `tar xzf` of the same model.

Builds a ~200 MB Keras SavedModel once (cached in bench/out/model_200mb), then, in the same run, times:

    tar czf  vs  maasctl package DIR              (target: ratio <= 2)
    tar xzf  vs  maasctl register PKG             (target: ratio <= 2)
    tar cf   vs  maasctl package --compression none
    tar xf   vs  maasctl register PKG (uncompressed)

Each figure is the best of --repeat runs; maasctl runs as a real subprocess (start-up included).
`maasctl register` fsyncs every file (a published version must survive a crash); tar does not, so the
script also times `tar xzf` followed by `sync` for reference.

Usage: python bench/bench_package.py [--repeat 2] [--out bench/out]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def timed(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return elapsed


def best(n: int, fn) -> float:
    return min(fn(i) for i in range(n))


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
        def tar_c(flags: str, suffix: str):
            return lambda i: timed(["tar", flags, str(work / f"base{i}{suffix}"), "-C", str(model), "."])

        def tar_x(flags: str, suffix: str, sync: bool = False):
            def run(i: int) -> float:
                dest = work / f"x{flags}{i}{'s' if sync else ''}"
                dest.mkdir()
                cmd = ["tar", flags, str(work / f"base0{suffix}"), "-C", str(dest)]
                return timed(["sh", "-c", " ".join(cmd) + " && sync"] if sync else cmd)
            return run

        def package(compression: str):
            return lambda i: timed([*maasctl, "--store", str(work / "unused"), "package", str(model), "--name", "big",
                                    "--compression", compression, "-o", str(work / f"pkg-{compression}-{i}.maas")],
                                   env=env)

        def register(compression: str):
            return lambda i: timed([*maasctl, "--store", str(work / f"store-{compression}-{i}"), "register",
                                    str(work / f"pkg-{compression}-0.maas")], env=env)

        n = args.repeat
        rows = []
        t_czf = best(n, tar_c("czf", ".tgz"))
        t_pkg = best(n, package("gzip"))
        t_xzf = best(n, tar_x("xzf", ".tgz"))
        t_xzf_sync = best(n, tar_x("xzf", ".tgz", sync=True))
        t_reg = best(n, register("gzip"))
        t_cf = best(n, tar_c("cf", ".tar"))
        t_pkg_none = best(n, package("none"))
        t_xf = best(n, tar_x("xf", ".tar"))
        t_reg_none = best(n, register("none"))
        pkg_gz = (work / "pkg-gzip-0.maas").stat().st_size
        pkg_none = (work / "pkg-none-0.maas").stat().st_size
        rows += [
            ("maasctl package (gzip)", t_pkg, "tar czf", t_czf),
            ("maasctl register PKG (gzip)", t_reg, "tar xzf", t_xzf),
            ("maasctl register PKG (gzip)", t_reg, "tar xzf && sync", t_xzf_sync),
            ("maasctl package --compression none", t_pkg_none, "tar cf", t_cf),
            ("maasctl register PKG (none)", t_reg_none, "tar xf", t_xf),
            ("maasctl package --compression none", t_pkg_none, "maasctl package (gzip)", t_pkg),
        ]
        print(f"model: {model} ({size / 1e6:.1f} MB); package: gzip {pkg_gz / 1e6:.1f} MB "
              f"({pkg_gz / size:.1%}), none {pkg_none / 1e6:.1f} MB; best of {n}")
        width = max(len(r[0]) for r in rows)
        bwidth = max(len(r[2]) for r in rows)
        for name, t, base, tb in rows:
            print(f"{name:<{width}}  {t:7.2f} s   vs {base:<{bwidth}} {tb:7.2f} s   ratio {t / tb:5.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
