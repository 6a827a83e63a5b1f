"""Assemble and run the server: bind the socket, build the app, run uvicorn (foreground or in a thread).

The socket is bound here rather than by uvicorn so that `--port 0` yields the real port before serving and
a port in use is a clean one-line error instead of uvicorn's log message and sys.exit.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.refs import ModelRef
from maasctl.serving.app import DEFAULT_MAX_BODY, ServingApp
from maasctl.serving.auth import TokenTable
from maasctl.serving.manager import Loader, Manager
from maasctl.serving.metrics import Metrics
from maasctl.serving.tls import TlsFiles

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore

log = logging.getLogger("maasctl.serve")


@dataclass
class ServeOptions:
    batch_size: int = 64
    batch_timeout_ms: float = 0.0
    max_body_bytes: int = DEFAULT_MAX_BODY
    token: str | None = None
    tokens: TokenTable | None = None  # scoped tokens (--token-file); wins over `token`
    tls: TlsFiles | None = None  # HTTPS only on the port (--tls-cert/--tls-key), checked before binding
    trusted_keys: list[Any] | None = None  # --require-signed: load only versions these keys signed
    poll_interval: float = 0.5

    def check(self) -> None:
        if self.batch_size < 1:
            raise InvalidInput(f"--max-batch-size must be at least 1 (got {self.batch_size})")
        if self.batch_timeout_ms < 0:
            raise InvalidInput(f"--batch-timeout-ms cannot be negative (got {self.batch_timeout_ms})")
        if self.max_body_bytes < 1:
            raise InvalidInput(f"--max-body-bytes must be positive (got {self.max_body_bytes})")


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True, option: str = "--port"
         ) -> socket.socket:
    """A listening TCP socket; OperationFailed with a clear message when the port is taken.

    `reuse_port` (serve --workers): SO_REUSEPORT, so every worker listens on the port and the kernel spreads
    connections over them; `listen=False` only reserves the port (the supervisor's socket: bound, never
    accepting, so no connection is queued on it)."""
    if not 0 <= port <= 65535:
        raise InvalidInput(f"{option} must be between 0 and 65535 (got {port})")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidInput(f"--host {host!r} cannot be resolved: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OperationFailed(f"port {port} on {host} is already in use (another server?); choose another "
                                  f"with {option}, or {option} 0 for a free one. See: maasctl ps") from None
        if exc.errno == errno.EACCES:
            raise OperationFailed(f"not allowed to bind {host}:{port} (ports below 1024 need privileges)") from None
        raise OperationFailed(f"cannot bind {host}:{port}: {exc.strerror}") from None
    if not listen:
        return sock
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, tls: TlsFiles | None = None) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def build_app(store: ModelStore, refs: list[ModelRef], options: ServeOptions, *, loader: Loader) -> ServingApp:
    """The ASGI app serving `refs` from `store`; `loader` loads one version (see serving.manager.Loader)."""
    options.check()
    metrics = Metrics()

    def on_batch(name: str, version: int, rows: int, seconds: float) -> None:
        v = str(version)
        metrics.batch_size.observe(rows, name, v)
        metrics.model_latency.observe(seconds, name, v)

    if options.trusted_keys:  # --require-signed: the signature is checked before the version is loaded
        from maasctl.serving.policy import signed_loader

        loader = signed_loader(store, options.trusted_keys, loader)
    manager = Manager(store, refs, batch_size=options.batch_size, batch_timeout_s=options.batch_timeout_ms / 1000,
                      poll_interval=options.poll_interval, on_batch=on_batch, loader=loader)
    return ServingApp(manager, metrics, max_body_bytes=options.max_body_bytes, token=options.token,
                      tokens=options.tokens)


class _CoalescingTransport:
    """Holds writes until the end of the current event-loop step, so a response's status line + headers and
    its body leave in one send() instead of two (uvicorn writes them separately; on loopback a syscall is a
    large share of a small request's cost). Everything else is delegated to the real transport."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._buffer.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


# -- the seam into uvicorn's internals ---------------------------------------------------------------------
# Two private pieces, used only here and checked when used, each with a public fallback (uvicorn has an upper
# version bound in pyproject.toml): the httptools protocol class (subclassed to coalesce writes; fallback:
# uvicorn's own "httptools" protocol) and Server._captured_signals (cleared so that SIGTERM after a graceful
# stop is not re-raised; fallback: uvicorn re-raises it, the process still stops after draining).
def _http_protocol() -> Any:
    """uvicorn's httptools protocol with coalesced writes, or uvicorn's plain "httptools" if its internals moved."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError as exc:
        log.debug("uvicorn internals changed (%s): serving without write coalescing", exc)
        return "httptools"
    if not callable(getattr(HttpToolsProtocol, "connection_made", None)):
        log.debug("uvicorn internals changed (no HttpToolsProtocol.connection_made): no write coalescing")
        return "httptools"

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            loop = getattr(self, "loop", None)
            wrapped = _CoalescingTransport(transport, loop) if loop is not None else transport
            super().connection_made(wrapped)  # type: ignore[arg-type]  # a Transport by delegation

        def shutdown(self) -> None:
            # An idle TLS keep-alive connection: close() would wait up to asyncio's 30 s ssl_shutdown_timeout for
            # the client's close_notify, holding the whole graceful stop; nothing is pending, so drop it now.
            transport = getattr(self, "transport", None)
            cycle = getattr(self, "cycle", None)
            if (transport is not None and transport.get_extra_info("sslcontext") is not None
                    and (cycle is None or cycle.response_complete) and not transport.get_write_buffer_size()):
                transport.abort()
                return
            super().shutdown()

    return CoalescingHttpToolsProtocol


def _uvicorn_server(app: ServingApp, tls: TlsFiles | None = None, grpc_server: Any = None) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            if grpc_server is not None:
                grpc_server.begin_stop()  # no new gRPC calls from now on
                lifespan_shutdown = self.lifespan.shutdown

                async def after_grpc() -> None:  # gRPC calls in flight finish before the models are unloaded
                    await asyncio.get_running_loop().run_in_executor(None, grpc_server.stop)
                    await lifespan_shutdown()

                self.lifespan.shutdown = after_grpc
            await super().shutdown(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # the graceful stop is the whole answer to SIGTERM/SIGINT: do not re-raise the signal afterwards
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    config = uvicorn.Config(app, http=_http_protocol(), ws="none", lifespan="on", log_level="warning",
                            access_log=False, log_config=None, server_header=False, proxy_headers=False,
                            timeout_keep_alive=30,
                            ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None)
    server = Server(config)
    if not isinstance(getattr(server, "_captured_signals", None), list):
        log.debug("uvicorn internals changed (no Server._captured_signals): SIGTERM is re-raised after the "
                  "graceful stop")
    return server


def run(app: ServingApp, sock: socket.socket, tls: TlsFiles | None = None, grpc_server: Any = None) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish first (gRPC ones too, when `grpc_server`
    is a started `grpc_api.GrpcServer`)."""
    server = _uvicorn_server(app, tls, grpc_server)
    server.run(sockets=[sock])
    if not server.started:
        raise OperationFailed("the server failed to start (see the log above)")


class ServerThread:
    """Run a server in a background thread of this process (tests, benchmarks)."""

    def __init__(self, app: ServingApp, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None,
                 grpc_port: int | None = None) -> None:
        self.app = app
        self.sock = bind(host, port)
        self.url = url_of(self.sock, tls)
        self.grpc = None
        if grpc_port is not None:
            from maasctl.serving.grpc_api import GrpcServer

            self.grpc = GrpcServer(app, host, grpc_port, tls=tls)
        self.server = _uvicorn_server(app, tls, self.grpc)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="uvicorn", daemon=True)

    @property
    def grpc_address(self) -> str | None:
        return self.grpc.address if self.grpc is not None else None

    def start(self, timeout: float = 30) -> ServerThread:
        if self.grpc is not None:
            self.grpc.start()
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OperationFailed("the server thread did not start")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready, problems, _ = self.app.manager.readiness()
            if ready and self.app.manager.settled():  # every aspired version loaded (or refused), not just one
                return
            if time.monotonic() > deadline:
                raise OperationFailed("not ready: " + "; ".join(problems))
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        if self.grpc is not None:
            self.grpc.stop()
