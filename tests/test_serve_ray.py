"""`serve --engine ray`, for real: one local Ray cluster with two nodes on loopback for the whole module,
one application with two replicas deployed by the CLI into it; predictions against TensorFlow, an alias move
under client load, a killed replica, ps/stop; and the refusals (one line, exit 2).

Ray's own start (a few seconds, more on a busy box) is paid once: the cluster is session-scoped, the
application module-scoped, and the tests run in order against it (stop is last).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import cli, run_cli

ROWS = np.random.default_rng(7).normal(size=(8, 4)).astype(np.float32)
TOKEN = "ray-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAY_ENV = {
    # everything on 127.0.0.1: Ray's single-machine mode (otherwise nodes and drivers use the box's address)
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # the proxy (on the head) spreads requests over both nodes' replicas instead of preferring its own node's
    "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
}


@pytest.fixture(scope="session")
def ray_cluster():
    """Head + a second node on loopback, small (Ray's scheduler sees 2 CPUs, 100 MB object stores); this
    process is connected as a driver (serve.status). Shut down at the end with no Ray process left."""
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)  # before ray reads its constants; Ray's processes and ours inherit it
    pytest.importorskip("ray.serve")
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    session_dir = Path(cluster.head_node.get_session_dir_path())
    try:
        cluster.add_node(**node)
        cluster.connect()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for pid in _ray_pids(session_dir.name):  # none expected; never leave one behind
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(session_dir, ignore_errors=True)  # its logs
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ray_pids(session: str) -> list[int]:
    """Live processes of one Ray cluster (its raylets, GCS and workers name its session directory)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if session.encode() in cmd:
                out.append(int(proc.name))
    return out


@pytest.fixture(scope="module")
def ray_app(ray_cluster, saved_models, tmp_path_factory):
    """`maasctl serve tiny@prod --engine ray --replicas 2` into the cluster; stopped at the end if a test
    did not."""
    from maasctl.store import Store

    root = tmp_path_factory.mktemp("ray") / "store"
    store = Store(root)
    store.register(saved_models["small"], "tiny", aliases=["prod"])
    store.register(saved_models["small_b"], "tiny")
    r = run_cli("serve", "tiny@prod", "--engine", "ray", "--address", ray_cluster.address, "--replicas", "2",
                "--replica-cpus", "0.25", "--port", "0", "--poll-seconds", "0.2", "--json", store=root,
                env={"MAASCTL_TOKEN": TOKEN})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    yield store, doc
    run_cli("stop", doc["id"], store=root)


def _predict(session: requests.Session, url: str, rows: np.ndarray = ROWS) -> requests.Response:
    return session.post(f"{url}/v1/models/tiny/labels/prod:predict", json={"instances": rows.tolist()}, timeout=30,
                        headers=AUTH)


def _replica_versions(url: str, seen: dict[str, str], n: int = 20) -> None:
    """Ask the alias's version `n` times; Ray spreads the calls, each answer names its replica."""
    with requests.Session() as s:
        for _ in range(n):
            r = s.get(f"{url}/v1/models/tiny/labels/prod/metadata", timeout=30, headers=AUTH)
            r.raise_for_status()
            seen[r.headers["x-maasctl-replica"]] = r.json()["model_spec"]["version"]


def _running_replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or status.status != "RUNNING":
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())


@pytest.mark.tf
@pytest.mark.slow
def test_two_replicas_on_two_nodes_answer_like_tensorflow(ray_app, tf):
    store, doc = ray_app
    assert doc["engine"] == "ray" and doc["pid"] is None and doc["app"] == f"maasctl-{doc['id']}"
    assert doc["url"].startswith("http://127.0.0.1:") and not doc["url"].endswith(":0")
    assert _running_replicas(doc["app"]) == 2
    assert len(set(_replicas(doc["app"]).values())) == 2  # one replica on each node
    reference = tf.saved_model.load(str(store.version_dir("tiny", 1))).signatures["serving_default"]
    want = next(iter(reference(tf.constant(ROWS)).values())).numpy()
    replicas = set()
    with requests.Session() as s:
        for _ in range(10):
            r = _predict(s, doc["url"])
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(np.array(r.json()["predictions"]), want, rtol=0, atol=1e-6)
            replicas.add(r.headers["x-maasctl-replica"])
    assert len(replicas) == 2  # both replicas answered, each with its own loaded copy
    # the token reached every replica (through Ray's deployment config, never argv or the record)
    for _ in range(4):
        assert requests.post(f"{doc['url']}/v1/models/tiny:predict", json={"instances": ROWS.tolist()},
                             timeout=30).status_code == 401
    assert requests.get(f"{doc['url']}/healthz", timeout=30).status_code == 200
    assert TOKEN not in json.dumps([json.loads(p.read_text()) for p in (store.root / "servers").glob("*.json")])


@pytest.mark.tf
@pytest.mark.slow
def test_alias_move_under_load_reloads_every_replica_with_no_failed_request(ray_app):
    store, doc = ray_app
    url = doc["url"]
    failures: list[str] = []
    calls = [0]
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = _predict(s, url)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                calls[0] += 1
                time.sleep(0.005)

    threads = [threading.Thread(target=client) for _ in range(3)]
    seen: dict[str, str] = {}
    try:
        _replica_versions(url, seen)
        assert set(seen.values()) == {"1"}
        for t in threads:
            t.start()
        time.sleep(0.5)
        store.set_alias("tiny@2", "prod")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (len(seen) == 2 and set(seen.values()) == {"2"}):
            _replica_versions(url, seen, n=6)
        time.sleep(0.5)  # keep calling after the switch (the old version is being unloaded)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(seen) == 2 and set(seen.values()) == {"2"}, seen
    print(f"\nalias move: {calls[0]} requests, {len(failures)} failed; replicas {seen}")
    assert calls[0] > 20, calls  # the clients really were calling across the move
    assert failures == []


def _replicas(app: str) -> dict[int, str]:
    """{pid: node id} of the application's live replica actors, from Ray's actor table in the GCS
    (`ray.util.state` would need the dashboard, which the test cluster runs without)."""
    import ray

    return {int(a["Pid"]): a["Address"]["NodeID"] for a in ray._private.state.actors().values()
            if a["ActorClassName"].startswith(f"ServeReplica:{app}:") and a["State"] == "ALIVE"}


def _replica_pids(app: str) -> list[int]:
    return sorted(_replicas(app))


@pytest.mark.tf
@pytest.mark.slow
def test_a_killed_replica_is_replaced_and_clients_keep_succeeding(ray_app):
    _, doc = ray_app
    url, app = doc["url"], doc["app"]
    pids = _replica_pids(app)
    assert len(pids) == 2, pids
    before: dict[str, str] = {}
    _replica_versions(url, before)
    ok, failed = [0], []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                time.sleep(0.005)  # steady load that leaves CPU to the replacement replica on a 2-core box
                for attempt in range(3):  # client-side retries, as a load balancer's client would
                    try:
                        r = _predict(s, url)
                        if r.status_code == 200:
                            ok[0] += 1
                            break
                    except requests.RequestException:
                        pass
                    time.sleep(0.05 * (attempt + 1))
                else:
                    failed.append(1)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = _replica_pids(app)
            if len(now) == 2 and pids[0] not in now and _running_replicas(app) == 2:
                break
            time.sleep(0.3)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    now = _replica_pids(app)
    assert len(now) == 2 and pids[0] not in now and pids[1] in now, (pids, now)
    after: dict[str, str] = {}
    _replica_versions(url, after)
    assert set(after.values()) == {"2"} and set(after) != set(before)  # a new replica, following the alias
    print(f"\nkilled replica {pids[0]}: {ok[0]} requests succeeded, {len(failed)} failed after 3 tries")
    assert ok[0] > 20, ok
    assert len(failed) <= 0.01 * (ok[0] + len(failed)), (len(failed), ok[0])


@pytest.mark.tf
@pytest.mark.slow
def test_ps_lists_and_stop_removes_the_ray_application(ray_app):
    from ray import serve

    store, doc = ray_app
    listed = json.loads(cli("ps", "--json", store=store.root).stdout)
    assert [(s["id"], s["engine"], s["app"], s["url"], s["pid"]) for s in listed] == [
        (doc["id"], "ray", doc["app"], doc["url"], 0)]
    table = cli("ps", store=store.root).stdout
    assert doc["id"] in table and doc["url"] in table and f"ray:{doc['app']}" in table
    r = run_cli("stop", doc["id"], "--json", store=store.root)  # a real process: connects to Ray, serve.delete
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["id"] == doc["id"]
    assert doc["app"] not in serve.status().applications
    assert _replica_pids(doc["app"]) == []
    assert json.loads(cli("ps", "--json", store=store.root).stdout) == []
    r = cli("stop", doc["id"], store=store.root)
    assert r.returncode == 3 and r.stderr.startswith("Error: no running server")


@pytest.mark.parametrize("args, expect", [
    (["--replicas", "0"], "--replicas must be at least 1"),
    (["--autoscale", "3:1"], "MIN (3) is larger than MAX (1)"),
    (["--autoscale", "two"], "--autoscale must be MIN:MAX"),
    (["--replicas", "2", "--autoscale", "1:3"], "not both"),
    (["--replica-cpus", "0"], "--replica-cpus must be positive"),
    (["--grpc-port", "0"], "--grpc-port cannot be combined with --engine ray"),
])
def test_bad_ray_options_exit_2_with_one_line(args, expect, tmp_path):
    r = cli("serve", "tiny", "--engine", "ray", *args, store=tmp_path / "store")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("Error: ") and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_ray_options_need_engine_ray(tmp_path):
    r = cli("serve", "tiny", "--replicas", "2", store=tmp_path / "store")
    assert r.returncode == 2 and r.stderr.strip() == "Error: --replicas needs --engine ray"


def test_an_unreachable_cluster_fails_in_seconds(tmp_path, saved_models):
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported here: this process's Ray settings stay untouched
        pytest.skip("maasctl[ray] is not installed")
    from maasctl.serving.ray_engine import free_port
    from maasctl.store import Store

    Store(tmp_path / "store").register(saved_models["small"], "tiny")
    t0 = time.monotonic()
    r = run_cli("serve", "tiny", "--engine", "ray", "--address", f"127.0.0.1:{free_port('127.0.0.1')}",
                store=tmp_path / "store")
    assert r.returncode == 1 and "Error: cannot connect to the Ray cluster at 127.0.0.1:" in r.stderr
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "store" / "servers").exists() or not list((tmp_path / "store" / "servers").glob("*.json"))


def test_engine_ray_without_the_extra_exits_2(tmp_path, saved_models):
    """A real subprocess in which `import ray` fails, as it does without maasctl[ray]."""
    from maasctl.store import Store

    Store(tmp_path / "store").register(saved_models["small"], "tiny")
    hide = tmp_path / "noray"
    hide.mkdir()
    (hide / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    path = os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])
    r = run_cli("serve", "tiny", "--engine", "ray", store=tmp_path / "store", env={"PYTHONPATH": path})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "Error: --engine ray needs Ray Serve: pip install 'maasctl[ray]'"
