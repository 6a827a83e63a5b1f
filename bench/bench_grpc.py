"""gRPC vs REST on the same `maasctl serve` process, measured in the same run.

    python bench/bench_grpc.py [--duration 5]

One server (`serve small medium --grpc-port`) in a subprocess; one load generator (asyncio, this process)
with N concurrent requests, each phase bounded by --duration. Both clients are minimal and equally cheap:
REST is a hand-written HTTP/1.1 keep-alive client (one connection per concurrent request, bodies
prebuilt with orjson), gRPC is grpc.aio on one channel with prebuilt serialized PredictRequests (binary
`tensor_content`). REST is measured before and after gRPC and averaged, because this machine's load drifts.

Models: MLP 4->16->3 ("small") and 784->512->512->10 ("medium"), as in bench_serve.py.
Target: medium model, 32-row requests, 16 concurrent: gRPC rows/s >= 2x REST. Small model, 1-row
requests: req/s and p99 are reported next to REST. Every answer is checked (HTTP 200 / gRPC OK).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maasctl.predict import grpc_wire
from maasctl.refs import ModelRef


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store_root: Path, port: int, grpc_port: int) -> subprocess.Popen:
    log = store_root.parent / f"serve-{port}.log"  # a file, not a pipe nobody reads (it would block the server)
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", str(store_root), "serve", "small",
                                 "medium", "--port", str(port), "--grpc-port", str(grpc_port)],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    import urllib.request

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server died: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server not ready after 180 s")


async def _rest_worker(port: int, path: str, body: bytes, stop_at: float, lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            payload = await reader.readexactly(length)
            if b" 200 " not in status or not payload.startswith(b'{"predictions"'):
                errors.append(status.decode().strip())
            lat.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def _grpc_worker(call, body: bytes, stop_at: float, lat: list[float], errors: list[str]) -> None:
    import grpc

    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            answer = await call(body, timeout=30)
            if not answer:
                errors.append("empty answer")
        except grpc.RpcError as exc:
            errors.append(exc.code().name)
        lat.append(time.perf_counter() - t0)


async def _load(kind: str, port: int, grpc_address: str, model: str, body: bytes, clients: int,
                seconds: float) -> tuple[list[float], list[str], float]:
    lat: list[float] = []
    errors: list[str] = []
    if kind == "rest":
        # a short warm-up, then the measured phase
        await asyncio.gather(*(_rest_worker(port, f"/v1/models/{model}:predict", body, time.perf_counter() + 0.3,
                                            [], errors) for _ in range(clients)))
        t0 = time.perf_counter()
        await asyncio.gather(*(_rest_worker(port, f"/v1/models/{model}:predict", body, t0 + seconds, lat, errors)
                               for _ in range(clients)))
    else:
        import grpc

        async with grpc.aio.insecure_channel(grpc_address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            call = channel.unary_unary(grpc_wire.PREDICT)
            await asyncio.gather(*(_grpc_worker(call, body, time.perf_counter() + 0.3, [], errors)
                                   for _ in range(clients)))
            t0 = time.perf_counter()
            await asyncio.gather(*(_grpc_worker(call, body, t0 + seconds, lat, errors) for _ in range(clients)))
    return lat, errors, time.perf_counter() - t0


def phase(kind: str, port: int, grpc_address: str, model: str, x: np.ndarray, clients: int,
          seconds: float) -> dict[str, float]:
    if kind == "rest":
        body = orjson.dumps({"instances": x}, option=orjson.OPT_SERIALIZE_NUMPY)
    else:
        body = grpc_wire.predict_request(ModelRef(model), "serving_default", {"features": x},
                                         {"features": "float32"})
    lat, errors, wall = asyncio.run(_load(kind, port, grpc_address, model, body, clients, seconds))
    if errors:
        print(f"  {kind}: {len(errors)} failed calls, e.g. {errors[0]}")
    lat.sort()
    n = len(lat)
    return {"rps": n / wall, "rows": n * len(x) / wall, "p50": lat[n // 2] if n else 0.0,
            "p99": lat[min(n - 1, int(n * 0.99))] if n else 0.0, "errors": len(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load phase (default 5)")
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()

    from maasctl.store import Store
    from maasctl.tf import load_tensorflow
    from maasctl.tf.testing import build_mlp

    tf = load_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    store = Store(work / "store")
    for name, sizes, seed in (("small", [4, 16, 3], 1), ("medium", [784, 512, 512, 10], 2)):
        store.register(build_mlp(tf, work / name, sizes, seed), name)
    port, grpc_port = free_port(), free_port()
    print(f"cores: {os.cpu_count()} (server, load generator and anything else on this machine share them); "
          f"load average {os.getloadavg()[0]:.1f}")
    proc = start_server(store.root, port, grpc_port)
    address = f"127.0.0.1:{grpc_port}"
    missed = False
    try:
        rng = np.random.default_rng(0)
        for model, rows, width, target in (("medium", 32, 784, 2.0), ("small", 1, 4, None)):
            x = rng.random((rows, width)).astype(np.float32)
            rest1 = phase("rest", port, address, model, x, args.clients, args.duration)
            grpc_r = phase("grpc", port, address, model, x, args.clients, args.duration)
            rest2 = phase("rest", port, address, model, x, args.clients, args.duration)
            rest = {k: (rest1[k] + rest2[k]) / 2 for k in rest1}
            ratio = grpc_r["rows"] / rest["rows"]
            print(f"{model}, {rows}-row requests, {args.clients} concurrent:")
            for label, r in (("REST", rest), ("gRPC", grpc_r)):
                print(f"  {label}: {r['rps']:8.0f} req/s {r['rows']:9.0f} rows/s  p50 {r['p50'] * 1e3:6.2f} ms  "
                      f"p99 {r['p99'] * 1e3:6.2f} ms  failed {int(r['errors'])}")
            line = f"  gRPC / REST rows/s: {ratio:.2f}x"
            if target is not None:
                ok = ratio >= target
                missed |= not ok
                line += f" (target >= {target:.1f}x) " + ("ok" if ok else "MISSED")
            print(line)
    finally:
        proc.terminate()
        proc.wait(30)
    if missed:
        print("MISSED: a target above was not met")


if __name__ == "__main__":
    main()
