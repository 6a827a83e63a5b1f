"""The S3 store's own guarantees against a real S3 endpoint (moto's server on 127.0.0.1), with real processes:
concurrent writers, concurrent alias moves, writers killed mid-push, the cache, errors."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_registry_backends import bucket_of

pytestmark = [pytest.mark.tf, pytest.mark.slow]  # real SavedModels (the `models` fixtures)


def _popen(*args: str, store: str) -> subprocess.Popen:
    env = {**os.environ, "MAASCTL_HOME": store}
    return subprocess.Popen([sys.executable, "-m", "maasctl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _keys(spec: str, under: str = "") -> list[str]:
    import boto3

    bucket, prefix = bucket_of(spec)
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + under)
    return [o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])]


def test_eight_processes_registering_at_once_get_versions_1_to_8(s3_store_url, many_models):
    from maasctl.store import open_store

    procs = [_popen("register", str(src), "--name", "iris", "--json", store=s3_store_url) for src in many_models[:8]]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["version"] for r in results) == list(range(1, 9))
    store = open_store(s3_store_url)
    listed = store.list_versions("iris")
    assert [v.version for v in listed] == list(range(1, 9))
    by_sha = {r["sha256"]: r["version"] for r in results}
    assert all(by_sha[v.sha256] == v.version for v in listed)  # each number holds its writer's content
    assert all(r.ok for r in store.verify())


def test_eight_processes_moving_one_alias_lose_no_move(s3_store_url, many_models):
    from maasctl.store import open_store

    store = open_store(s3_store_url)
    for src in many_models[:8]:
        store.register(src, "iris")
    procs = [_popen("alias", "set", f"iris@{v}", "prod", "--json", store=s3_store_url) for v in range(1, 9)]
    previous = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        previous.append(json.loads(out)["previous"])
    final = store.aliases("iris")["prod"]
    assert final in range(1, 9)
    moves = [e for e in store.history("iris", "prod") if e["event"] == "alias_set"]
    assert len(moves) == 8
    # the moves form one chain: each starts where the one before it ended, and the last ends at the alias
    assert moves[0]["from_version"] is None and moves[-1]["to_version"] == final
    assert all(a["to_version"] == b["from_version"] for a, b in itertools.pairwise(moves))
    assert sorted(previous, key=str) == sorted([m["from_version"] for m in moves], key=str)
    assert all(m["who"] and "@" in m["who"] for m in moves)


@pytest.fixture(scope="module")
def multi_file_model(models, tmp_path_factory) -> Path:
    """The small model plus 40 asset files (~10 MB): a push takes long enough to be killed midway."""
    root = tmp_path_factory.mktemp("multifile") / "model"
    shutil.copytree(models["small"], root)
    (root / "assets").mkdir(exist_ok=True)
    for i in range(40):
        (root / "assets" / f"part-{i:02d}.bin").write_bytes(os.urandom(256 << 10))
    return root


def test_sigkill_during_push_leaves_nothing_visible_and_gc_cleans_up(s3_store_url, multi_file_model, tmp_path):
    from maasctl.errors import NotFound
    from maasctl.store import open_store

    local = tmp_path / "local"
    assert run_cli("register", str(multi_file_model), "--name", "iris", store=local).returncode == 0
    delays = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0]  # ≥ 10 kills over start-up and upload
    procs = [(d, _popen("--store", str(local), "push", "iris@1", "--to", s3_store_url, "--json", store=str(local)))
             for d in delays]
    start = time.monotonic()
    killed = 0
    for delay, p in procs:
        time.sleep(max(0.0, start + delay - time.monotonic()))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.communicate(timeout=120)
    store = open_store(s3_store_url)
    try:
        visible = store.list_versions("iris")
    except NotFound:  # no push finished
        visible = []
    assert len({v.sha256 for v in visible}) <= 1  # only the pushed content, and only complete versions
    assert all(r.ok for r in store.verify()) if visible else True
    committed = {v.version for v in visible}
    leftovers = {k.split("/")[2] for k in _keys(s3_store_url, "models/iris/")} - {str(v) for v in committed}
    report = store.gc(lease_seconds=0)
    assert sorted(report.orphans) == sorted(f"iris/{n}" for n in leftovers)
    remaining = {k.split("/")[2] for k in _keys(s3_store_url, "models/iris/")}
    assert remaining == {str(v) for v in committed}
    assert killed >= 5, f"only {killed} pushes were still running when killed"  # the test must bite
    r = run_cli("--store", str(local), "push", "iris@1", "--to", s3_store_url, "--json", store=str(local))
    assert r.returncode == 0, r.stderr
    assert store.verify(json.loads(r.stdout)["ref"])[0].ok


def test_cache_shared_verified_and_size_capped(s3_store_url, models, tmp_path, monkeypatch):
    from maasctl.store import open_store
    from maasctl.store.cache import VersionCache

    store = open_store(s3_store_url)
    a = store.register(models["small"], "iris").info
    b = store.register(models["small_b"], "iris").info
    # four processes open the same version at once: all get a complete, verified directory; no temp left
    code = ("import sys; from maasctl.store import open_store; s = open_store(sys.argv[1]);\n"
            "with s.open_version(s.resolve('iris@1')) as p: print(sorted(x.name for x in p.iterdir()))")
    procs = [subprocess.Popen([sys.executable, "-c", code, s3_store_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len({o for o, _ in outs}) == 1 and "saved_model.pb" in outs[0][0]
    cache = VersionCache()
    assert sorted(p.name for p in (cache.root / "versions").iterdir()) == [a.sha256]
    assert not list((cache.root / "tmp").iterdir())
    # a damaged cache entry is noticed and fetched again
    victim = cache.entry(a.sha256) / "saved_model.pb"
    victim.write_bytes(b"garbage")
    with store.open_version(a) as path:
        assert (path / "saved_model.pb").read_bytes() == (models["small"] / "saved_model.pb").read_bytes()
    # least recently used goes first once the cap is passed
    monkeypatch.setenv("MAASCTL_CACHE_MAX_BYTES", str(a.size + b.size // 2))
    capped = open_store(s3_store_url)
    with capped.open_version(b):
        pass
    assert sorted(p.name for p in (cache.root / "versions").iterdir()) == [b.sha256]


def test_errors_are_one_line(s3_store_url, tmp_path):
    bucket, _ = bucket_of(s3_store_url)
    r = run_cli("list", store=f"s3://{bucket}-missing/x")
    assert (r.returncode, r.stderr) == (3, f"Error: bucket '{bucket}-missing' does not exist (s3://{bucket}-missing/x)\n")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = run_cli("list", store=s3_store_url, env={"AWS_ENDPOINT_URL": dead, "AWS_MAX_ATTEMPTS": "1"})
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"Error: cannot reach the S3 endpoint {dead}")
    blocker = tmp_path / "no-boto3" / "boto3"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('boto3 is not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])}
    r = run_cli("list", store=s3_store_url, env=env)
    assert (r.returncode, r.stderr) == (1, "Error: --store s3://... needs the s3 extra: pip install 'maasctl[s3]'\n")


def test_access_denied_is_exit_1_without_credentials_in_the_output(tmp_path):
    """A second moto server that checks signatures (INITIAL_NO_AUTH_ACTION_COUNT=0) refuses unknown keys."""
    pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        secret = "sEcReT-do-not-print-0123456789"
        r = run_cli("list", store="s3://denied/registry", env={
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY0000000",
            "AWS_SECRET_ACCESS_KEY": secret, "MAASCTL_LOCAL_HOME": str(tmp_path / "home")})
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("Error: access denied to s3://denied/registry")
    assert secret not in r.stderr + r.stdout and "AKIAUNKNOWNKEY" not in r.stderr + r.stdout
