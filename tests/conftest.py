"""Shared fixtures and the two test tiers.

- The fast tier, `pytest -m "not tf"`: never imports TensorFlow. Its SavedModels are real ones built once with
  TensorFlow and committed under tests/data/savedmodels (`saved_models`; regenerate them with
  `python3 tests/data/make_savedmodels.py`). A guard fails the run if TensorFlow is imported anyway, in this
  process or in a `maasctl` subprocess.
- The real-TensorFlow tier (`tf` marker): tests that use the `tf` fixture, or a fixture that depends on it (`models`,
  built once per session from tiny Keras models / tf.Modules), are marked `tf` automatically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
SAVEDMODELS = REPO / "tests" / "data" / "savedmodels"
GUARD_DIR = REPO / "tests" / "notf_guard"  # holds a sitecustomize.py that refuses to import TensorFlow
FORBID_ENV = "MAASCTL_TEST_FORBID_TF"

# the smallest valid training config: a CSV named by {name} with label column y, one softmax layer
TINY_CSV_CONFIG = """
[data]
path = "{name}"
label = "y"
validation_split = 0.0

[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"
"""


def _tf_deselected(config: pytest.Config) -> bool:
    """True when the mark expression leaves out `tf` tests (e.g. -m "not tf"), or MAASCTL_TEST_FORBID_TF=1."""
    if os.environ.get(FORBID_ENV) == "1":
        return True
    markexpr = config.getoption("markexpr", "") or ""
    if not markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression

        compiled = Expression.compile(markexpr)
        return not compiled.evaluate(lambda name, **kwargs: name == "tf")
    except Exception:  # noqa: BLE001 - pytest moved its private expression module: the plain spelling
        return "not tf" in markexpr


# -- reaping: no `maasctl serve` (or other child) outlives the test session that started it -----------------------
# Every process this session starts inherits SESSION_ENV (detached servers too: they start their own session and
# process group, so killing pytest or a timed-out `run_cli` never reaches them). At the end of the session, on
# SIGTERM (e.g. `timeout 900 pytest`) and at exit, processes carrying this session's marker are stopped by pid;
# processes left by an earlier session that was SIGKILLed (its owner pid is gone) are stopped when the next starts.
SESSION_ENV = "MAASCTL_TEST_SESSION"


def _marked_processes() -> dict[int, str]:
    """pid -> SESSION_ENV value, for every process of this user that carries one (Linux /proc; else none)."""
    found: dict[int, str] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    prefix = SESSION_ENV.encode() + b"="
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found[int(entry.name)] = item[len(prefix):].decode(errors="replace")
                break
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet waited for, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def reap(marker: str | None = None) -> list[int]:
    """Stop (SIGTERM, then SIGKILL after 5 s) the processes carrying `marker` (default: this session's), or,
    with marker "", those of earlier sessions whose owner is dead. Returns their pids."""
    import signal
    import time

    mine = os.environ.get(SESSION_ENV, "") if marker is None else marker
    victims = [pid for pid, value in _marked_processes().items()
               if (value == mine if mine else not _alive(int(value.split(":")[0] or 0)))]
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in victims):
        time.sleep(0.05)
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return victims


def _start_reaping() -> None:
    import atexit
    import signal
    import uuid

    if os.environ.get(SESSION_ENV, "").startswith(f"{os.getpid()}:"):
        return
    with contextlib.suppress(Exception):
        reap("")  # orphans of an earlier, killed session
    os.environ[SESSION_ENV] = f"{os.getpid()}:{uuid.uuid4().hex}"
    atexit.register(reap)

    def on_term(signum: int, frame: object) -> None:
        reap()
        raise KeyboardInterrupt  # pytest then tears fixtures down and exits

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)


def pytest_unconfigure(config: pytest.Config) -> None:
    reap()


def pytest_configure(config: pytest.Config) -> None:
    _start_reaping()
    if not _tf_deselected(config):
        return
    # in this process and in every subprocess (run_cli, Popen of `python -m maasctl`): importing TF raises
    os.environ[FORBID_ENV] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
    import importlib.util

    spec = importlib.util.spec_from_file_location("maasctl_notf_guard", GUARD_DIR / "sitecustomize.py")
    guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guard)  # the same guard in this process
    config.stash[_GUARD_KEY] = guard


_GUARD_KEY = pytest.StashKey[object]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `tf` every test that uses a TensorFlow fixture, directly or through another fixture."""
    for item in items:
        if "tf" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tf)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    guard = session.config.stash.get(_GUARD_KEY, None)
    if guard is None:
        return
    attempts = list(guard.ATTEMPTS)
    if "tensorflow" in sys.modules or attempts:
        what = ", ".join(attempts) or "sys.modules"
        sys.stderr.write(f"\nERROR: the TensorFlow-free tier imported TensorFlow ({what}); mark the test `tf` "
                         "or use the `saved_models` fixture\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def drain_pty(leader: int, timeout: float = 60) -> bytes:
    """Read a pseudo-terminal's leader side until the child closes it (or `timeout` s pass with no output)."""
    import select

    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the follower side was closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return b"".join(chunks)


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


def cli(*args: str, store: Path | None = None, input: str | bytes | None = None,
        env: dict[str, str | None] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `maasctl ARGS` in this process (typer's CliRunner isolation around `maasctl.cli.main`, so errors go
    through the same mapping to `Error: ...` and exit codes); returns a CompletedProcess like `run_cli`.

    For output formats, JSON keys, exit codes and messages. Start-up, signal and crash tests use `run_cli`.
    """
    from typer.testing import CliRunner

    from maasctl.cli import main

    full_env: dict[str, str | None] = {"MAASCTL_DEBUG": None, **(env or {})}
    if store is not None:
        full_env["MAASCTL_HOME"] = str(store)
    old_cwd = os.getcwd()
    with CliRunner().isolation(input=input, env=full_env) as (out, err, _):
        try:
            if cwd is not None:
                os.chdir(cwd)
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(old_cwd)
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(["maasctl", *args], code, stdout, stderr)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path):
    from maasctl.store import Store

    return Store(store_path)


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory) -> dict[str, Path]:
    """The committed real SavedModels, no TensorFlow: `small`, `small_b` (4->16->3), `multi` (two inputs).

    Copies shared by the session: a test that alters files copies its own first.
    """
    root = tmp_path_factory.mktemp("saved_models")
    return {name: Path(shutil.copytree(SAVEDMODELS / name, root / name)) for name in ("small", "small_b", "multi")}


@pytest.fixture(scope="session")
def distinct_models(saved_models, tmp_path_factory) -> list[Path]:
    """16 distinct real SavedModels without TensorFlow: `small` plus a different asset file in each."""
    root = tmp_path_factory.mktemp("distinct")
    out = []
    for i in range(16):
        path = Path(shutil.copytree(saved_models["small"], root / f"m{i}"))
        (path / "assets").mkdir(exist_ok=True)
        (path / "assets" / "id.txt").write_text(f"model {i}\n")
        out.append(path)
    return out


@pytest.fixture(scope="session")
def tf():
    from maasctl.tf import load_tensorflow

    return load_tensorflow()


def tf_view(tf, path: Path) -> dict:
    """Signature dtypes and shapes as TensorFlow's loader reports them."""
    loaded = tf.saved_model.load(str(path))
    out = {}
    for name, fn in loaded.signatures.items():
        inputs = fn.structured_input_signature[1]
        out[name] = {
            "inputs": {k: [v.dtype.name, [-1 if d is None else d for d in v.shape.as_list()]]
                       for k, v in sorted(inputs.items())},
            "outputs": {k: [v.dtype.name, [-1 if d is None else d for d in v.shape.as_list()]]
                        for k, v in sorted(fn.structured_outputs.items())},
        }
    return out


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
