"""Benchmark `serve --engine ray` (Ray's HTTP proxy in front of replicas) against single-process `maasctl serve`,
measured in the same run with wrk.

    python bench/bench_ray.py [--duration 10] [--replica-cpus 0.5]

Model "small" (MLP 4->16->3), 1-row :predict requests, 16 connections, all on 127.0.0.1. The single-process
server is measured before and after the Ray phases (the mean is the baseline; it is stopped while Ray runs, so
the two never share the CPUs). Ray: one local single-node cluster (ray.cluster_utils, no dashboard), the app
deployed by the CLI with --replicas 1, then again with --replicas 2; once with Ray's default Python HTTP proxy,
once with its HAProxy ingress (a cluster setting: RAY_SERVE_ENABLE_HA_PROXY=1 where the cluster starts; the
application is the same). Goal (issue 13): Ray with one replica >= 0.5x the single-process req/s; 2 replicas vs 1
is reported (on a 2-core box they compete with the proxy for the same cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only (before ray is imported)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_serve import body_for, free_port, post, start_server, verdict, wrk

from maasctl.store import Store
from maasctl.tf import load_tensorflow
from maasctl.tf.testing import build_mlp

# Ray's HTTP proxy (the default, Python), and its HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1 in the cluster's
# environment: HAProxy forwards to the replicas' own HTTP servers)
INGRESSES = ("proxy", "haproxy")


def maasctl(store: Store, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maasctl", "--store", str(store.root), *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600, check=False)


def single(store: Store, url_path: str, body: bytes, seconds: float, tmp: Path) -> dict:
    proc, url, _ = start_server(store, ["small"])
    try:
        wrk(url + url_path, body, 16, 1, tmp)  # warm-up
        return wrk(url + url_path, body, 16, seconds, tmp)
    finally:
        proc.terminate()
        proc.wait(30)


def on_ray(store: Store, address: str, replicas: int, cpus: float, url_path: str, body: bytes, seconds: float,
           tmp: Path) -> dict:
    t0 = time.perf_counter()
    r = maasctl(store, "serve", "small", "--engine", "ray", "--address", address, "--replicas", str(replicas),
                "--replica-cpus", str(cpus), "--port", str(free_port()), "--json")
    if r.returncode != 0:
        raise SystemExit(f"serve --engine ray failed: {r.stderr[-2000:]}")
    doc = json.loads(r.stdout)
    deploy_s = time.perf_counter() - t0
    try:
        assert post(doc["url"] + url_path, body) == 200
        wrk(doc["url"] + url_path, body, 16, 1, tmp)  # warm-up
        out = wrk(doc["url"] + url_path, body, 16, seconds, tmp)
        out["deploy_s"] = deploy_s
        return out
    finally:
        maasctl(store, "stop", doc["id"])


def line(label: str, r: dict, extra: str = "") -> str:
    return (f"  {label:34s} {r['rps']:7.0f} req/s  p50 {r['p50'] * 1e3:6.2f} ms  p99 {r['p99'] * 1e3:6.2f} ms  "
            f"failed {r['errors']}{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    ap.add_argument("--replica-cpus", type=float, default=0.5, help="--replica-cpus of the Ray replicas")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    import ray
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    cluster = None
    try:
        store = Store(tmp / "store")
        store.register(build_mlp(load_tensorflow(), tmp / "small", [4, 16, 3], 1), "small")
        body, path = body_for(1, 4), "/v1/models/small:predict"
        print(f"ray {ray.__version__}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}; small, 1 row, "
              f"16 connections, {args.duration:.0f} s per point")
        before = single(store, path, body, args.duration, tmp)
        results = {}
        for ingress in INGRESSES:
            os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if ingress == "haproxy" else "0"  # the cluster inherits it
            t0 = time.perf_counter()
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 2, "object_store_memory": 150 * 2**20, "include_dashboard": False})
            print(f"  (local Ray cluster, {ingress} ingress, up in {time.perf_counter() - t0:.1f} s)")
            for n in (1, 2):
                results[ingress, n] = on_ray(store, cluster.address, n, args.replica_cpus, path, body,
                                             args.duration, tmp)
            cluster.shutdown()
            cluster = None
        after = single(store, path, body, args.duration, tmp)

        base_rps = (before["rps"] + after["rps"]) / 2
        base_p99 = (before["p99"] + after["p99"]) / 2
        print("\n== wrk, 127.0.0.1")
        print(line("maasctl serve (before Ray)", before))
        print(line("maasctl serve (after Ray)", after))
        for (ingress, n), r in results.items():
            print(line(f"--engine ray, {ingress}, {n} replica{'s' if n > 1 else ''}", r,
                       f"  deploy {r['deploy_s']:.1f} s"))
        print()
        for ingress in INGRESSES:
            one, two = results[ingress, 1], results[ingress, 2]
            ratio = one["rps"] / base_rps
            print(f"  {ingress:8s} 1 replica / single process: {ratio:5.3f}x req/s (goal >= 0.5x) "
                  f"{verdict(ratio >= 0.5)}; p99 {one['p99'] / base_p99:.1f}x")
            print(f"  {ingress:8s} 2 replicas / 1 replica:      {two['rps'] / one['rps']:5.2f}x req/s; "
                  f"p99 {two['p99'] * 1e3:.1f} vs {one['p99'] * 1e3:.1f} ms")
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
