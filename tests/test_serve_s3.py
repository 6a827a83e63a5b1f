"""A fleet on one bucket: two `maasctl serve` processes follow an alias moved in S3 (moto on 127.0.0.1) while
clients keep calling them, with no failed request; a tampered version is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

pytestmark = [pytest.mark.tf, pytest.mark.slow]
X = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}


def _serve(store: str, *refs: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "MAASCTL_HOME": store}
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", "serve", *refs, "--port", "0", "--poll-seconds", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(proc.stderr.read())
    url = line.strip()
    deadline = time.monotonic() + 120
    while requests.get(f"{url}/readyz", timeout=10).status_code != 200:  # models load after the bind
        assert time.monotonic() < deadline and proc.poll() is None, "server never became ready"
        time.sleep(0.2)
    return proc, url


def _version(url: str) -> str:
    r = requests.get(f"{url}/v1/models/iris/labels/prod/metadata", timeout=10)
    r.raise_for_status()
    return r.json()["model_spec"]["version"]


def test_two_servers_follow_an_alias_move_with_no_failed_request(s3_store_url, models):
    from maasctl.store import open_store

    store = open_store(s3_store_url)
    store.register(models["small"], "iris", aliases=["prod"])
    store.register(models["small_b"], "iris")
    servers = [_serve(s3_store_url, "iris@prod") for _ in range(2)]
    failures: list[str] = []
    calls = [0]
    stop = threading.Event()

    def client(url: str) -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.post(f"{url}/v1/models/iris/labels/prod:predict", json=X, timeout=30)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                calls[0] += 1

    threads = [threading.Thread(target=client, args=(url,)) for _, url in servers for _ in range(2)]
    try:
        assert [_version(url) for _, url in servers] == ["1", "1"]
        for t in threads:
            t.start()
        time.sleep(1.0)
        store.set_alias("iris@2", "prod")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and [_version(url) for _, url in servers] != ["2", "2"]:
            time.sleep(0.2)
        time.sleep(1.0)  # keep calling after the switch (the old version is being unloaded)
        assert [_version(url) for _, url in servers] == ["2", "2"]
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=60)
        for proc, _ in servers:
            proc.terminate()
            proc.communicate(timeout=60)
    assert calls[0] > 20, calls  # the clients really were calling across the move
    assert failures == []
