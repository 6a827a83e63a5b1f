"""`maasctl predict` in a real terminal: the screen must show exactly what a pipe gets (issue 11, item 1).

Runs maasctl in a tmux pane (a real pseudo-terminal with a real terminal emulator) with stdout and stderr on the
same terminal, as a person at a shell has them, and compares `tmux capture-pane` with the piped stdout. Raw
bytes from a Python pty show whether a progress bar was drawn at all.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, drain_pty
from test_predict import FEATURES, data, pstore, reference, stub, write_csv  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.tf, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


def _env(store: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MAASCTL_DEBUG"}
    env.update({"MAASCTL_HOME": str(store), "PYTHONPATH": str(REPO), "TERM": "xterm-256color",
                "COLUMNS": "100", "LINES": "60"})
    env.pop("NO_COLOR", None)
    env.update(extra or {})
    return env


def tmux_screen(tmp_path: Path, args: list[str], env: dict[str, str], cols: int = 100, rows: int = 60) -> str:
    """Run `maasctl ARGS` in a fresh tmux pane of cols x rows; the pane's text once it exits (trailing blanks
    stripped)."""
    sock = tmp_path / "tmux.sock"
    done = tmp_path / "tmux.done"
    done.unlink(missing_ok=True)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "maasctl", *args])
    script = f"clear; {command}; echo $? > {shlex.quote(str(done))}; sleep 120"
    env = {**env, "TMUX": ""}
    subprocess.run(["tmux", "-S", str(sock), "-f", "/dev/null", "new-session", "-d", "-x", str(cols), "-y",
                    str(rows), "sh", "-c", script], check=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not done.exists() or not done.read_text().strip():
            assert time.monotonic() < deadline, "maasctl did not finish in the tmux pane"
            time.sleep(0.1)
        assert done.read_text().strip() == "0"
        time.sleep(0.3)  # let tmux process the last bytes
        screen = subprocess.run(["tmux", "-S", str(sock), "capture-pane", "-p", "-J"], check=True,
                                capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], check=False, capture_output=True)
    return "\n".join(line.rstrip() for line in screen.splitlines()).strip("\n")


def pty_bytes(args: list[str], env: dict[str, str]) -> bytes:
    """Everything `maasctl ARGS` writes to a pseudo-terminal holding both stdout and stderr."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", *args], stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=follower, env=env, close_fds=True)
    os.close(follower)
    output = drain_pty(leader)
    assert proc.wait(timeout=60) == 0
    return output


@pytest.mark.parametrize("fmt", ["table", "jsonl", "json"])
def test_the_screen_shows_what_a_pipe_gets(tmp_path, pstore, stub, data, fmt):  # noqa: F811
    path = write_csv(tmp_path / "feats.csv", data[:3])
    args = ["predict", "--url", stub.url, "-m", "iris@1", "-i", str(path), "-f", fmt]
    piped = subprocess.run([sys.executable, "-m", "maasctl", *args], check=False, capture_output=True, text=True,
                           env=_env(pstore.root), timeout=120)
    assert piped.returncode == 0, piped.stderr
    expected = "\n".join(line.rstrip() for line in piped.stdout.splitlines())
    # small work: no bar at all, nothing to erase
    screen = tmux_screen(tmp_path, args, _env(pstore.root))
    assert screen == expected
    assert b"checking" not in pty_bytes(args, _env(pstore.root))
    # a bar forced to draw at once: it is cleared before the first byte of output, which stays whole
    forced = _env(pstore.root, {"MAASCTL_PROGRESS_AFTER": "0"})
    raw = re.sub(rb"\x1b\[[0-9;]*m", b"", pty_bytes(args, forced))  # colours off, cursor moves kept
    assert b"checking" in raw, raw
    assert raw.rindex(b"\x1b[2K") < raw.index(expected.splitlines()[0].encode()), raw
    assert tmux_screen(tmp_path, args, forced) == expected


def test_a_bar_over_piped_output_finishes_at_100_percent(tmp_path, pstore, stub, data):  # noqa: F811
    """stdout to a file, stderr on the terminal: the bar draws through both phases and ends at 100 %."""
    path = write_csv(tmp_path / "feats.csv", data)
    out = tmp_path / "out.jsonl"
    raw = pty_bytes(["predict", "--url", stub.url, "-m", "iris@1", "-i", str(path), "-b", "5", "-o", str(out), "-f", "jsonl"],
                    _env(pstore.root, {"MAASCTL_PROGRESS_AFTER": "0"})).decode()
    assert "predicting" in raw and "100%" in raw.split("predicting")[-1], raw
    assert f"{len(data)} rows" in raw.split("predicting")[-1]
    assert len(out.read_text().splitlines()) == len(data)
