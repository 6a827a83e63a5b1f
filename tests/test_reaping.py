"""A test session never leaves servers behind (conftest.reap): a child started in its own session, as
`serve --detach` starts its server, is stopped when pytest is terminated (`timeout` sends SIGTERM), and one left
by a SIGKILLed session is stopped by the next session. Real processes; no TensorFlow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FORBID_ENV, GUARD_DIR, REPO, SESSION_ENV, _alive, reap

INNER = '''
import os, subprocess, sys, time
from pathlib import Path

def test_starts_a_detached_child_and_hangs():
    # like `maasctl serve --detach`: a new session and process group, which no kill of pytest's group reaches
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    Path(os.environ["PIDFILE"]).write_text(str(child.pid))
    time.sleep(600)
'''


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _inner_session(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    pidfile = tmp_path / "child.pid"
    env = {**os.environ, "PIDFILE": str(pidfile)}
    env.pop(SESSION_ENV, None)
    # under `-m "not tf"` this session forbids TensorFlow through a guard its conftest finds beside itself; the
    # inner session's conftest is a copy in tmp_path, with no guard beside it: it runs without one
    env.pop(FORBID_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p) != GUARD_DIR)
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                              str(tmp_path), str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not pidfile.exists() or not pidfile.read_text():
        assert inner.poll() is None and time.monotonic() < deadline, "the inner session did not start its child"
        time.sleep(0.05)
    return inner, int(pidfile.read_text())


pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")


def test_a_terminated_session_stops_its_detached_children(tmp_path):
    inner, child = _inner_session(tmp_path)
    try:
        assert _alive(child)
        inner.send_signal(signal.SIGTERM)
        inner.wait(60)
        assert _gone(child), "the detached child outlived its terminated test session"
    finally:
        inner.kill()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_the_children_of_a_killed_session_are_stopped_by_the_next(tmp_path):
    inner, child = _inner_session(tmp_path)
    try:
        inner.kill()  # SIGKILL: nothing in the session can run
        inner.wait(60)
        time.sleep(0.2)
        assert _alive(child)
        assert child in reap("")  # what the next session does first
        assert _gone(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
