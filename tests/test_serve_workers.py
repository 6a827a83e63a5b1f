"""`serve --workers N`: N real server processes on one port (SO_REUSEPORT) under a supervisor.

One detached `--workers 2` server (real subprocesses, real sockets): both workers answer (their pids in the
`x-maasctl-worker` header), one scrape sees every worker's requests, a worker killed with SIGKILL is
restarted while requests keep succeeding, an alias move reloads every worker, `ps` shows one server with its
worker count and gRPC address, and `stop` ends the supervisor and every worker after the request in flight
was answered. The supervisor's crash policy is checked with tiny stand-in
workers (no TensorFlow)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, run_cli

from maasctl.predict.grpc_client import grpc_target
from maasctl.serving.metrics import Metrics
from maasctl.serving.workers import Supervisor
from maasctl.store import Store

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.0, 3.4, 1.5, 0.2]]
FULL = json.dumps({"instances": ROWS}).encode()  # = --max-batch-size: run at once
ONE = json.dumps({"instances": ROWS[:1]}).encode()  # waits --batch-timeout-ms for company: a request in flight
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _open(url: str, body: bytes | None = None, retries: int = 0):
    """A fresh connection each time (so the kernel may pick either worker): (status, worker pid, document)."""
    for attempt in range(retries + 1):
        try:
            req = urllib.request.Request(url, data=body, method="POST" if body else "GET")
            with _NO_PROXY.open(req, timeout=30) as resp:
                return resp.status, int(resp.headers["x-maasctl-worker"]), json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError):
            if attempt == retries:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _post(url: str, retries: int = 0) -> int:
    status, pid, doc = _open(url + "/v1/models/small:predict", FULL, retries)
    assert status == 200 and np.shape(doc["predictions"]) == (4, 3)
    return pid


def _predict_count(url: str) -> float:
    with _NO_PROXY.open(url + "/monitoring/prometheus/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(r'^maasctl_requests_total\{model="small",version="\d+",api="predict",'
                                            r'code="200"\} (\S+)$', text, re.MULTILINE))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] not in "ZX"


@pytest.mark.tf
@pytest.mark.slow
def test_two_workers_share_the_port(models, tmp_path):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small", aliases=["stable"])
    store.register(models["small_b"], "small")
    r = run_cli("serve", "small@stable", "--port", "0", "--grpc-port", "0", "--workers", "2", "--detach", "--json",
                "--max-batch-size", "4", "--batch-timeout-ms", "2000", store=store.root)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    url, supervisor = doc["url"], doc["pid"]
    seen: set[int] = set()
    try:
        assert doc["workers"] == 2 and doc["grpc"].startswith("127.0.0.1:")
        listed = json.loads(run_cli("ps", "--json", store=store.root).stdout)
        assert [(s["id"], s["pid"], s["workers"], s["grpc"]) for s in listed] == [(doc["id"], supervisor, 2,
                                                                                   doc["grpc"])]
        table = run_cli("ps", store=store.root).stdout
        assert doc["grpc"] in table and re.search(rf"{doc['id']}\s+{supervisor}\s+{re.escape(url)}\s+"
                                                  rf"{re.escape(doc['grpc'])}\s+2\s+small@stable", table), table

        sent = 0
        while len(seen) < 2 and sent < 200:  # new connections are spread over both workers' sockets
            seen.add(_post(url))
            sent += 1
        assert len(seen) == 2 and supervisor not in seen, seen
        target = grpc_target(doc["grpc"], "small")  # the gRPC port is shared the same way
        try:
            assert target.predict({"features": np.array(ROWS, np.float32)}, 4)["output_0"].shape == (4, 3)
        finally:
            target.close()
        time.sleep(1.0)  # each worker publishes its counts every 0.2 s; then any worker's scrape sees them all
        assert [_predict_count(url) for _ in range(6)] == [sent] * 6  # 6 fresh connections: either worker

        store.set_alias("small@2", "stable")  # every worker follows the alias
        versions: dict[int, list] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (set(versions) == seen and all(v == ["2"] for v in
                                                                                  versions.values())):
            _, pid, status = _open(url + "/v1/models/small")
            versions[pid] = [v["version"] for v in status["model_version_status"] if v["state"] == "AVAILABLE"]
            time.sleep(0.05)
        assert versions == {pid: ["2"] for pid in seen}, versions

        victim = min(seen)
        os.kill(victim, signal.SIGKILL)
        answered: set[int] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # requests keep succeeding; the supervisor starts a new worker
            answered.add(_post(url, retries=5))
            if answered - seen:
                break
            time.sleep(0.05)
        assert victim not in answered and answered - seen, answered
        seen |= answered
        assert len(json.loads(run_cli("ps", "--json", store=store.root).stdout)) == 1

        in_flight: dict[str, object] = {}
        thread = threading.Thread(target=lambda: in_flight.update(r=_open(url + "/v1/models/small:predict", ONE)))
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting in its worker's batch queue (--batch-timeout-ms 2000)
    finally:
        stopped = run_cli("stop", doc["id"], "--json", store=store.root)
    assert stopped.returncode == 0 and json.loads(stopped.stdout)[0]["graceful"] is True, stopped.stderr
    thread.join(30)
    status, pid, body = in_flight["r"]  # answered before its worker stopped
    assert status == 200 and pid in seen and np.shape(body["predictions"]) == (1, 3)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in seen | {supervisor}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in seen | {supervisor} if _alive(p)]
    assert run_cli("ps", "--json", store=store.root).stdout.strip() == "[]"


# -- the supervisor with stand-in workers (no TensorFlow) ------------------------------------------------
_WORKER = """
import json, os, sys, time
d, mode = sys.argv[1], sys.argv[2]
json.dump({"pid": os.getpid(), "settled": True, "metrics": {}}, open(os.path.join(d, f"{os.getpid()}.json"), "w"))
with open(os.path.join(d, "starts"), "a") as f:
    f.write(f"{os.getpid()}\\n")
if mode == "crash" and len(open(os.path.join(d, "starts")).read().split()) >= 2:
    time.sleep(0.4)  # settled first (the supervisor looks every 0.05 s): then every worker after the first exits
    sys.exit(7)
time.sleep(60)
"""


def _supervisor(tmp_path: Path, mode: str, max_crashes: int = 3) -> Supervisor:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    return Supervisor([str(tmp_path), mode], 2, tmp_path, command=[sys.executable, str(script)],
                      max_crashes=max_crashes, restart_delay=0.05)


def test_supervisor_restarts_crashed_workers_then_gives_up(tmp_path):
    ready = []
    code = _supervisor(tmp_path, "crash").run(lambda: ready.append(True))
    starts = (tmp_path / "starts").read_text().split()
    assert code == 1 and ready == [True]
    assert len(starts) == 4  # the first two, then a restart after each crash but the third
    assert not [p for p in map(int, starts) if _alive(p)]


def test_supervisor_stops_on_a_worker_exiting_while_starting(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text("import sys; sys.exit(3)\n")
    sup = Supervisor([], 2, tmp_path, command=[sys.executable, str(script)])
    assert sup.run(lambda: pytest.fail("not ready")) == 1


def test_metrics_sum_the_other_workers():
    a, b = Metrics(), Metrics()
    a.requests.inc("m", "1", "predict", "200", amount=2)
    b.requests.inc("m", "1", "predict", "200", amount=3)
    b.requests.inc("m", "1", "predict", "400")
    a.request_latency.observe(0.002, "m", "predict")
    b.request_latency.observe(0.002, "m", "predict")
    a.peers = lambda: [json.loads(json.dumps(b.state()))]
    text = a.render().decode()
    assert 'maasctl_requests_total{model="m",version="1",api="predict",code="200"} 5' in text
    assert 'maasctl_requests_total{model="m",version="1",api="predict",code="400"} 1' in text
    assert 'maasctl_request_latency_seconds_count{model="m",api="predict"} 2' in text
    assert a.requests.value("m", "1", "predict", "200") == 2  # its own counts are unchanged


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "Error: --workers must be at least 1 (got 0)\n"),
    (["--workers", "2", "--backend", "tfserving"], ("Error: --workers works with --backend maasctl only "
                                                   "(tensorflow_model_server uses every core itself)\n")),
])
def test_bad_workers_option_is_one_line(tmp_path, args, message):
    r = cli("serve", "nope", *args, store=tmp_path / "store")
    assert (r.returncode, r.stderr) == (2, message)
