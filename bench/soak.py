"""Soak `maasctl serve`: steady load near capacity while the store changes under it (not part of CI).

    python bench/soak.py [--minutes 10] [--load 0.8] [--alias-every 10] [--write-every 30]

One server follows `small@prod` in a temporary store. The bench first measures the server's capacity (wrk,
16 connections, 1-row requests), then runs wrk for --minutes at about --load of it with the same
connections, each pausing between requests; the pause is fractional (wrk's has 1 ms steps) and set by three
short trial runs (see `pace`). Meanwhile the `prod` alias moves between two versions
every --alias-every seconds (the server loads the new version before unloading the old), and every
--write-every seconds a new version is registered and `gc --keep 3` runs. The load runs in 10-second windows;
each window reports req/s, p99 and failed responses, and the server's RSS is sampled after each.

Goals (issue 17): zero failed requests, and RSS growth under 5 % from the end of warm-up (the first fifth of
the run) to the end. MISSED is printed when a goal is missed. All traffic is on 127.0.0.1 and bounded in time.
Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import math
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


def pace(target: str, body: bytes, workdir: Path, rate: float, conns: int) -> tuple[float, str]:
    """The pause (ms, fractional) that makes `conns` wrk connections send about `rate` req/s.

    Each connection's cycle is conns / rate = pause + its request's latency. A pause computed once from the
    latency at capacity lands near 1.0x (the latency falls with the load), and wrk's pause has 1 ms steps; a
    pause corrected by a trial's achieved rate swings with whatever else the machine runs meanwhile. So: a
    fractional pause (bench_serve.PACING_LUA), corrected twice by a trial's median latency, which a burst of
    slow requests hardly moves, and never below half the cycle (the pause must set the pace)."""
    cycle_ms = conns / rate * 1000
    delay_ms = 0.85 * cycle_ms
    trials = []
    for _ in range(2):
        r = wrk(target, body, conns, 4, workdir, delay_ms=delay_ms)
        trials.append(f"{delay_ms:.2f} ms -> {r['rps']:.0f} req/s, p50 {r['p50'] * 1e3:.2f} ms")
        delay_ms = max(0.5 * cycle_ms, cycle_ms - r["p50"] * 1000)
    return delay_ms, "; ".join(trials)


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
        rate = args.load * cap["rps"]
        # enough connections that the pause, not the server's latency, sets each one's pace (a cycle of ~16 ms or
        # more): the rate then stays put when the latency moves (an alias move, a neighbour's burst of CPU)
        conns = max(16, min(64, math.ceil(rate * 0.016)))
        delay_ms, calibration = pace(target, body, tmp, rate, conns)
        print(f"capacity {cap['rps']:.0f} req/s (16 connections, p99 {cap['p99'] * 1e3:.1f} ms); soaking "
              f"{args.minutes:g} min at {args.load:.0%} = {rate:.0f} req/s ({conns} connections, {delay_ms:.2f} ms "
              f"pause each; calibration {calibration}), alias move every {args.alias_every:g} s, register + gc "
              f"every {args.write_every:g} s")
        stop, log = threading.Event(), []
        worker = threading.Thread(target=churn, args=(store, dirs, stop, args.alias_every, args.write_every, log))
        worker.start()
        windows, rss, loads = [], [], []
        end = time.monotonic() + args.minutes * 60
        try:
            while time.monotonic() < end:
                r = wrk(target, body, conns, WINDOW_S, tmp, delay_ms=delay_ms)
                windows.append(r)
                rss.append(rss_kb(proc.pid))
                loads.append(os.getloadavg()[0])
                detail = f" ({r['non2xx']} non-2xx; socket errors: {r['socket_errors']})" if r["errors"] else ""
                print(f"  window {len(windows):3d}: {r['rps']:6.0f} req/s  p99 {r['p99'] * 1e3:7.1f} ms  "
                      f"errors {r['errors']}{detail}  rss {rss[-1] / 1024:.1f} MiB  load average {loads[-1]:.1f}",
                      flush=True)
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
        print(f"1-minute load average of the machine during the run: min {min(loads):.1f}, mean "
              f"{statistics.mean(loads):.1f}, max {max(loads):.1f} ({os.cpu_count()} CPUs; other work shares them)")
        after = wrk(target, body, 16, 5, tmp)
        mean_rate = statistics.mean(w["rps"] for w in windows)
        print(f"capacity again after the soak: {after['rps']:.0f} req/s; the soak's mean rate {mean_rate:.0f} req/s = "
              f"{mean_rate / cap['rps']:.2f}x the capacity before, {mean_rate / after['rps']:.2f}x after")
        print(f"RSS after warm-up {rss[warm - 1] / 1024:.1f} MiB -> end {rss[-1] / 1024:.1f} MiB: {growth:+.1%} "
              f"(goal < 5 %) {verdict(growth < 0.05)}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
