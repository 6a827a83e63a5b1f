"""push/pull progress bars: drawn on stderr when it is a terminal (a real pty here), never on a pipe, with
--quiet or with --json; stdout carries only the result either way."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
from conftest import drain_pty, run_cli

pytestmark = pytest.mark.tf  # real SavedModels (the `models` fixture)


def _with_tty_stderr(*args: str, cache: str | None = None) -> tuple[int, str, str]:
    """Run maasctl with stderr on a pseudo-terminal; (exit code, stdout, what the terminal received)."""
    master, slave = pty.openpty()
    env = {**os.environ, "MAASCTL_PROGRESS_AFTER": "0", "TERM": "xterm", "COLUMNS": "120"}
    if cache:
        env["MAASCTL_CACHE"] = cache  # an empty cache: the pull really downloads
    env.pop("NO_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "maasctl", *args], stdout=subprocess.PIPE, stderr=slave,
                         env=env, text=True)
    os.close(slave)
    tty = drain_pty(master)
    out = p.stdout.read()
    p.wait(timeout=120)
    return p.returncode, out, tty.decode(errors="replace")


def test_push_and_pull_draw_bars_only_on_a_terminal(s3_store_url, tmp_path, models):
    local = tmp_path / "local"
    assert run_cli("register", str(models["small"]), "--name", "iris", store=local).returncode == 0

    code, out, tty = _with_tty_stderr("--store", str(local), "push", "iris@1", "--to", s3_store_url)
    assert (code, out) == (0, "iris@1\n")
    assert "uploading" in tty and "B/s" in tty  # rich's transfer columns
    code, out, tty = _with_tty_stderr("--store", str(tmp_path / "back"), "pull", "iris@1", "--from", s3_store_url)
    assert (code, out) == (0, "iris@1\n")
    assert "downloading" in tty

    for extra in (["--quiet"], ["--json"]):
        code, out, tty = _with_tty_stderr("--store", str(tmp_path / f"again{extra[0]}"), "pull", "iris@1",
                                          "--from", s3_store_url, *extra, cache=str(tmp_path / f"c{extra[0]}"))
        assert code == 0 and "downloading" not in tty and "B/s" not in tty, tty
    r = run_cli("--store", str(tmp_path / "piped"), "pull", "iris@1", "--from", s3_store_url,
                env={"MAASCTL_PROGRESS_AFTER": "0", "MAASCTL_CACHE": str(tmp_path / "c-piped")})
    assert r.returncode == 0 and r.stderr == "", r.stderr
