"""Soak `maasctl serve`: steady load near capacity while the store changes under it (not part of CI).

    python bench/soak.py [--minutes 10] [--load 0.8] [--alias-every 10] [--write-every 30]

One server follows `small@prod` in a temporary store. The bench first measures the server's capacity (wrk,
16 connections, 1-row requests), then runs wrk for --minutes at about --load of it (each connection pauses
between requests, computed from the measured latency). Meanwhile the `prod` alias moves between two versions
every --alias-every seconds (the server loads the new version before unloading the old), and every
--write-every seconds a new version is registered and `gc --keep 3` runs. The load runs in 10-second windows;
each window reports req/s, p99 and failed responses, and the server's RSS is sampled after each.

Goals (issue 17): zero failed requests, and RSS growth under 5 % from the end of warm-up (the first fifth of
the run) to the end. MISSED is printed when a goal is missed. All traffic is on 127.0.0.1 and bounded in time.
Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import REPO, body_for, rss_kb, start_server, verdict, wrk

from maasctl.store import Store
from maasctl.tf import load_tensorflow
from maasctl.tf.testing import build_mlp

WINDOW_S = 10


def maasctl(store: Store, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "maasctl", "--store", str(store.root), *args], check=True,
                   capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def churn(store: Store, model_dirs: list[Path], stop: threading.Event, alias_every: float, write_every: float,
          log: list[str]) -> None:
    """Move small@prod between the two newest versions, and register + `gc --keep 3`, until `stop` is set.

    The two newest versions always survive `gc --keep 3`, so every move names a version that exists."""
    t0, moves, writes, failures = time.monotonic(), 0, 0, 0
    newest = [1, 2]
    next_move, next_write = alias_every, write_every
    while not stop.wait(0.5):
        now = time.monotonic() - t0
        try:
            if now >= next_move:
                next_move += alias_every
                moves += 1
                maasctl(store, "alias", "set", f"small@{newest[moves % 2]}", "prod")
            if now >= next_write:
                next_write += write_every
                writes += 1
                maasctl(store, "register", str(model_dirs[writes % len(model_dirs)]), "--name", "small",
                        "--new-version")
                newest = [newest[1], store.resolve("small").version]
                maasctl(store, "gc", "--keep", "3")
        except subprocess.CalledProcessError as exc:
            failures += 1
            log.append(f"{exc.cmd[4:]} failed: {exc.stderr.decode()[-300:]}")
    log.append(f"{moves} alias moves, {writes} register + gc rounds, {failures} failed commands")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity (default 0.8)")
    ap.add_argument("--alias-every", type=float, default=10.0, help="seconds between alias moves")
    ap.add_argument("--write-every", type=float, default=30.0, help="seconds between register + gc rounds")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    tf = load_tensorflow()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    store = Store(tmp / "store")
    dirs = [build_mlp(tf, tmp / f"m{i}", [4, 16, 3], seed) for i, seed in enumerate((1, 2))]
    for d in dirs:
        store.register(d, "small")
    store.set_alias("small@1", "prod")
    proc, url, _ = start_server(store, ["small@prod"], ["--poll-seconds", "1"])
    target = url + "/v1/models/small:predict"
    body = body_for(1, 4)
    try:
        wrk(target, body, 16, 2, tmp)  # warm-up
        cap = wrk(target, body, 16, 5, tmp)
        conns = 16
        # each connection: latency + pause per request; pick the pause for --load of capacity
        latency = 1.0 / cap["rps"] * conns
        delay_ms = max(0, int((conns / (args.load * cap["rps"]) - latency) * 1000))
        print(f"capacity {cap['rps']:.0f} req/s (p99 {cap['p99'] * 1e3:.1f} ms); soaking {args.minutes:g} min at "
              f"~{args.load:.0%} ({conns} connections, {delay_ms} ms pause each), alias move every "
              f"{args.alias_every:g} s, register + gc every {args.write_every:g} s")
        stop, log = threading.Event(), []
        worker = threading.Thread(target=churn, args=(store, dirs, stop, args.alias_every, args.write_every, log))
        worker.start()
        windows, rss = [], []
        end = time.monotonic() + args.minutes * 60
        try:
            while time.monotonic() < end:
                r = wrk(target, body, conns, WINDOW_S, tmp, delay_ms=delay_ms)
                windows.append(r)
                rss.append(rss_kb(proc.pid))
                print(f"  window {len(windows):3d}: {r['rps']:6.0f} req/s  p99 {r['p99'] * 1e3:7.1f} ms  "
                      f"errors {r['errors']}  rss {rss[-1] / 1024:.1f} MiB", flush=True)
        finally:
            stop.set()
            worker.join()
        errors = sum(w["errors"] for w in windows)
        warm = max(1, len(rss) // 5)
        growth = (rss[-1] - rss[warm - 1]) / rss[warm - 1]
        p99s = [w["p99"] for w in windows]
        print("\n".join(f"  churn: {line}" for line in log))
        print(f"requests failed: {errors} (goal 0) {verdict(errors == 0)}")
        print(f"p99 per window: median {statistics.median(p99s) * 1e3:.1f} ms, worst {max(p99s) * 1e3:.1f} ms; "
              f"mean rate {statistics.mean(w['rps'] for w in windows):.0f} req/s "
              f"= {statistics.mean(w['rps'] for w in windows) / cap['rps']:.2f}x capacity")
        print(f"RSS after warm-up {rss[warm - 1] / 1024:.1f} MiB -> end {rss[-1] / 1024:.1f} MiB: {growth:+.1%} "
              f"(goal < 5 %) {verdict(growth < 0.05)}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
