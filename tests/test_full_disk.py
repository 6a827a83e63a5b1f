"""A full disk during register / package / pull / train is one line naming the path that could not be written,
exit 1, and the store unchanged: no half version, no temp files (issue 17 item 9).

The disk is real: a private mount namespace (`unshare -rm`, no root needed where user namespaces are allowed) mounts
a 1 MiB tmpfs, and a filler file leaves exactly as much room as each case wants, so the kernel itself answers ENOSPC
(to write(), fsync(), copy_file_range() and SQLite's -shm/-wal). Without namespaces only the RLIMIT_FSIZE test runs:
the kernel answers EFBIG to a file grown past the limit, which is the closest check an unprivileged process gets.

This module is also the scenario run inside the namespace: `python3 tests/test_full_disk.py MOUNT WORK CASE`.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "tests" / "data" / "savedmodels" / "small"
SMALL_B = REPO / "tests" / "data" / "savedmodels" / "small_b"
UNSHARE = shutil.which("unshare")
BLOB = 3_000_000  # bigger than the whole file system


# -- the scenario (runs inside the namespace, stdlib only) ----------------------------------------------------
def _cli(store: Path, *args: str, subprocess_: bool = False) -> dict:
    """`maasctl --store STORE ARGS`: in this process (interpreter start-ups would dominate), or a subprocess."""
    argv = ["--store", str(store), *args]
    if subprocess_:
        env = {k: v for k, v in os.environ.items() if k not in ("MAASCTL_HOME", "MAASCTL_DEBUG")}
        r = subprocess.run([sys.executable, "-m", "maasctl", *argv], capture_output=True, text=True, env=env,
                           check=False, timeout=600)
        return {"args": list(args), "rc": r.returncode, "stderr": r.stderr, "stdout": r.stdout}
    import contextlib
    import io

    from maasctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return {"args": list(args), "rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue()}


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root (files by digest), SQLite's transient -wal/-shm and the filler left out."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*")) if not p.name.endswith(("-wal", "-shm")) and p.name != "filler"}


def _leave(mnt: Path, free: int) -> None:
    """Fill the file system up to `free` bytes of room."""
    filler = mnt / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(mnt)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free))


def _attempt(mnt: Path, store: Path, free: int, *args: str, subprocess_: bool = False) -> dict:
    _leave(mnt, free)
    before = _snapshot(mnt)
    out = _cli(store, *args, subprocess_=subprocess_)
    out.update(free=free, unchanged=_snapshot(mnt) == before,
               leftovers=sorted(p.name for p in (store / "staging").iterdir()) if (store / "staging").is_dir() else [],
               listed=_cli(store, "list", "--json")["stdout"])
    return out


def scenario(mnt: Path, work: Path, case: str) -> list[dict]:
    store = mnt / "store"
    src = work / "src"
    assert _cli(store, "register", str(SMALL), "--name", "m")["rc"] == 0
    out = []
    if case == "store":
        big = work / "big"
        shutil.copytree(SMALL, big)
        (big / "assets").mkdir(exist_ok=True)
        (big / "assets" / "blob.bin").write_bytes(os.urandom(BLOB))
        assert _cli(src, "register", str(big), "--name", "big")["rc"] == 0
        assert _cli(src, "package", "big@1", "-o", str(work / "big.maas"))["rc"] == 0
        free = 512 * 1024
        out.append(_attempt(mnt, store, free, "register", str(big), "--name", "big"))
        out.append(_attempt(mnt, store, free, "register", str(work / "big.maas")))
        out.append(_attempt(mnt, store, free, "pull", "big@1", "--from", str(src)))
        out.append(_attempt(mnt, src, free, "package", "big@1", "-o", str(mnt / "out.maas"), "--compression", "none"))
        # a small version on a disk with a little room: the copy, the manifest, events.log or SQLite's
        # -shm/-wal runs out, wherever the room ends
        for kib in range(0, 240, 8):
            res = _attempt(mnt, store, kib * 1024, "register", str(SMALL_B), "--name", "m")
            out.append(res)
            if res["rc"] == 0:
                break
        for args in (["list"], ["show", "m@1"], ["verify"]):  # reading needs no room
            out.append(_attempt(mnt, store, 0, *args))
    elif case == "train":
        (work / "rows.csv").write_text("a,b,y\n" + "".join(f"{i % 7},{i % 3},{'pq'[i % 2]}\n" for i in range(40)))
        (work / "config.toml").write_text(
            '[data]\npath = "rows.csv"\nlabel = "y"\nvalidation_split = 0.0\n[model]\ntask = "classification"\n'
            '[[model.layers]]\ntype = "Dense"\nunits = 2\nactivation = "softmax"\n[train]\nepochs = 1\n')
        out.append(_attempt(mnt, store, 8 * 1024, "train", str(work / "config.toml"), subprocess_=True))
    return out


# -- the tests ------------------------------------------------------------------------------------------------
def _can_mount() -> bool:
    if UNSHARE is None:
        return False
    return subprocess.run([UNSHARE, "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"],
                          capture_output=True, check=False).returncode == 0


def _in_small_fs(tmp_path: Path, case: str) -> list[dict]:
    if not _can_mount():
        pytest.skip("needs unshare -rm and a tmpfs mount (user + mount namespaces)")
    mnt, work = tmp_path / "fs", tmp_path / "work"
    mnt.mkdir()
    work.mkdir()
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, __file__, str(mnt), str(work), case])
    script = f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(mnt))} && exec {cmd}"
    r = subprocess.run([UNSHARE, "-rm", "sh", "-c", script], capture_output=True, text=True, check=False, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _refused_naming_a_path(res: dict, mnt: Path, *, progress: bool = False) -> None:
    lines = res["stderr"].strip().splitlines()
    assert res["rc"] == 1, res
    if progress:  # train's progress lines come first
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res
    assert "internal error" not in lines[0] and "Traceback" not in res["stderr"], res
    assert f" {mnt}/" in lines[0], res  # the file (or index) that could not be written, under the full mount
    assert "No space left on device" in lines[0] or "is full" in lines[0], res
    assert res["unchanged"] and res["leftovers"] == [], res


def test_a_full_disk_names_the_path_and_leaves_the_store_unchanged(tmp_path):
    mnt = tmp_path / "fs"
    results = _in_small_fs(tmp_path, "store")
    big, package, pull, pack = results[:4]
    for res in (big, package, pull):
        _refused_naming_a_path(res, mnt)
        assert "blob.bin" in res["stderr"], res  # the very file whose bytes did not fit
        assert [m["name"] for m in json.loads(res["listed"])] == ["m"]
    _refused_naming_a_path(pack, mnt)  # `unchanged` covers the mount too: no temporary package left beside it
    squeezed = results[4:-3]
    assert squeezed[-1]["rc"] == 0, squeezed[-1]  # with enough room it registers after all
    failures = squeezed[:-1]
    assert len(failures) >= 3, [r["free"] for r in squeezed]
    for res in failures:
        _refused_naming_a_path(res, mnt)
        assert json.loads(res["listed"])[0]["latest"] == 1, res  # no half version visible
    for res in results[-3:]:
        assert res["rc"] == 0, res


@pytest.mark.tf  # the train subprocess imports TensorFlow (this process doesn't)
def test_a_full_disk_during_train_names_the_path(tmp_path):
    [res] = _in_small_fs(tmp_path, "train")
    _refused_naming_a_path(res, tmp_path / "fs", progress=True)  # no run, nothing left in staging


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_file_size_limit_names_the_file_and_leaves_the_store_unchanged(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse to grow one file past 1 MB (EFBIG): no privileges needed."""
    big = Path(shutil.copytree(SMALL, tmp_path / "big"))
    (big / "assets").mkdir(exist_ok=True)
    (big / "assets" / "blob.bin").write_bytes(os.urandom(BLOB))
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("MAASCTL_HOME", "MAASCTL_DEBUG")}
    ok = subprocess.run([sys.executable, "-m", "maasctl", "--store", str(store), "register", str(SMALL), "--name", "m"],
                        capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    before = _snapshot(store)
    r = subprocess.run([sys.executable, "-m", "maasctl", "--store", str(store), "register", str(big), "--name", "m"],
                       capture_output=True, text=True, env=env, check=False, preexec_fn=_limit_file_size)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"Error: cannot write {store}/staging/") and lines[0].endswith(
        "assets/blob.bin: File too large (over the file size limit: see ulimit -f)"), lines[0]
    assert _snapshot(store) == before
    assert list((store / "staging").iterdir()) == []


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # this checkout's maasctl, whatever the editable install points at
    print(json.dumps(scenario(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])))
