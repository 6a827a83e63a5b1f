"""Shared fixtures. Real SavedModels are built once per session from tiny Keras models / tf.Modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maasctl.tf.testing import build_mlp, build_multi_io

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests talk to servers on 127.0.0.1 only; a proxy from the CI environment must not sit in between.
for _var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_var, None)
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, store: Path | None = None, input: str | bytes | None = None,
            env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m maasctl ARGS` in a real subprocess; returns the CompletedProcess (text mode)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MAASCTL_DEBUG", None)
    if store is not None:
        full_env["MAASCTL_HOME"] = str(store)
    return subprocess.run([sys.executable, "-m", "maasctl", *args], capture_output=True,
                          text=not isinstance(input, bytes), input=input, env=full_env,
                          timeout=timeout, cwd=cwd, check=False)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path):
    from maasctl.store import Store

    return Store(store_path)


@pytest.fixture(scope="session")
def tf():
    from maasctl.tf import load_tensorflow

    return load_tensorflow()


@pytest.fixture(scope="session")
def models(tf, tmp_path_factory) -> dict[str, Path]:
    """Tiny real SavedModels: `small` and `small_b` (4->16->3, different weights), `multi` (two inputs)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "small": build_mlp(tf, root / "small", [4, 16, 3], seed=1),
        "small_b": build_mlp(tf, root / "small_b", [4, 16, 3], seed=2),
        "multi": build_multi_io(tf, root / "multi"),
    }


@pytest.fixture(scope="session")
def many_models(tf, tmp_path_factory) -> list[Path]:
    """16 distinct tiny SavedModels (for the parallel-writers test)."""
    root = tmp_path_factory.mktemp("many")
    return [build_mlp(tf, root / f"m{i}", [4, 3], seed=100 + i) for i in range(16)]


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (SQLite's transient -wal/-shm excluded)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


# -- S3: one real moto server on 127.0.0.1 for the session (never in-process patching of boto) -------------
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint():
    """The URL of a ThreadedMotoServer on a free loopback port; the AWS env points at it for the session
    (subprocesses inherit it). Skipped when the test extra's moto[server] is missing."""
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE")}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=url)
    os.environ.pop("AWS_PROFILE", None)
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_store_url(s3_endpoint, tmp_path, monkeypatch) -> str:
    """`s3://<fresh bucket>/registry`, with this test's own cache and local home."""
    import uuid

    import boto3

    bucket = f"maas-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv("MAASCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MAASCTL_LOCAL_HOME", str(tmp_path / "local-home"))
    return f"s3://{bucket}/registry"


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path) -> str:
    """A store spec of each kind, for the registry behaviour both backends share."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_store_url")
