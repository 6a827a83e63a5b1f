"""Unloading a version waits for its in-flight requests on a condition (no polling), and only for them.

A fake loader and source stand in for TensorFlow and the store: this is the Manager's own logic."""

from __future__ import annotations

import threading
import time

from maasctl.refs import parse_ref
from maasctl.serving.manager import AVAILABLE, END, Manager
from maasctl.serving.source import Aspired


class _Model:
    def __init__(self) -> None:
        self.signatures: dict = {}
        self.closed = False

    def predict(self, inputs, signature):
        return {}

    def close(self):
        self.closed = True


class _Source:
    def __init__(self, versions: set[int]) -> None:
        self.versions = versions

    def poll(self):
        return {"m": Aspired(frozenset(self.versions))}


def test_unload_waits_for_the_request_in_flight_then_closes_at_once():
    models: dict[int, _Model] = {}

    def loader(name, version):
        models[version] = _Model()
        return models[version], {}

    source = _Source({1})
    manager = Manager(None, [parse_ref("m")], loader=loader, source=source, poll_interval=3600)
    manager.poll_once()
    assert manager.status("m")[1].state == AVAILABLE
    held = manager.acquire("m")
    source.versions = {2}
    unloading = threading.Thread(target=manager.poll_once)  # loads 2, then unloads 1
    unloading.start()
    time.sleep(0.5)
    assert unloading.is_alive() and not models[1].closed  # version 1 still serves the held request
    assert manager.acquire("m").version == 2  # new requests already go to version 2
    released = time.monotonic()
    held.release()
    unloading.join(timeout=10)
    assert not unloading.is_alive() and models[1].closed
    assert time.monotonic() - released < 1.0
    assert manager.status("m")[1].state == END


def test_wait_idle_returns_false_when_a_request_outlives_the_timeout():
    manager = Manager(None, [parse_ref("m")], loader=lambda n, v: (_Model(), {}), source=_Source({1}))
    manager.poll_once()
    servable = manager.acquire("m")
    t0 = time.monotonic()
    assert servable.wait_idle(0.2) is False
    assert 0.15 < time.monotonic() - t0 < 5
    servable.release()
    assert servable.wait_idle(0.2) is True
