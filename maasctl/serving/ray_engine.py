"""`serve --engine ray`: our serving stack as a Ray Serve application.

Nothing is re-implemented for Ray: each replica builds the same ASGI app as `maasctl serve` (serving/server.py's
`build_app`: Source -> Manager -> Handle, batching, digest checks, metrics, tokens) and hands it to Ray Serve as a
late-bound ASGI ingress (`@serve.ingress()` + `__serve_build_asgi_app__`), so Ray's HTTP proxy forwards requests
to it unchanged. Every replica runs its own Manager that follows NAME / NAME@ALIAS in the store, loading a new
version before switching to it, so an alias move reloads the fleet with no failed request.

Ray is imported here only, and only inside functions (`maasctl[ray]` is optional); TensorFlow is not imported
here at all: the CLI names the loader factory (maasctl.tf.servable:store_loader), which each replica imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.refs import parse_ref
from maasctl.serving.defaults import ENGINES
from maasctl.serving.server import ServeOptions

APP_PREFIX = "maasctl-"
# Ray logs every request of every replica (and streams it to drivers): our own metrics count requests, so
# Ray's access log is off and only warnings are kept (about +15 % req/s through Ray's proxy on a 2-core box)
LOGGING = {"enable_access_log": False, "log_level": "WARNING"}
MAX_ONGOING_REQUESTS = 256  # per replica; Ray's default (5) would cap the batcher's merged calls at 5 rows
READY_TIMEOUT_S = 300.0  # a replica's first load (TensorFlow import + SavedModel) on a busy node
REPLICA_FAILED = "a replica could not load"  # our error's prefix, found again in Ray's deployment status
# variables a replica needs to reach the store; credentials are not forwarded (they would sit in Ray's
# deployment config): a cluster reading an S3 store gets them from its own environment or instance role
_FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "MAASCTL_CACHE")


def require_ray() -> None:
    """InvalidInput (exit 2, one line) when the `ray` extra is not installed."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise InvalidInput("--engine ray needs Ray Serve: pip install 'maasctl[ray]'") from None


@dataclass(frozen=True)
class Scaling:
    """How many replicas: a fixed number, or an autoscaling range (Ray Serve's autoscaler)."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    replica_cpus: float = 1.0

    @classmethod
    def parse(cls, replicas: int | None, autoscale: str | None, replica_cpus: float | None) -> Scaling:
        if replicas is not None and autoscale is not None:
            raise InvalidInput("give --replicas N or --autoscale MIN:MAX, not both")
        if replicas is not None and replicas < 1:
            raise InvalidInput(f"--replicas must be at least 1 (got {replicas})")
        cpus = 1.0 if replica_cpus is None else replica_cpus
        if not cpus > 0:
            raise InvalidInput(f"--replica-cpus must be positive (got {replica_cpus})")
        if autoscale is None:
            return cls(replicas or 1, None, cpus)
        lo, sep, hi = autoscale.partition(":")
        try:
            lo_n, hi_n = int(lo), int(hi)
        except ValueError:
            lo_n = hi_n = -1
        if not sep or lo_n < 0 or hi_n < 1:
            raise InvalidInput(f"--autoscale must be MIN:MAX with 0 <= MIN and 1 <= MAX (got {autoscale!r})")
        if lo_n > hi_n:
            raise InvalidInput(f"--autoscale {autoscale}: MIN ({lo_n}) is larger than MAX ({hi_n})")
        return cls(max(lo_n, 1), (lo_n, hi_n), cpus)

    def deployment_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": self.replica_cpus},
                                "max_ongoing_requests": MAX_ONGOING_REQUESTS, "logging_config": LOGGING}
        if self.autoscale is None:
            opts["num_replicas"] = self.replicas
        else:
            lo, hi = self.autoscale
            opts["autoscaling_config"] = {"min_replicas": lo, "max_replicas": hi, "initial_replicas": max(lo, 1)}
        return opts

    def describe(self) -> str:
        if self.autoscale is None:
            return f"{self.replicas} replica{'s' if self.replicas != 1 else ''}"
        return f"{self.autoscale[0]} to {self.autoscale[1]} replicas (autoscaling)"


@dataclass(frozen=True)
class ReplicaConfig:
    """What every replica needs to build its own app; pickled into Ray's deployment (never put in argv)."""

    store: str  # the store's location: a directory every node can read, or s3://BUCKET/PREFIX
    refs: tuple[str, ...]
    options: ServeOptions
    # "module:function" making the Loader from the store, imported in the replica only (the caller names
    # maasctl.tf.servable:store_loader; the deploying process never imports TensorFlow)
    loader_factory: str
    env: dict[str, str] = field(default_factory=dict)


class MaasctlReplica:
    """One Ray Serve replica: our ServingApp over its own Manager (Ray's ingress wrapper is added in
    `_deployment`, so this module imports without Ray)."""

    def __init__(self, config: ReplicaConfig) -> None:
        self._config = config
        self._app: Any = None

    async def __serve_build_asgi_app__(self) -> Any:
        """Build the app and wait until its models are AVAILABLE: Ray routes to a replica once this returns,
        so a new or replacement replica never answers 503 while it loads."""
        self._app = await asyncio.to_thread(self._build_and_load)
        return _ReplicaHeader(self._app, _replica_tag())

    def _build_and_load(self) -> Any:
        from maasctl.serving.server import build_app
        from maasctl.store import open_store

        cfg = self._config
        os.environ.update(cfg.env)
        store = open_store(cfg.store)
        module, _, attr = cfg.loader_factory.partition(":")
        factory: Callable[[Any], Any] = getattr(importlib.import_module(module), attr)
        app = build_app(store, [parse_ref(r) for r in cfg.refs], cfg.options, loader=factory(store))
        app.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            ready, problems, failed = app.manager.readiness()
            if ready and app.manager.settled():  # every ref answers and nothing is still loading
                return app
            if (failed and not ready) or time.monotonic() > deadline:
                app.manager.stop()
                raise OperationFailed(f"{REPLICA_FAILED} " + "; ".join(failed or problems))
            time.sleep(0.05)

    def check_health(self) -> None:
        """Ray Serve's periodic health check: a replica whose manager thread died is replaced."""
        thread = getattr(self._app.manager, "_thread", None) if self._app is not None else None
        if thread is not None and not thread.is_alive():
            raise RuntimeError("the serving manager thread stopped")


class _ReplicaHeader:
    """Adds `x-maasctl-replica: <id>` to every response: which replica answered (for operators and tests)."""

    def __init__(self, app: Any, tag: str) -> None:
        self._app = app
        self._header = (b"x-maasctl-replica", tag.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self._header]}
            await send(message)

        await self._app(scope, receive, tagged)


def _replica_tag() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - a label only
        return f"pid{os.getpid()}"


def _deployment(scaling: Scaling) -> Any:
    from ray import serve

    ingress = serve.ingress()(MaasctlReplica)
    return serve.deployment(name="maasctl", **scaling.deployment_options())(ingress)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[str]:
    """Connect this process to the Ray cluster at `address` ("auto", host:port, ray://host:10001), or start a
    local one when `address` is None; yields the cluster's address. Ray's own start-up logging goes to stderr."""
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) already connected this process
        yield ray.get_runtime_context().gcs_address
        return
    if address is not None:
        _check_reachable(address)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's INFO lines would drown our one message
    kwargs: dict[str, Any] = {"include_dashboard": False} if address is None else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **kwargs)
    except ConnectionError as exc:
        raise OperationFailed(f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}") from None
    try:
        yield ray.get_runtime_context().gcs_address if address is None else address
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds when nothing listens at HOST:PORT (ray.init would retry for minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray looks the cluster up itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise OperationFailed(f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc} (is Ray "
                              "running there? `ray start --head` starts one)") from None


def deploy(config: ReplicaConfig, scaling: Scaling, *, app: str, host: str, port: int) -> str:
    """Deploy (or update) application `app` on the connected cluster; returns the URL of Ray's HTTP proxy once
    every replica has loaded its models. Starts Serve on the cluster with `host:port` if it is not running."""
    from ray import serve

    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    config = ReplicaConfig(config.store, config.refs, config.options, config.loader_factory, {**env, **config.env})
    for other, status in serve.status().applications.items():
        prefix = getattr(status, "route_prefix", None)
        if other != app and prefix == "/":
            raise InvalidInput(f"Ray Serve application {other!r} already serves '/' on this cluster; stop it "
                               f"first (maasctl stop, or serve.delete({other!r}))")
    port = free_port(host) if port == 0 else port
    quiet = logging.getLogger("ray.serve")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # when Serve already runs, its options win (proxy_url reads them): no warning
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config=LOGGING)
    finally:
        quiet.setLevel(level)
    try:
        serve.run(_deployment(scaling).bind(config), name=app, route_prefix="/")
    except Exception as exc:  # noqa: BLE001 - Ray raises several types; the line is what the user needs
        why = _replica_error(app) or _first_line(exc)
        with contextlib.suppress(Exception):
            serve.delete(app)
        raise OperationFailed(f"Ray Serve could not deploy {app}: {why}") from None
    return proxy_url(host, port)


def _replica_error(app: str) -> str | None:
    """Our replica's own error line (a refused digest, a model that failed to load) out of Ray's status
    message, which wraps it in a traceback."""
    from ray import serve

    with contextlib.suppress(Exception):
        status = serve.status().applications[app]
        for dep in status.deployments.values():
            for line in str(dep.message).splitlines():
                if REPLICA_FAILED in line:
                    return line[line.index(REPLICA_FAILED):].strip()
    return None


def proxy_url(host: str, port: int) -> str:
    """The URL of Ray's HTTP proxy: read from Serve's controller (Serve may have been started earlier with
    other options, which then win); our own host:port when that private seam is unavailable."""
    with contextlib.suppress(Exception):  # a private API: fall back to what we asked for
        from ray.serve.context import _get_global_client

        cfg = _get_global_client().http_config  # type: ignore[union-attr]
        host, port = str(cfg.host), int(cfg.port)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def undeploy(address: str, app: str) -> bool:
    """Delete application `app` from the cluster at `address`; False when it no longer exists there."""
    with connected(address):
        return delete(app)


def delete(app: str) -> bool:
    """Delete application `app` from the connected cluster (its replicas drain); False when it is not there."""
    from ray import serve

    if app not in serve.status().applications:
        return False
    serve.delete(app)
    return True


def app_name(server_id: str) -> str:
    return APP_PREFIX + server_id


def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT (a foreground `serve --engine ray` owning a local cluster)."""
    import signal
    import threading

    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def scaling_options(engine: str, address: str | None, replicas: int | None, autoscale: str | None,
                    replica_cpus: float | None, *, backend: str, workers: int, grpc_port: int | None, tls: bool,
                    signed: bool) -> Scaling | None:
    """The Ray scaling options (None for --engine maasctl); every refusal is one line, exit 2."""
    if engine not in ENGINES:
        raise InvalidInput(f"--engine must be 'maasctl' or 'ray' (got {engine!r})")
    ray_only = [n for n, v in (("--address", address), ("--replicas", replicas), ("--autoscale", autoscale),
                               ("--replica-cpus", replica_cpus)) if v is not None]
    if engine != "ray":
        if ray_only:
            raise InvalidInput(f"{ray_only[0]} needs --engine ray")
        return None
    scaling = Scaling.parse(replicas, autoscale, replica_cpus)
    if workers != 1:
        raise InvalidInput("--workers cannot be combined with --engine ray: give --replicas N (Ray runs them)")
    for flag, used in (("--backend tfserving", backend != "maasctl"), ("--grpc-port", grpc_port is not None),
                       ("--tls-cert", tls), ("--require-signed", signed)):
        if used:
            raise InvalidInput(f"{flag} cannot be combined with --engine ray (Ray's HTTP proxy serves REST only)")
    require_ray()
    return scaling
