"""`--backend tfserving`: the generated model config, parsed with TF Serving's own protos."""

from __future__ import annotations

import pytest
from conftest import run_cli

from maasctl.refs import parse_ref
from maasctl.serving.source import Aspired, aspired_for
from maasctl.serving.tfserving import model_config_text


def parse_config(text: str):
    text_format = pytest.importorskip("google.protobuf.text_format")
    pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    return text_format.Parse(text, pb2.ModelServerConfig())


def test_config_parses_with_the_real_protos(tmp_path):
    snap = {"iris": {"versions": [1, 2, 3], "aliases": {"stable": 2, "canary": 3}}}
    aspired = aspired_for([parse_ref("iris"), parse_ref("iris@1")], snap)  # latest 3 + alias targets + pinned 1
    aspired["odd"] = Aspired(frozenset({4}), {})
    cfg = parse_config(model_config_text(tmp_path / "models", aspired))
    configs = {c.name: c for c in cfg.model_config_list.config}
    assert set(configs) == {"iris", "odd"}
    iris = configs["iris"]
    assert iris.base_path == str(tmp_path / "models" / "iris")
    assert iris.model_platform == "tensorflow"
    assert sorted(iris.model_version_policy.specific.versions) == [1, 2, 3]
    assert dict(iris.version_labels) == {"stable": 2, "canary": 3}
    assert list(configs["odd"].model_version_policy.specific.versions) == [4]


def test_config_quotes_paths(tmp_path):
    weird = tmp_path / "it's a \\ dir"
    cfg = parse_config(model_config_text(weird, {"m": Aspired(frozenset({1}), {})}))
    assert cfg.model_config_list.config[0].base_path == str(weird / "m")


def test_missing_binary_exits_2_with_install_hint(tmp_path, saved_models):
    from maasctl.store import Store

    store = Store(tmp_path / "store")
    store.register(saved_models["small"], "small")
    for detach in ([], ["--detach"]):
        r = run_cli("serve", "small", "--backend", "tfserving", *detach, store=store.root,
                    env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == 2
        assert "tensorflow_model_server is not on PATH" in r.stderr and "tensorflow/serving" in r.stderr


# -- the supervisor never leaves tensorflow_model_server behind ---------------------------------------------
# tensorflow_model_server is not installed here: a stand-in executable of that name records its pid and waits
# (optionally ignoring SIGTERM); everything else (CLI, supervisor, store, signals) is real.
FAKE_BINARY = """#!{python}
import os, signal, sys, time
if os.environ.get("FAKE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(os.environ["FAKE_PID_FILE"] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(os.environ["FAKE_PID_FILE"] + ".tmp", os.environ["FAKE_PID_FILE"])
while True:
    time.sleep(1)
"""


def _alive(pid: int) -> bool:
    from maasctl.serving.records import pid_alive

    return pid_alive(pid)


def _wait_for(predicate, what: str, timeout: float = 60):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _start_supervisor(tmp_path, saved_models, *, ignore_term: bool):
    import os
    import subprocess
    import sys

    from maasctl.serving import records
    from maasctl.store import Store

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "tensorflow_model_server"
    fake.write_text(FAKE_BINARY.format(python=sys.executable))
    fake.chmod(0o755)
    store = Store(tmp_path / "store")
    store.register(saved_models["small"], "small")
    sid = records.new_id()
    pid_file = tmp_path / "tfs.pid"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_PID_FILE": str(pid_file)}
    if ignore_term:
        env["FAKE_IGNORE_TERM"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", str(store.root), "serve", "small",
                             "--backend", "tfserving", "--port", "0", "--server-id", sid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    _wait_for(lambda: pid_file.exists() and records.record_path(store, sid).exists(), "the supervisor")
    return store, sid, proc, int(pid_file.read_text())


def test_force_stop_kills_tensorflow_model_server_too(tmp_path, saved_models):
    import os
    import signal

    from maasctl.serving import records

    store, sid, proc, child = _start_supervisor(tmp_path, saved_models, ignore_term=True)
    try:
        rec = records.find_server(store, sid)
        assert rec.pid == proc.pid and _alive(child)
        assert records.stop_server(store, rec, timeout=1) is False  # SIGTERM is ignored: killed after 1 s
        proc.wait(10)
        _wait_for(lambda: not _alive(child), "tensorflow_model_server to die", timeout=10)
    finally:
        for pid in (proc.pid, child):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_supervisor_error_stops_tensorflow_model_server(tmp_path, saved_models):
    import os
    import shutil
    import signal

    store, sid, proc, child = _start_supervisor(tmp_path, saved_models, ignore_term=False)
    try:
        shutil.rmtree(store.servers_dir / f"tfserving-{sid}")  # the next config rewrite fails
        store.register(saved_models["small_b"], "small")  # ... which a new version triggers
        assert proc.wait(30) != 0
        _wait_for(lambda: not _alive(child), "tensorflow_model_server to stop", timeout=15)
    finally:
        for pid in (proc.pid, child):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
