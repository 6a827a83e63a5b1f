"""One number format for people (issue 11, item 14): 4 significant digits, `—` for missing, full precision in --json."""

from __future__ import annotations

import json
import re

import pytest
from conftest import drain_pty, run_cli
from test_runs import make_run

from maasctl.cli.render import number, value


def test_number_and_value():
    assert [number(v) for v in (0.949999988079071, 0.0282715, 6.951e-05, 1.0, 0.0, 32, None, True)] == [
        "0.9500", "0.02827", "6.951e-05", "1.000", "0", "32", "—", "True"]
    assert value(None) == value("") == value([]) == "—"
    assert value({"accuracy": 0.949999988079071, "loss": None}) == "accuracy 0.9500, loss —"


@pytest.mark.tf
def test_show_inspect_and_runs_use_it(store, models):
    meta = {"metrics": {"accuracy": 0.949999988079071, "loss": 0.0282715},
            "lineage": {"git_commit": None, "data_files": [{"role": "train", "path": "/d/wine.csv", "size": 9,
                                                            "sha256": "ab" * 32}]}}
    store.register(models["small"], "wine", meta=meta)
    shown = run_cli("show", "wine", store=store.root).stdout
    assert re.search(r"^metric accuracy +0\.9500$", shown, re.MULTILINE) and re.search(r"^aliases +—$", shown, re.MULTILINE), shown
    assert json.loads(run_cli("show", "wine", "--json", store=store.root).stdout)["metrics"]["accuracy"] == \
        0.949999988079071
    inspected = run_cli("inspect", "wine", store=store.root).stdout
    assert re.search(r"^metric loss +0\.02827$", inspected, re.MULTILINE), inspected
    assert re.search(r"^lineage git_commit +—$", inspected, re.MULTILINE), inspected
    assert re.search(r"^lineage data \(train\) +/d/wine\.csv sha256 abababababab$", inspected, re.MULTILINE), inspected
    assert "None" not in inspected and "{" not in inspected

    make_run(store, "20261123-120000-aaaaaa")
    listed = run_cli("runs", "list", store=store.root).stdout
    assert "accuracy 0.9000" in listed, listed
    shown = run_cli("runs", "show", "20261123-120000-aaaaaa", store=store.root).stdout
    assert re.search(r"^metric accuracy +0\.9000$", shown, re.MULTILINE) and re.search(r"^git commit +—$", shown, re.MULTILINE)


def _pty_stdout(args: list[str], store, cols: int = 100) -> str:
    """stdout of `maasctl ARGS` on a pseudo-terminal of `cols` columns (stderr piped apart)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {**os.environ, "MAASCTL_HOME": str(store), "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", *args], stdout=follower, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    output = drain_pty(leader)
    assert proc.wait(60) == 0, proc.stderr.read()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode()).replace("\r", "")


def test_runs_list_fits_100_columns_rich_on_a_terminal_plain_in_a_pipe(store):
    for i, run_id in enumerate(("20261123-120000-aaaaaa", "20261123-130000-bbbbbb")):
        make_run(store, run_id, config=f"/work/projects/wine-quality/configs/wine_quality_v{i}.toml")
    piped = run_cli("runs", "list", store=store.root).stdout.splitlines()
    assert piped[0].split() == ["RUN", "CREATED", "TASK", "CONFIG", "METRIC"]
    assert piped[1].split()[:3] == ["20261123-120000-aaaaaa", "2026-11-23", "12:00"]
    assert piped[1].endswith("wine_quality_v0.toml  accuracy 0.9000")
    assert max(map(len, piped)) <= 100
    screen = _pty_stdout(["runs", "list"], store.root).splitlines()
    assert any(set(line.strip()) <= {"─", " "} and "─" in line for line in screen), screen  # rich's rule
    assert max(map(len, screen)) <= 100 and "accuracy 0.9000" in "\n".join(screen)
