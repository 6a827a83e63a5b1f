"""A store on a read-only mount (an image, a read-only volume) can be read and served (issue 17 item 6).

The mount is real: a private mount namespace (`unshare -rm`) bind-mounts the store read-only, so SQLite meets
EROFS exactly as on a read-only volume.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from maasctl.store import Store

UNSHARE = shutil.which("unshare")


def _can_unshare() -> bool:
    if UNSHARE is None:
        return False
    return subprocess.run([UNSHARE, "-rm", "true"], capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rm (user + mount namespaces)")


def run_ro(store: Store, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    root = shlex.quote(str(store.root))
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "maasctl", "--store", str(store.root), *args])
    script = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && exec {cmd}"
    env = {k: v for k, v in os.environ.items() if k not in ("MAASCTL_HOME", "MAASCTL_DEBUG")}
    return subprocess.run([UNSHARE, "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, check=False,
                          timeout=timeout)


@pytest.fixture(scope="module")
def ro_store(models, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("ro") / "store")
    store.register(models["small"], "iris", aliases=["production"])
    store.register(models["small_b"], "iris")
    assert not os.path.exists(f"{store.db_path}-shm")  # as shipped: no -wal/-shm beside the index
    return store


@pytest.mark.parametrize("args", [["list"], ["list", "iris"], ["show", "iris@production"], ["verify"],
                                  ["inspect", "iris@1"], ["alias", "history", "iris"], ["doctor"]])
def test_read_commands_work_on_a_read_only_store(ro_store, args):
    r = run_ro(ro_store, *args, "--json")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_writes_on_a_read_only_store_are_one_line_naming_the_store(ro_store, models):
    r = run_ro(ro_store, "alias", "set", "iris@2", "production")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ro_store.root) in lines[0] and "internal error" not in lines[0], lines


@pytest.mark.tf
def test_predict_local_from_a_read_only_store(ro_store, tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text("[[5.1, 3.5, 1.4, 0.2]]")
    r = run_ro(ro_store, "predict", "--model", "iris@production", "--local", "--input", str(rows))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["predictions"]) == 1
