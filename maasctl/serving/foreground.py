"""Serving from this process: `maasctl serve` in the foreground, one worker of `serve --workers N`, or
tensorflow_model_server supervised under a server record. The CLI checks options and renders; this module
binds, loads, publishes the record and runs until SIGTERM/SIGINT."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maasctl.serving import records

if TYPE_CHECKING:
    from maasctl.refs import ModelRef
    from maasctl.serving.server import ServeOptions
    from maasctl.serving.tls import TlsFiles
    from maasctl.store import ModelStore

# told once the server listens: (REST URL, gRPC address or None)
Announce = Callable[[str, "str | None"], None]


def serve_here(store: ModelStore, parsed: list[ModelRef], refs: list[str], models: list[str],
               options: ServeOptions, *, loader: Any, host: str, port: int, tls: TlsFiles | None,
               grpc_port: int | None, server_id: str | None, worker_dir: Path | None, announce: Announce) -> None:
    """Serve `parsed` over REST (and gRPC with `grpc_port`) until a signal stops it.

    A worker of `--workers` (`worker_dir` set) shares its ports with SO_REUSEPORT, listens only once its models
    are loaded and leaves the record to its supervisor; otherwise the record is published while serving.
    With `grpc_port`, TensorFlow must already be loaded (quietly) by the caller: TF Serving's message modules
    import it.
    """
    from maasctl.serving.server import bind, build_app, run, url_of

    worker = worker_dir is not None
    options.check()
    sock = bind(host, port, reuse_port=worker, listen=not worker)
    url = url_of(sock, tls)
    app = build_app(store, parsed, options, loader=loader)
    reporter = None
    if worker_dir is not None:
        from maasctl.serving.workers import become_worker

        reporter = become_worker(app, sock, worker_dir)
    grpc_server = None
    if grpc_port is not None:
        from maasctl.serving.grpc_api import GrpcServer

        grpc_server = GrpcServer(app, host, grpc_port, tls=tls,  # the app's tokens, scopes and TLS
                                 reuse_port=worker).start()
    grpc_address = grpc_server.address if grpc_server else None
    if reporter is not None:  # its supervisor publishes the server and says where it is
        app.start()  # load models while uvicorn starts
        try:
            run(app, sock, tls, grpc_server)
        finally:
            reporter.stop()
        return
    with records.published(store, server_id, url=url, models=models, refs=list(refs), grpc=grpc_address):
        # announce first: the first load imports TensorFlow with file descriptor 2 silenced (tf.load_tensorflow),
        # which would swallow a line written meanwhile from this thread
        announce(url, grpc_address)
        app.start()  # load models while uvicorn starts
        run(app, sock, tls, grpc_server)


def tfserving_here(store: ModelStore, parsed: list[ModelRef], refs: list[str], models: list[str], *, host: str,
                   port: int, batch_size: int, batch_timeout_ms: float, server_id: str | None,
                   announce: Announce) -> int:
    """Run tensorflow_model_server on the store's versions, published as a server; its exit status."""
    from maasctl.serving import tfserving

    if port == 0:
        from maasctl.serving.server import bind

        sock = bind(host, 0)
        port = sock.getsockname()[1]
        sock.close()
    url = f"http://{host}:{port}"
    workdir = store.servers_dir / f"tfserving-{server_id or os.getpid()}"
    with records.published(store, server_id, url=url, models=models, refs=list(refs), backend="tfserving"):
        announce(url, None)
        return tfserving.run(store, parsed, host=host, port=port, batch_size=batch_size,
                             batch_timeout_ms=batch_timeout_ms, workdir=workdir)
