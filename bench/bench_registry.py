"""Registry benchmarks (issue 2): CLI start-up and register throughput.

    python bench/bench_registry.py [--versions 1000] [--mb 200] [--repeat 7]

Prints wall times (median of --repeat runs) with a baseline measured in the same run:
- `maasctl --help` and `maasctl list` on a store holding --versions versions (target: each <= 0.3 s), against
  `python -c pass` (interpreter start-up, the floor);
- `maasctl register` of a ~--mb MB SavedModel against `cp -r` of the same directory (target: <= 2x), each run
  starting from an empty target after `sync`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], repeat: int, env: dict[str, str] | None = None, setup=None) -> float:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, **(env or {})})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from maasctl.store import Store
    from maasctl.tf import load_tensorflow
    from maasctl.tf.testing import build_mlp

    tf = load_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="maasctl-bench-"))
    try:
        tiny = build_mlp(tf, work / "tiny", [4, 3], seed=0)
        store = Store(work / "store")
        t0 = time.perf_counter()
        for i in range(args.versions):
            store.register(tiny, f"model{i % 10}", new_version=True)
        fill = time.perf_counter() - t0
        env = {"MAASCTL_HOME": str(store.root)}
        base = timed([sys.executable, "-c", "pass"], args.repeat)
        exe = [sys.executable, "-m", "maasctl"]
        script = shutil.which("maasctl")
        help_t = timed([script or exe[0], *([] if script else exe[1:]), "--help"], args.repeat, env)
        list_t = timed([script or exe[0], *([] if script else exe[1:]), "list"], args.repeat, env)
        list_v = timed([script or exe[0], *([] if script else exe[1:]), "list", "model0"], args.repeat, env)
        print(f"store with {args.versions} versions filled in {fill:.1f} s ({fill / args.versions * 1000:.1f} ms/register)")
        print(f"python -c pass        {base * 1000:7.1f} ms  (baseline)")
        print(f"maasctl --help        {help_t * 1000:7.1f} ms  {help_t / base:5.2f}x baseline  target <= 300 ms: "
              f"{'OK' if help_t <= 0.3 else 'MISSED'}")
        print(f"maasctl list          {list_t * 1000:7.1f} ms  {list_t / base:5.2f}x baseline  target <= 300 ms: "
              f"{'OK' if list_t <= 0.3 else 'MISSED'}")
        print(f"maasctl list model0   {list_v * 1000:7.1f} ms  {list_v / base:5.2f}x baseline  (100 versions)")

        units = int((args.mb * 2**20 / 8) ** 0.5)  # Keras's export stores a u*u kernel in ~8*u*u bytes
        big = build_mlp(tf, work / "big", [4, units, units, 3], seed=0)
        size = sum(f.stat().st_size for f in big.rglob("*") if f.is_file())
        cp_dst = work / "cp-copy"
        big_store = work / "big-store"

        def clear() -> None:
            """Each run starts from an empty target and no dirty-page backlog from the previous one."""
            shutil.rmtree(cp_dst, ignore_errors=True)
            shutil.rmtree(big_store, ignore_errors=True)
            os.sync()

        cp_t = timed(["cp", "-r", str(big), str(cp_dst)], args.repeat, setup=clear)
        cp_sync_t = timed(["sh", "-c", f"cp -r {big} {cp_dst} && sync"], args.repeat, setup=clear)
        hash_t = timed(["sha256sum", str(big / "variables" / "variables.data-00000-of-00001")], 3)
        reg_t = timed([*exe, "register", str(big), "--name", "big"], args.repeat,
                      {"MAASCTL_HOME": str(big_store)}, setup=clear)
        print(f"SavedModel of {size / 2**20:.0f} MiB")
        print(f"cp -r                 {cp_t:7.2f} s   (baseline)")
        print(f"cp -r && sync         {cp_sync_t:7.2f} s   {cp_sync_t / cp_t:5.2f}x cp -r  (a durable copy)")
        print(f"sha256sum (weights)   {hash_t:7.2f} s   {hash_t / cp_t:5.2f}x cp -r  (the hashing floor)")
        print(f"maasctl register      {reg_t:7.2f} s   {reg_t / cp_t:5.2f}x cp -r, {reg_t / cp_sync_t:5.2f}x cp -r && sync"
              f"  target <= 2x cp -r: {'OK' if reg_t <= 2 * cp_t else 'MISSED'}  (kernel copy + sha256 of what was written + fsync)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
