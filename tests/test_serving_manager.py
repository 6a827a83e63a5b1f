"""Source + Manager: aspired versions, hot reload over real HTTP, alias moves, digest-checked loads."""

from __future__ import annotations

import json
import threading
import time
from typing import ClassVar

import numpy as np
import pytest
import requests

from maasctl.refs import parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.serving.source import Aspired, StoreSource, aspired_for
from maasctl.store import Store
from maasctl.tf.servable import store_loader

X = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]


def refs(*texts: str):
    return [parse_ref(t) for t in texts]


# -- Source (pure) -----------------------------------------------------------------------------------------
def test_aspired_latest_pinned_alias():
    snap = {"m": {"versions": [1, 2, 3], "aliases": {"prod": 1, "dev": 3}}}
    assert aspired_for(refs("m"), snap)["m"] == Aspired(frozenset({1, 3}), {"prod": 1, "dev": 3})
    assert aspired_for(refs("m@2"), snap)["m"] == Aspired(frozenset({2}), {})
    assert aspired_for(refs("m@prod"), snap)["m"] == Aspired(frozenset({1}), {"prod": 1})
    assert aspired_for(refs("m@2", "m@prod"), snap)["m"].versions == {1, 2}


def test_aspired_follows_the_registry():
    prev = aspired_for(refs("m@prod"), {"m": {"versions": [1, 2], "aliases": {"prod": 1}}})
    moved = aspired_for(refs("m@prod"), {"m": {"versions": [1, 2], "aliases": {"prod": 2}}}, prev)
    assert moved["m"] == Aspired(frozenset({2}), {"prod": 2})
    # a deleted alias keeps its last target served; a removed pinned version is dropped
    gone = aspired_for(refs("m@prod"), {"m": {"versions": [1, 2], "aliases": {}}}, moved)
    assert gone["m"] == Aspired(frozenset({2}), {"prod": 2})
    assert aspired_for(refs("m@2"), {"m": {"versions": [1], "aliases": {}}})["m"].versions == frozenset()


def test_unreadable_store_keeps_the_last_good_set(tmp_path, saved_models):
    store = Store(tmp_path / "store")
    store.register(saved_models["small"], "m")
    source = StoreSource(store, refs("m"))
    first = source.poll()
    assert first["m"].versions == {1}
    (store.root / "index.db").write_bytes(b"this is not a database" * 100)
    for p in store.root.glob("index.db-*"):
        p.unlink()
    assert source.poll() == first and source.last_error is not None


# -- Manager with a fake loader (lifecycle logic, no TensorFlow; the real loader is tested below) ------------
class FakeModel:
    """Stands in for a loaded SavedModel: answers with its version, records close()."""

    signatures: ClassVar[dict] = {}

    def __init__(self, version: int, closed: list[int]) -> None:
        self.version, self.closed = version, closed

    def predict(self, inputs, signature):
        return {"version": self.version}

    def close(self) -> None:
        self.closed.append(self.version)


@pytest.fixture
def fake_managed(tmp_path, saved_models):
    """m@1 (alias prod) and m@2 in a real store; a Manager serving `m` and `m@prod` with a fake loader."""
    from maasctl.serving.manager import Manager

    store = Store(tmp_path / "store")
    store.register(saved_models["small"], "m", aliases=["prod"])
    store.register(saved_models["small_b"], "m")
    closed: list[int] = []
    loads: list[int] = []

    def loader(name, version):
        loads.append(version)
        if version == 3:
            raise RuntimeError("weights unreadable")
        return FakeModel(version, closed), {}

    return store, Manager(store, refs("m", "m@prod"), loader=loader), loads, closed


def _served(manager, **kw) -> int:
    servable = manager.acquire("m", **kw)
    try:
        return servable.version
    finally:
        servable.release()


def test_manager_loads_latest_and_labels_newest_first(fake_managed):
    _, manager, loads, _ = fake_managed
    manager.poll_once()
    assert loads == [2, 1]
    assert (_served(manager), _served(manager, label="prod"), _served(manager, version=1)) == (2, 1, 1)
    assert {v: s.state for v, s in manager.status("m").items()} == {1: "AVAILABLE", 2: "AVAILABLE"}


def test_manager_alias_move_unloads_the_old_version(fake_managed):
    store, manager, _, closed = fake_managed
    manager.poll_once()
    store.set_alias("m@2", "prod")
    manager.poll_once()
    assert closed == [1] and _served(manager, label="prod") == 2
    assert manager.status("m")[1].state == "END"


def test_manager_keeps_serving_when_a_new_version_fails_to_load(fake_managed, saved_models, tmp_path):
    from maasctl.serving.manager import Manager

    loader, loads = fake_managed[1].loader, fake_managed[2]
    store = Store(tmp_path / "plain")  # no aliases: only the latest version is aspired
    store.register(saved_models["small"], "m")
    store.register(saved_models["small_b"], "m")
    manager = Manager(store, refs("m"), loader=loader)
    manager.poll_once()
    store.register(saved_models["multi"], "m")  # version 3: the loader fails on it
    manager.poll_once()
    assert _served(manager) == 2  # no aspired version is available, so the loaded one keeps serving
    status = manager.status("m")[3]
    assert (status.state, status.error_code) == ("END", "UNKNOWN") and "weights unreadable" in status.error_message
    manager.poll_once()
    assert loads == [2, 3]  # a failed version is not retried on every poll


def test_manager_unload_waits_for_requests_in_flight(fake_managed):
    store, manager, _, closed = fake_managed
    manager.poll_once()
    held = manager.acquire("m", version=1)
    store.set_alias("m@2", "prod")
    mover = threading.Thread(target=manager.poll_once)
    mover.start()
    time.sleep(0.3)
    assert closed == [] and mover.is_alive()  # version 1 is still held by a request
    held.release()
    mover.join(timeout=10)
    assert closed == [1]


# -- hot reload over HTTP ----------------------------------------------------------------------------------
@pytest.fixture
def reload_server(tf, models, tmp_path):
    store = Store(tmp_path / "store")
    store.register(models["small"], "m")
    options = ServeOptions(poll_interval=0.2)
    server = ServerThread(build_app(store, refs("m", "m@prod"), options, loader=store_loader(store))).start()
    yield store, server
    server.stop()


def outputs(tf, path, x):
    sig = tf.saved_model.load(str(path)).signatures["serving_default"]
    return next(iter(sig(features=np.array(x, dtype=np.float32)).values())).numpy()


def test_hot_reload_without_failed_requests(tf, models, reload_server):
    store, server = reload_server
    store.set_alias("m@1", "prod")
    server.wait_ready()
    v1 = outputs(tf, store.version_dir("m", 1), X)
    failures, seen = [], []
    stop = threading.Event()

    def client():
        with requests.Session() as s:
            while not stop.is_set():
                r = s.post(server.url + "/v1/models/m:predict", data=json.dumps({"instances": X}), timeout=30)
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    seen.append((time.monotonic(), np.array(r.json()["predictions"])))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t_register = time.monotonic()
    store.register(models["small_b"], "m")
    v2 = outputs(tf, store.version_dir("m", 2), X)
    deadline = t_register + 10
    switched = None
    while time.monotonic() < deadline and switched is None:
        switched = next((t for t, p in list(seen) if t > t_register and np.allclose(p, v2, atol=1e-6)), None)
        time.sleep(0.02)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert switched is not None, "version 2 never became the default"
    print(f"new default served {switched - t_register:.2f} s after registration")
    for t, p in seen:  # every answer is exactly one version's
        assert np.allclose(p, v1, atol=1e-6) or np.allclose(p, v2, atol=1e-6)
    # v1 stays (prod points at it); the label route serves it
    r = requests.post(server.url + "/v1/models/m/labels/prod:predict", data=json.dumps({"instances": X}), timeout=30)
    np.testing.assert_allclose(np.array(r.json()["predictions"]), v1, atol=1e-6)


def test_alias_move_unloads_the_old_version(tf, models, reload_server):
    store, server = reload_server
    store.register(models["small_b"], "m")
    store.set_alias("m@1", "prod")
    server.wait_ready()
    store.set_alias("m@2", "prod")

    def states():
        doc = requests.get(server.url + "/v1/models/m", timeout=30).json()
        return {s["version"]: s["state"] for s in doc["model_version_status"]}

    deadline = time.monotonic() + 15
    while states().get("1") != "END" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert states() == {"1": "END", "2": "AVAILABLE"}
    r = requests.post(server.url + "/v1/models/m/versions/1:predict", data=json.dumps({"instances": X}), timeout=30)
    assert r.status_code == 404 and "Specific(m, 1)" in r.json()["error"]
    r = requests.post(server.url + "/v1/models/m/labels/prod:predict", data=json.dumps({"instances": X}), timeout=30)
    np.testing.assert_allclose(np.array(r.json()["predictions"]), outputs(tf, store.version_dir("m", 2), X), atol=1e-6)


def test_corrupted_version_is_refused(tf, models, tmp_path):
    store = Store(tmp_path / "store")
    info = store.register(models["small"], "m").info
    victim = next(p for p in sorted((info.path / "variables").iterdir()) if p.name.startswith("variables.data"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    server = ServerThread(build_app(store, refs("m"), ServeOptions(), loader=store_loader(store))).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = requests.get(server.url + "/v1/models/m", timeout=30).json()["model_version_status"]
            if status and status[0]["state"] == "END":
                break
            time.sleep(0.05)
        assert status[0]["state"] == "END" and status[0]["status"]["error_code"] != "OK"
        assert victim.name in status[0]["status"]["error_message"]
        ready = requests.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["failed"]
        r = requests.post(server.url + "/v1/models/m:predict", data=json.dumps({"instances": X}), timeout=30)
        assert r.status_code == 503 and "failed to load" in r.json()["error"]
    finally:
        server.stop()


def _corrupt(path):
    victim = next(p for p in sorted((path / "variables").iterdir()) if p.name.startswith("variables.data"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim


def test_a_new_version_that_fails_to_load_leaves_the_old_one_serving(tf, models, tmp_path):
    from maasctl.serving.app import ServingApp
    from maasctl.serving.manager import Manager

    store = Store(tmp_path / "store")
    store.register(models["small"], "m")
    store.set_alias("m@1", "prod")
    manager = Manager(store, refs("m", "m@prod"), poll_interval=3600, loader=store_loader(store))
    manager.poll_once()
    assert manager.snapshot.latest == {"m": 1} and manager.snapshot.labels == {"m": {"prod": 1}}
    victim = _corrupt(store.register(models["small_b"], "m").info.path)
    store.set_alias("m@2", "prod")
    manager.poll_once()  # synchronous: the reconciliation is complete when it returns
    assert manager.snapshot.latest == {"m": 1} and manager.snapshot.labels == {"m": {"prod": 1}}
    st = manager.status("m")
    assert st[1].state == "AVAILABLE" and st[2].state == "END" and victim.name in st[2].error_message
    manager.poll_once()  # stable: the failed version is not retried, the old one is not unloaded
    assert manager.snapshot.latest == {"m": 1} and manager.status("m")[1].state == "AVAILABLE"

    server = ServerThread(ServingApp(manager)).start()
    try:
        doc = requests.get(server.url + "/v1/models/m", timeout=30).json()
        states = {s["version"]: (s["state"], s["status"]["error_code"]) for s in doc["model_version_status"]}
        assert states == {"1": ("AVAILABLE", "OK"), "2": ("END", "UNKNOWN")}
        v1 = outputs(tf, store.version_dir("m", 1), X)
        for route in ("m", "m/labels/prod"):
            r = requests.post(f"{server.url}/v1/models/{route}:predict", data=json.dumps({"instances": X}), timeout=30)
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(np.array(r.json()["predictions"]), v1, atol=1e-6)
        r = requests.post(server.url + "/v1/models/m/versions/2:predict", data=json.dumps({"instances": X}), timeout=30)
        assert r.status_code == 503 and "failed to load" in r.json()["error"]
        # every served ref still answers: the replica stays in rotation, and the body names the refused version
        ready = requests.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        [failed] = ready.json()["failed"]
        assert failed.startswith("m@2: ") and victim.name in failed
    finally:
        server.stop()


def test_a_new_latest_that_fails_keeps_the_previous_latest_serving(tf, models, tmp_path):
    """Serving `m` and `m@prod` (prod -> 1, latest 2): a broken 3 leaves 2 as the latest, not 1."""
    from maasctl.serving.manager import Manager

    store = Store(tmp_path / "store")
    store.register(models["small"], "m", aliases=["prod"])
    store.register(models["small_b"], "m")
    manager = Manager(store, refs("m", "m@prod"), poll_interval=3600, loader=store_loader(store))
    manager.poll_once()
    assert manager.snapshot.latest == {"m": 2} and manager.snapshot.labels == {"m": {"prod": 1}}
    victim = _corrupt(store.register(models["small"], "m", new_version=True).info.path)
    manager.poll_once()
    st = manager.status("m")
    assert st[3].state == "END" and victim.name in st[3].error_message
    assert manager.snapshot.latest == {"m": 2} and manager.snapshot.labels == {"m": {"prod": 1}}
    assert st[2].state == "AVAILABLE" and sorted(manager.snapshot.servables) == [("m", 1), ("m", 2)]
    assert manager.readiness()[0] and manager.readiness()[2] == [f"m@3: {st[3].error_message}"]
    manager.stop()


def test_a_failed_version_is_retried_after_a_backoff_or_when_the_model_changes(tf, models, tmp_path):
    from maasctl.serving.manager import Manager

    store = Store(tmp_path / "store")
    store.register(models["small"], "m")
    manager = Manager(store, refs("m"), poll_interval=3600, loader=store_loader(store), retry_s=0.3)
    manager.poll_once()
    path = store.register(models["small_b"], "m").info.path
    good = {p: p.read_bytes() for p in (path / "variables").iterdir()}
    _corrupt(path)
    manager.poll_once()
    assert manager.snapshot.latest == {"m": 1} and manager.status("m")[2].error_code != "OK"
    for p, data in good.items():  # repaired (e.g. re-synced from a replica)
        p.write_bytes(data)
    manager.poll_once()  # within the backoff and nothing changed: not retried
    assert manager.snapshot.latest == {"m": 1} and manager.status("m")[2].state == "END"
    time.sleep(0.35)
    manager.poll_once()  # the backoff has passed: retried, and it loads
    assert manager.snapshot.latest == {"m": 2} and manager.status("m")[2].state == "AVAILABLE"
    assert manager.readiness() == (True, [], [])
    manager.stop()

    # without waiting: a change to the model's versions or aliases (someone acted) retries at once
    _corrupt(path)
    manager = Manager(store, refs("m"), poll_interval=3600, loader=store_loader(store), retry_s=3600)
    manager.poll_once()
    assert manager.snapshot.latest == {} and not manager.readiness()[0]  # nothing to answer with: not ready
    for p, data in good.items():
        p.write_bytes(data)
    manager.poll_once()
    assert manager.snapshot.latest == {}
    store.set_alias("m@1", "prod")  # the aspired set changes (prod's version joins it): 2 is retried
    manager.poll_once()
    assert manager.snapshot.latest == {"m": 2} and manager.status("m")[2].state == "AVAILABLE"
    manager.stop()


def test_failed_loads_are_remembered_boundedly(tmp_path):
    """A server that sees thousands of versions fail keeps only the last few failures per model (issue 17 #12)."""
    from maasctl.serving.manager import MAX_FAILED, Manager
    from maasctl.serving.source import Aspired

    manager = Manager(Store(tmp_path / "store"), refs("m"), loader=lambda name, version: None)  # never loads
    for v in range(1, 1001):
        manager._failed_load("m", v, Aspired(frozenset({v})))
    assert sorted(manager._failed["m"]) == list(range(1001 - MAX_FAILED, 1001))


def test_versions_no_longer_aspired_are_unloaded_when_nothing_is_aspired(tf, models, tmp_path):
    from maasctl.serving.manager import Manager

    store = Store(tmp_path / "store")
    store.register(models["small"], "m")
    manager = Manager(store, refs("m@1"), poll_interval=3600, loader=store_loader(store))
    manager.poll_once()
    assert manager.snapshot.latest == {"m": 1}
    store.remove(parse_ref("m@1"))
    manager.poll_once()  # the pinned version left the registry: it is not served any more (as in TF Serving)
    assert manager.snapshot.latest == {} and manager.status("m")[1].state == "END"


def test_status_map_is_bounded_per_model(tmp_path):
    """A server following a model through many versions keeps only the newest few ended ones (issue 17 #12)."""
    from maasctl.serving.manager import AVAILABLE, END, MAX_ENDED_STATUSES, Manager, VersionStatus

    manager = Manager(Store(tmp_path / "store"), refs("m"), loader=lambda name, version: None)  # never loads
    for v in range(1, 1001):
        manager._set_status("m", v, VersionStatus(AVAILABLE))
        if v > 1:
            manager._set_status("m", v - 1, VersionStatus(END))
    statuses = manager.status("m")
    assert len(statuses) == MAX_ENDED_STATUSES + 1
    assert statuses[1000].state == AVAILABLE and min(statuses) == 1000 - MAX_ENDED_STATUSES
