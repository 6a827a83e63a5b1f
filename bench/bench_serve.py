"""Benchmark `maasctl serve` with wrk against in-process baselines measured in the same run.

    python bench/bench_serve.py [--duration 10] [--keep]
    python bench/bench_serve.py --workers-only [--max-workers N]   # req/s of `serve --workers N`, N = 1, 2, ...
    python bench/bench_serve.py --big-only     # /healthz while a 1M-row :predict, then a 300k-example :classify, runs

Needs wrk (`apt-get install -y wrk`); without it only the baselines, startup time and memory are measured.
All traffic is on 127.0.0.1; every load phase is bounded by --duration.

Models: MLP 4->16->3 ("small") and 784->512->512->10 ("medium"), exported with Keras and registered in a
temporary store. Baselines (no HTTP, one thread): the raw signature call rate at batch 1 and 32
(`tf.saved_model.load(dir).signatures["serving_default"](features=tensor)`), and the JSON round-trip rate
(decode the request body, validate, call the model through the server's own session path, encode the
response). Figures are printed as ratios against these baselines, next to the issue's targets; the server's
session call rate (`*_b1_session`) is printed for information.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maasctl import tensors
from maasctl.serving import codec
from maasctl.store import Store
from maasctl.tf import load_tensorflow
from maasctl.tf.testing import build_mlp


def rate(fn, seconds: float, warmup: int = 50) -> float:
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def body_for(rows: int, width: int, seed: int = 0) -> bytes:
    x = np.random.default_rng(seed).random((rows, width)).astype(np.float32)
    return json.dumps({"instances": x.tolist()}).encode()


class Baselines:
    """The in-process baselines, re-measurable next to each HTTP phase (this machine's load drifts)."""

    def __init__(self, tf, store: Store, seconds: float) -> None:
        from maasctl.tf.servable import load_servable

        self.seconds = seconds
        self.raw = {}
        self.round_trip = {}
        for name, width in (("small", 4), ("medium", 784)):
            path = store.version_dir(name, 1)
            sig = tf.saved_model.load(str(path)).signatures[tensors.DEFAULT_SIGNATURE]
            for b in (1, 32):
                x = tf.constant(np.random.default_rng(1).random((b, width)).astype(np.float32))
                self.raw[f"{name}_b{b}"] = (lambda sig=sig, x=x: sig(features=x))
            model = load_servable(path)  # the server's own fast path: the strictest round-trip baseline
            xb = np.random.default_rng(1).random((1, width)).astype(np.float32)
            self.raw[f"{name}_b1_session"] = (lambda model=model, xb=xb: model.predict({"features": xb}))
            body = body_for(32, width)

            def round_trip(model=model, body=body):
                req = codec.parse_predict(tensors.loads(body), model.signatures)
                return tensors.encode_predict(model.predict(req.inputs, req.signature_name), req.row_format)

            self.round_trip[f"{name}_b32"] = round_trip

    def raw_rate(self, key: str) -> float:
        return rate(self.raw[key], self.seconds)

    def round_trip_rows(self, key: str) -> float:
        return rate(self.round_trip[key], self.seconds, warmup=10) * 32


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


BARE = """
import sys, time, numpy as np
from maasctl.tf import load_tensorflow
tf = load_tensorflow()
sigs = [tf.saved_model.load(p).signatures["serving_default"] for p in sys.argv[1:]]
for s, w in zip(sigs, (4, 784)):
    for b in (1, 32):
        s(features=tf.constant(np.zeros((b, w), np.float32)))
print("ready", flush=True)
time.sleep(60)
"""


def bare_rss(paths: list[Path]) -> int:
    proc = subprocess.Popen([sys.executable, "-c", BARE, *map(str, paths)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        proc.stdout.readline()
        return rss_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def import_tf_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - t0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()
        return r.status


def start_server(store: Store, refs: list[str], extra: list[str] = ()) -> tuple[subprocess.Popen, str, float]:
    """`maasctl serve` in the foreground as a subprocess; returns (proc, url, seconds to first prediction)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = body_for(1, 4)
    t0 = time.perf_counter()
    # the server's log goes to a file beside the store: a pipe nobody reads would block the server once full
    # (a long soak logs every load and unload)
    log = store.root.parent / f"serve-{port}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", str(store.root), "serve", *refs,
                                 "--port", str(port), *extra], stdout=subprocess.DEVNULL, stderr=err,
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server died: {log.read_text(errors='replace')[-2000:]}")
        try:
            if post(url + "/v1/models/small:predict", body) == 200:
                return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.01)


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""
# Each connection pauses delay_ms between requests. wrk's pause has 1 ms steps, so a fractional pause is the
# mean of a random mix of the two nearest whole ones (2.4 ms: 3 ms 40 % of the time, else 2 ms).
PACING_LUA = """
local base, frac = {base}, {frac}
function delay()
  if frac > 0 and math.random() < frac then return base + 1 end
  return base
end
"""


def _seconds(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, body: bytes, connections: int, seconds: float, workdir: Path, delay_ms: float | None = None
        ) -> dict[str, Any]:
    body_path = workdir / f"body-{len(body)}.json"
    body_path.write_bytes(body)
    script = workdir / f"post-{len(body)}.lua"
    pacing = "" if delay_ms is None else PACING_LUA.format(base=int(delay_ms), frac=f"{delay_ms - int(delay_ms):.4f}")
    script.write_text(WRK_LUA.format(body=body_path) + pacing)
    threads = 1  # one wrk thread is plenty for these rates and leaves the second core to the server
    run = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60, check=False)
    out = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    counts = re.findall(r"\d+", errors.group(1)) if errors else []
    failed = (int(non2xx.group(1)) if non2xx else 0) + sum(map(int, counts))
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "", "errors": failed}


def healthz_during_big(url: str, verb: str = "predict", rows: int = 1_000_000) -> dict[str, float]:
    """/healthz latency (p50, p99, max) idle, then polled while one `rows`-row :predict (or :classify, as
    examples) to "small" is in flight."""
    import threading

    def poll(until) -> list[float]:
        waits = []
        while not until():
            t0 = time.perf_counter()
            with urllib.request.urlopen(url + "/healthz", timeout=600) as r:
                r.read()
            waits.append(time.perf_counter() - t0)
            time.sleep(0.01)
        return waits

    t_end = time.perf_counter() + 2
    idle = poll(lambda: time.perf_counter() > t_end)
    x = np.random.default_rng(0).random((rows, 4)).round(3)  # ~30 MB for 1M rows, as in the issue
    doc = {"instances": x.tolist()} if verb == "predict" else {"examples": [{"features": r} for r in x.tolist()]}
    body = json.dumps(doc).encode()
    done: dict[str, float] = {}

    def big() -> None:
        t0 = time.perf_counter()
        req = urllib.request.Request(url + f"/v1/models/small:{verb}", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
        done["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=big)
    t.start()
    busy = poll(lambda: not t.is_alive())
    t.join()
    q = lambda xs, p: float(np.percentile(xs, p)) if xs else float("nan")
    return {"idle_p99": q(idle, 99), "p50": q(busy, 50), "p99": q(busy, 99), "max": max(busy, default=0.0),
            "big_s": done.get("seconds", float("nan")), "polls": len(busy), "body_mb": len(body) / 1e6}


def print_big(url: str) -> None:
    for verb, rows in (("predict", 1_000_000), ("classify", 300_000)):
        h = healthz_during_big(url, verb, rows)
        print(f"\n== /healthz while one {rows:,}-row :{verb} ({h['body_mb']:.0f} MB) is in flight "
              f"({h['big_s']:.1f} s, {h['polls']:.0f} polls)")
        print(f"  idle p99 {h['idle_p99'] * 1e3:.1f} ms; in flight p50 {h['p50'] * 1e3:.1f} ms, "
              f"p99 {h['p99'] * 1e3:.1f} ms = {h['p99'] / h['idle_p99']:.1f}x idle, max {h['max'] * 1e3:.0f} ms "
              f"(target p99 <= 50 ms) {verdict(h['p99'] <= 0.050)}")


def worker_pids(url: str, want: int, timeout: float = 120.0) -> set[int]:
    """Predict on fresh connections until `want` distinct workers (x-maasctl-worker) have answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        req = urllib.request.Request(url + "/v1/models/small:predict", data=body_for(1, 4))
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                seen.add(int(r.headers.get("x-maasctl-worker") or 0))
        except OSError:
            time.sleep(0.05)
    return seen


def print_workers(store: Store, duration: float, max_workers: int, tmp: Path) -> None:
    """req/s of `serve --workers N` for N = 1 .. max_workers, each against N = 1 in this run."""
    cores = os.cpu_count() or 1
    print(f"\n== serve --workers N (this machine: {cores} cores; wrk uses 1 thread, i.e. up to one of them)")
    small1, medium32 = body_for(1, 4), body_for(32, 784)
    base: dict[str, float] = {}
    for n in range(1, max_workers + 1):
        proc, url, _ = start_server(store, ["small", "medium"], ["--workers", str(n)] if n > 1 else [])
        try:
            if n > 1 and len(worker_pids(url, n)) < n:
                print(f"  N={n}: not every worker answered; skipped")
                continue
            wrk(url + "/v1/models/small:predict", small1, 16, 1, tmp)  # warm-up
            wrk(url + "/v1/models/medium:predict", medium32, 16, 1, tmp)
            for key, path, body, conns in (("small 1 row", "small", small1, 16),
                                           ("medium 32 rows", "medium", medium32, 16)):
                r = wrk(f"{url}/v1/models/{path}:predict", body, conns, duration, tmp)
                base.setdefault(key, r["rps"])
                ratio = r["rps"] / base[key]
                note = "" if n == 1 else (f"(target >= {0.8 * n:.1f}x where the load generator has its own cores: "
                                          f"{verdict(ratio >= 0.8 * n)})" if cores > n else
                                          f"(target not applicable: {cores} cores for {n} workers and wrk)")
                print(f"  N={n}, {key:14s}, {conns} conns: {r['rps']:7.0f} req/s = {ratio:4.2f}x N=1; "
                      f"p99 {r['p99'] * 1e3:.1f} ms; failed {r['errors']} {note}")
        finally:
            proc.terminate()
            proc.wait(60)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    ap.add_argument("--baseline-seconds", type=float, default=3.0, help="seconds per in-process baseline")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--big-only", action="store_true",
                    help="only the /healthz-under-a-big-request phase (1M-row :predict, 300k-example :classify)")
    ap.add_argument("--workers-only", action="store_true", help="only the `serve --workers N` phase")
    ap.add_argument("--max-workers", type=int, default=0, help="largest N for the workers phase (default: cores)")
    args = ap.parse_args()

    tf = load_tensorflow()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        store = Store(tmp / "store")
        for name, sizes, seed in (("small", [4, 16, 3], 1), ("medium", [784, 512, 512, 10], 2)):
            meta = {"task": "classification", "class_names": ["a", "b", "c"]} if name == "small" else {}
            store.register(build_mlp(load_tensorflow(), tmp / name, sizes, seed), name, meta=meta)
        print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")

        if args.workers_only:
            if shutil.which("wrk") is None:
                raise SystemExit("the workers phase needs wrk (apt-get install -y wrk)")
            print_workers(store, args.duration, args.max_workers or os.cpu_count() or 1, tmp)
            return
        if args.big_only:
            proc, url, _ = start_server(store, ["small"])
            try:
                print_big(url)
            finally:
                proc.terminate()
                proc.wait(30)
            return
        base = Baselines(tf, store, args.baseline_seconds)
        print("\n== in-process baselines (no HTTP, one thread)")
        for key in base.raw:
            print(f"  raw signature call, {key:18s} {base.raw_rate(key):8.0f} calls/s")
        for key in base.round_trip:
            print(f"  JSON round-trip, {key:21s} {base.round_trip_rows(key):8.0f} rows/s")

        t_import = min(import_tf_seconds() for _ in range(2))
        proc, url, ttfp = start_server(store, ["small", "medium"])
        print("\n== startup")
        print(f"  python -c 'import tensorflow'          {t_import:6.2f} s")
        print(f"  maasctl serve -> first prediction       {ttfp:6.2f} s   ({ttfp - t_import:+.2f} s; "
              f"target <= +1.5 s) {verdict(ttfp - t_import <= 1.5)}")
        try:
            if shutil.which("wrk") is None:
                print("\nwrk not found: install it (apt-get install -y wrk) for the HTTP figures")
            else:
                small1, medium32 = body_for(1, 4), body_for(32, 784)
                wrk(url + "/v1/models/small:predict", small1, 16, 1, tmp)  # warm-up
                wrk(url + "/v1/models/medium:predict", medium32, 16, 1, tmp)
                print("\n== HTTP with wrk (127.0.0.1, server in its own process); each baseline is re-measured "
                      "right before and after its phase")
                fails = {}
                for label, conns, target in (("16 conns", 16, 2.0), ("1 conn  ", 1, 0.6)):
                    before = base.raw_rate("small_b1")
                    r = wrk(url + "/v1/models/small:predict", small1, conns, args.duration, tmp)
                    raw1 = (before + base.raw_rate("small_b1")) / 2
                    p99_note = (f"(target <= 20 ms) {verdict(r['p99'] <= 0.020)}" if conns == 16 else "")
                    print(f"  small, 1 row, {label}: {r['rps']:7.0f} req/s = {r['rps'] / raw1:4.2f}x raw batch-1 "
                          f"({raw1:.0f}/s; target >= {target}x) {verdict(r['rps'] / raw1 >= target)}; "
                          f"p50 {r['p50'] * 1e3:.2f} ms, p99 {r['p99'] * 1e3:.2f} ms {p99_note}")
                    fails[f"small c{conns}"] = (r["non2xx"], r["socket_errors"])
                before = base.round_trip_rows("medium_b32")
                r = wrk(url + "/v1/models/medium:predict", medium32, 16, args.duration, tmp)
                jrt = (before + base.round_trip_rows("medium_b32")) / 2
                rows = r["rps"] * 32
                print(f"  medium, 32 rows, 16 conns: {rows:7.0f} rows/s = {rows / jrt:4.2f}x JSON round-trip "
                      f"({jrt:.0f} rows/s; target >= 0.8x) {verdict(rows / jrt >= 0.8)}; p99 {r['p99'] * 1e3:.1f} ms")
                fails["medium c16"] = (r["non2xx"], r["socket_errors"])
                bad = {k: v for k, v in fails.items() if v[0] or v[1]}
                print(f"  failed responses: {bad or 'none'}")
            print_big(url)
            server_rss = rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        bare = bare_rss([store.version_dir("small", 1), store.version_dir("medium", 1)])

        print("\n== memory (RSS, small + medium loaded and called)")
        print(f"  bare python process holding the models  {bare / 1024:7.1f} MiB")
        print(f"  maasctl serve after the load tests      {server_rss / 1024:7.1f} MiB = {server_rss / bare:.2f}x "
              f"(target <= 1.3x) {verdict(server_rss / bare <= 1.3)}")
    finally:
        if args.keep:
            print(f"\nstore kept at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
