"""`--backend tfserving`: run Google's `tensorflow_model_server` against the store.

The store's `models/<name>/<version>/` layout is already TF Serving's. maasctl writes the model config
(`model_config_list`: base path, a `specific` version policy, `version_labels` from the aliases) computed
by the same Source logic as the built-in server, and rewrites it when the registry changes; TF Serving
re-reads it (`--model_config_file_poll_wait_seconds`), so `NAME` keeps following new versions and aliases.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maasctl.errors import InvalidInput
from maasctl.refs import ModelRef
from maasctl.serving.source import Aspired, StoreSource

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore

BINARY = "tensorflow_model_server"
INSTALL_HINT = (f"{BINARY} is not on PATH. It ships only in the Docker image tensorflow/serving "
                "(docker run -p 8501:8501 -v STORE/models:/models tensorflow/serving) and in Google's APT "
                "repository (echo 'deb [arch=amd64] http://storage.googleapis.com/tensorflow-serving-apt stable "
                "tensorflow-model-server tensorflow-model-server-universal' > /etc/apt/sources.list.d/"
                "tensorflow-serving.list, add the key, then apt-get install tensorflow-model-server); "
                "or use the built-in backend (--backend maasctl)")


def require_binary() -> str:
    """The path of tensorflow_model_server; InvalidInput (exit 2) saying how to install it otherwise."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise InvalidInput(INSTALL_HINT)
    return binary


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def model_config_text(models_dir: str | Path, aspired: dict[str, Aspired]) -> str:
    """Pure: the text-format ModelServerConfig for the aspired versions of each model."""
    lines = ["model_config_list {"]
    for name in sorted(aspired):
        want = aspired[name]
        base = Path(models_dir) / name
        lines.append("  config {")
        lines.append(f"    name: {_quote(name)}")
        lines.append(f"    base_path: {_quote(str(base))}")
        lines.append("    model_platform: 'tensorflow'")
        versions = " ".join(f"versions: {v}" for v in sorted(want.versions))
        lines.append(f"    model_version_policy {{ specific {{ {versions} }} }}")
        for label, v in sorted(want.labels.items()):
            lines.append(f"    version_labels {{ key: {_quote(label)} value: {v} }}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def command(config_path: Path, *, host: str, port: int, grpc_port: int, batching_file: Path | None = None
            ) -> list[str]:
    cmd = [require_binary(), f"--rest_api_port={port}", f"--rest_api_host={host}", f"--port={grpc_port}",
           f"--model_config_file={config_path}", "--model_config_file_poll_wait_seconds=1",
           "--allow_version_labels_for_unavailable_models=true"]
    if batching_file is not None:
        cmd += ["--enable_batching=true", f"--batching_parameters_file={batching_file}"]
    return cmd


def batching_text(batch_size: int, timeout_ms: float) -> str:
    return (f"max_batch_size {{ value: {batch_size} }}\n"
            f"batch_timeout_micros {{ value: {int(timeout_ms * 1000)} }}\n"
            "num_batch_threads { value: 2 }\n")


def run(store: ModelStore, refs: list[ModelRef], *, host: str, port: int, batch_size: int, batch_timeout_ms: float,
        workdir: Path, poll_interval: float = 1.0) -> int:
    """Supervise tensorflow_model_server: write its config, keep it current, forward SIGTERM/SIGINT."""
    require_binary()
    source = StoreSource(store, refs)
    aspired = source.poll() or {}
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "models.config"
    batching = workdir / "batching.config"
    _write(config, model_config_text(store.models_dir, aspired))
    _write(batching, batching_text(batch_size, batch_timeout_ms))
    proc = subprocess.Popen(command(config, host=host, port=port, grpc_port=_free_port(host), batching_file=batching))
    stopping = False

    def forward(sig: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        last = config.read_text()
        while proc.poll() is None:
            time.sleep(poll_interval)
            if stopping:
                continue
            text = model_config_text(store.models_dir, source.poll() or aspired)
            if text != last:
                _write(config, text)
                last = text
        return proc.returncode
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _stop_child(proc)  # on any error in this loop: never leave tensorflow_model_server behind


def _stop_child(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _free_port(host: str) -> int:
    """A free port for TF Serving's gRPC endpoint (it always opens one; maasctl only uses REST)."""
    import socket

    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return s.getsockname()[1]
