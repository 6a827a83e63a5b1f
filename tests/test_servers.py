"""`maasctl serve --detach`, `ps`, `stop` in real subprocesses; port conflicts; graceful stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import run_cli

from maasctl.errors import OperationFailed
from maasctl.serving import records
from maasctl.serving.server import bind
from maasctl.store import Store

X = [[5.1, 3.5, 1.4, 0.2]]


def gone(pid: int) -> bool:
    return not records.pid_alive(pid)


def test_bind_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OperationFailed, match=f"port {port} on 127.0.0.1 is already in use"):
            bind("127.0.0.1", port)


def test_serve_unknown_model_exits_3(tmp_path):
    r = run_cli("serve", "nope", "--port", "0", store=tmp_path / "store")
    assert r.returncode == 3 and r.stderr.startswith("Error: model 'nope' not found")


@pytest.mark.tf
def test_foreground_port_in_use_exits_1(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("serve", "small", "--port", str(port), store=store.root)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"Error: port {port} on 127.0.0.1 is already in use (another server?); choose "
                                "another with --port, or --port 0 for a free one. See: maasctl ps")


@pytest.mark.tf
@pytest.mark.slow
def test_detach_ps_stop(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    store.register(models["multi"], "multi")
    # a 4 s batch timeout makes a lone request wait in the server: it must still finish on stop
    r = run_cli("serve", "small", "multi@1", "--port", "0", "--detach", "--json", "--batch-timeout-ms", "4000",
                "--token", "s3cret", store=store.root)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"url", "pid", "models", "id"} and doc["models"] == ["multi", "small"]
    url, pid = doc["url"], doc["pid"]
    auth = {"Authorization": "Bearer s3cret"}
    try:
        assert requests.get(url + "/readyz", timeout=10).status_code == 401
        assert requests.get(url + "/readyz", headers=auth, timeout=10).status_code == 200
        assert b"s3cret" not in Path(f"/proc/{pid}/cmdline").read_bytes()  # passed by environment, not argv
        ps = run_cli("ps", "--json", store=store.root)
        listed = json.loads(ps.stdout)
        assert [(s["id"], s["pid"], s["url"]) for s in listed] == [(doc["id"], pid, url)]
        assert listed[0]["refs"] == ["small", "multi@1"] and listed[0]["uptime_seconds"] >= 0
        assert os.path.exists(listed[0]["log"])
        assert [s.id for s in records.list_servers(store)] == [doc["id"]]

        # a second server on the same port: exit 1 with the log's last line saying why
        port = url.rsplit(":", 1)[1]
        clash = run_cli("serve", "small", "--port", port, "--detach", store=store.root)
        assert clash.returncode == 1
        assert "already in use" in clash.stderr and "exited with code 1" in clash.stderr
        assert len(json.loads(run_cli("ps", "--json", store=store.root).stdout)) == 1

        # graceful stop: an in-flight request completes
        result = {}

        def slow_request():
            result["r"] = requests.post(url + "/v1/models/small:predict", data=json.dumps({"instances": X}),
                                        headers=auth, timeout=30)

        t = threading.Thread(target=slow_request)
        t.start()
        time.sleep(0.5)  # let the request reach the server; it then waits there for the batch timeout
        # still in flight, or this test would prove nothing (the 4 s window leaves room for a slow machine)
        assert t.is_alive() and "r" not in result
        stopped = run_cli("stop", doc["id"][:4], "--json", store=store.root)
        t.join()
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout)[0]["graceful"] is True
        assert result["r"].status_code == 200 and len(result["r"].json()["predictions"]) == 1
        assert gone(pid)
        assert json.loads(run_cli("ps", "--json", store=store.root).stdout) == []
        assert not list(store.servers_dir.glob("*.json"))
        missing = run_cli("stop", doc["id"], store=store.root)
        assert missing.returncode == 3 and "no running server" in missing.stderr
    finally:
        if not gone(pid):
            os.kill(pid, 9)


@pytest.mark.tf
def test_detach_fails_fast_on_a_corrupt_model(tmp_path, models):
    store = Store(tmp_path / "store")
    info = store.register(models["small"], "small").info
    (info.path / "saved_model.pb").write_bytes((info.path / "saved_model.pb").read_bytes() + b"\x00")
    r = run_cli("serve", "small", "--port", "0", "--detach", store=store.root, timeout=120)
    assert r.returncode == 1
    assert "could not load small@1" in r.stderr and "saved_model.pb" in r.stderr
    assert records.list_servers(store) == []


@pytest.mark.tf
def test_detach_warns_about_a_version_it_could_not_load_while_another_serves(tmp_path, saved_models):
    store = Store(tmp_path / "store")
    store.register(saved_models["small"], "small")
    broken = store.register(saved_models["small_b"], "small").info  # small@2, the latest
    (broken.path / "saved_model.pb").write_bytes((broken.path / "saved_model.pb").read_bytes() + b"\x00")
    r = run_cli("serve", "small", "small@1", "--port", "0", "--detach", "--json", store=store.root, timeout=120)
    try:
        assert r.returncode == 0, r.stderr
        warning = [line for line in r.stderr.splitlines() if line.startswith("warning: could not load small@2")]
        assert len(warning) == 1 and "saved_model.pb" in warning[0], r.stderr
    finally:
        if r.returncode == 0:
            run_cli("stop", json.loads(r.stdout)["id"], store=store.root)


def test_stale_records_are_pruned(tmp_path):
    store = Store(tmp_path / "store")
    records.write_record(store, "dead0001", url="http://127.0.0.1:1", models=["m"], refs=["m"], pid=2**22 + 12345)
    assert records.list_servers(store) == []
    assert not records.record_path(store, "dead0001").exists()
    r = run_cli("stop", "--all", store=store.root)
    assert r.returncode == 0 and "no running servers" in r.stderr
    assert run_cli("stop", store=store.root).returncode == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_args(server_id: str) -> list[str]:
    return ["serve", "small", "--port", "0", "--server-id", server_id]


@pytest.mark.tf
def test_detach_readiness_check_ignores_http_proxy(tmp_path, models, monkeypatch):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    dead_proxy = f"http://127.0.0.1:{_closed_port()}"
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, dead_proxy)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    sid = records.new_id()
    rec = records.spawn_detached(store, sid, _serve_args(sid), timeout=60)
    try:
        with requests.Session() as direct:
            direct.trust_env = False
            assert direct.get(rec.url + "/readyz", timeout=10).status_code == 200
    finally:
        records.stop_server(store, rec)
    assert gone(rec.pid)


class _Interrupt(BaseException):
    """Stands for Ctrl-C (KeyboardInterrupt is a BaseException too) without pytest treating it as one."""


@pytest.mark.tf
def test_interrupt_while_waiting_for_readiness_stops_the_server(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    sid = records.new_id()
    path = records.record_path(store, sid)
    seen: dict[str, int] = {}

    def interrupt_once_the_server_is_up(signum, frame):
        rec = records._read(path)
        if rec is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            seen["pid"] = rec.pid
            raise _Interrupt

    old = signal.signal(signal.SIGALRM, interrupt_once_the_server_is_up)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    try:
        with pytest.raises(_Interrupt):  # a readiness route that never answers 200: it is still waiting
            records.spawn_detached(store, sid, _serve_args(sid), timeout=60, ready_paths=["/no-such-route"])
        assert "pid" in seen
        assert gone(seen["pid"]), "the server was left running"
        assert not path.exists() and records.list_servers(store) == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if "pid" in seen and not gone(seen["pid"]):
            os.kill(seen["pid"], signal.SIGKILL)



@pytest.mark.tf
def test_token_on_the_command_line_warns_and_the_env_does_not(tmp_path, models):
    import subprocess
    import sys

    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    for args, env, warned in ((["--token", "s3cret"], {}, True), ([], {"MAASCTL_TOKEN": "s3cret"}, False)):
        proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", str(store.root), "serve", "small",
                                 "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        try:
            lines = []
            for line in proc.stderr:
                lines.append(line)
                if line.startswith("serving "):
                    break
        finally:
            proc.terminate()
            proc.wait(60)
        text = "".join(lines)
        assert ("--token on the command line is visible" in text) is warned, text
        assert "s3cret" not in text
