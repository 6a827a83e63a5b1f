"""How a detached `maasctl serve` starts its child: the child's options as one value that renders itself as argv.

The option list of `serve` lives in the CLI's signature and here, once each; `_detach` no longer rebuilds argv
by hand. Secrets never enter argv: a token reaches the child through its environment, a token file as a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maasctl.serving.defaults import BACKENDS, DEFAULT_MAX_BODY


@dataclass(frozen=True)
class DetachedServe:
    """The options a detached server's child process is started with (never a token)."""

    refs: tuple[str, ...]
    server_id: str | None  # None: no record (a worker of `serve --workers`; its supervisor has the record)
    host: str = "127.0.0.1"
    port: int = 8501
    max_batch_size: int = 64
    batch_timeout_ms: float = 0.0
    max_body_bytes: int = DEFAULT_MAX_BODY
    backend: str = BACKENDS[0]
    grpc_port: int | None = None
    poll_seconds: float | None = None
    token_file: Path | None = None  # a path: the child reads the tokens itself
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_keys: tuple[Path, ...] = ()  # --require-signed with these public keys
    workers: int = 1  # serve --workers N: the child supervises N worker processes
    worker_dir: Path | None = None  # a worker's reports (readiness, metrics) for its supervisor and peers
    debug: bool = False
    scaling: Any = None  # --engine ray: a ray_engine.Scaling (replicas or an autoscale range, CPUs per replica)

    def to_argv(self) -> list[str]:
        """`maasctl` arguments that start this server in the foreground (what the detached child runs)."""
        args = ["serve", *self.refs, "--host", self.host, "--port", str(self.port),
                "--max-batch-size", str(self.max_batch_size), "--batch-timeout-ms", str(self.batch_timeout_ms),
                "--max-body-bytes", str(self.max_body_bytes), "--backend", self.backend]
        if self.server_id is not None:
            args += ["--server-id", self.server_id]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        if self.worker_dir is not None:
            args += ["--worker-dir", str(self.worker_dir)]
        if self.grpc_port is not None:
            args += ["--grpc-port", str(self.grpc_port)]
        if self.poll_seconds is not None:
            args += ["--poll-seconds", str(self.poll_seconds)]
        if self.token_file is not None:
            args += ["--token-file", str(self.token_file.resolve())]
        if self.tls_cert is not None and self.tls_key is not None:
            args += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]
        if self.scaling is not None:
            sc = self.scaling
            args += ["--engine", "ray", "--replica-cpus", str(sc.replica_cpus)]
            args += ["--autoscale", f"{sc.autoscale[0]}:{sc.autoscale[1]}"] if sc.autoscale else [
                "--replicas", str(sc.replicas)]
        if self.trusted_keys:
            args += ["--require-signed", *[a for k in self.trusted_keys for a in ("--key", str(k))]]
        return ["--debug", *args] if self.debug else args
