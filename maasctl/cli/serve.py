"""Serving commands: serve, ps, stop."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_server
from maasctl.cli._options import JsonOpt, choice_option, ref_argument, state, token_option
from maasctl.errors import InvalidInput
from maasctl.serving.defaults import BACKENDS, DEFAULT_MAX_BODY, ENGINES

if TYPE_CHECKING:
    from maasctl.refs import ModelRef
    from maasctl.store import ModelStore


def serve(
    ctx: typer.Context,
    refs: Annotated[list[str], ref_argument("Models to serve: NAME (latest, follows new versions), NAME@VERSION "
                                            "(pinned) or NAME@ALIAS (follows the alias).")],
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port; 0 picks a free one.")] = 8501,
    batch_size: Annotated[int, typer.Option("--max-batch-size", help="Most rows merged into one model call.")]
    = 64,
    batch_timeout_ms: Annotated[float, typer.Option("--batch-timeout-ms", help="How long an idle model waits for "
                                                    "more rows before a call (0: never wait).")] = 0.0,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body (413 above).")]
    = DEFAULT_MAX_BODY,
    token: Annotated[str | None, token_option("Require 'Authorization: Bearer TOKEN' (all routes but "
                                              "/healthz).")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", metavar="FILE", dir_okay=False,
                                                       help="Scoped tokens: 'TOKEN SCOPE[,SCOPE]' per line; "
                                                       "scopes predict, read, metrics.")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", metavar="FILE", dir_okay=False,
                                                     help="Serve HTTPS only, with this PEM certificate (chain).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", metavar="FILE", dir_okay=False,
                                                    help="The PEM private key of --tls-cert.")] = None,
    require_signed: Annotated[bool, typer.Option("--require-signed", help="Load only versions signed by a trusted "
                                                 "key (others: refused, the old version keeps serving).")] = False,
    key: Annotated[list[Path], typer.Option("--key", metavar="PUBLIC.pem", dir_okay=False,
                                            help="Trusted public key for --require-signed (repeatable) "
                                            "[default: $MAASCTL_TRUSTED_KEYS].")] = [],  # noqa: B006 - typer copies the default; never mutated
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", metavar="PORT", help="Also serve TF Serving's gRPC API "
                                                     "on this port (TF Serving uses 8500; 0 picks a free one). "
                                                     "Off by default.")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; return once ready.")] = False,
    workers: Annotated[int, typer.Option("--workers", metavar="N", help="Server processes sharing the port(s) "
                                         "(SO_REUSEPORT, Linux), each holding the models; crashed ones are "
                                         "restarted.")] = 1,
    worker_dir: Annotated[Path | None, typer.Option("--worker-dir", hidden=True)] = None,
    backend: Annotated[str, choice_option("--backend", choices=BACKENDS, help="maasctl (built in) or tfserving "
                                          "(runs tensorflow_model_server).")] = "maasctl",
    poll_seconds: Annotated[float | None, typer.Option(
        "--poll-seconds", metavar="S", help="How often the store is read for new versions and alias moves "
        "[default: 0.5 for a local store, 10 for s3://].")] = None,
    engine: Annotated[str, choice_option("--engine", choices=ENGINES, help="maasctl (this process) or ray (a Ray "
                                         "Serve application; needs maasctl[ray]).")] = "maasctl",
    address: Annotated[str | None, typer.Option("--address", metavar="ADDRESS",
                                                help="--engine ray: the Ray cluster to deploy into, auto, "
                                                "HOST:PORT or ray://HOST:10001 (the application outlives this "
                                                "command) [default: start a local cluster, serving until "
                                                "Ctrl-C].")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", metavar="N", help="--engine ray: replicas, each "
                                                 "following the refs in the store [default: 1].")] = None,
    autoscale: Annotated[str | None, typer.Option("--autoscale", metavar="MIN:MAX", help="--engine ray: let Ray "
                                                  "Serve scale between MIN and MAX replicas.")] = None,
    replica_cpus: Annotated[float | None, typer.Option("--replica-cpus", metavar="CPUS", help="--engine ray: CPUs "
                                                       "Ray reserves per replica (fractions allowed) "
                                                       "[default: 1].")] = None,
    server_id: Annotated[str | None, typer.Option("--server-id", hidden=True)] = None,
    old_batch_size: Annotated[int | None, typer.Option("--batch-size", hidden=True,
                                                       help="Old name of --max-batch-size.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve models over TensorFlow Serving's REST API.

    Predict, classify, regress, status and metadata routes. Also: GET /v1/models, /healthz, /readyz and
    Prometheus metrics at /monitoring/prometheus/metrics. SIGTERM or Ctrl-C stops gracefully (in-flight
    requests finish).

    With --engine ray the same server runs as a Ray Serve application (Ray's HTTP proxy in front of
    --replicas copies, each following the refs); `ps` and `stop` list and remove it.

    Example: maasctl serve iris@production --port 8501 --detach
    """
    from maasctl.cli._security import resolve_signing, resolve_tls, resolve_tokens
    from maasctl.refs import parse_ref
    from maasctl.serving.workers import check_supported

    if old_batch_size is not None:
        batch_size = old_batch_size
    check_supported(workers)
    if workers > 1 and backend != "maasctl":
        raise InvalidInput("--workers works with --backend maasctl only (tensorflow_model_server uses every core "
                           "itself)")
    scaling = None
    if engine == "ray" or any(v is not None for v in (address, replicas, autoscale, replica_cpus)):
        from maasctl.serving.ray_engine import scaling_options

        scaling = scaling_options(engine, address, replicas, autoscale, replica_cpus, backend=backend,
                                  workers=workers, grpc_port=grpc_port, tls=tls_cert is not None,
                                  signed=require_signed)
    elif engine not in ENGINES:
        raise InvalidInput(f"--engine must be 'maasctl' or 'ray' (got {engine!r})")
    token, tokens = resolve_tokens(ctx, token, token_file)
    tls = resolve_tls(tls_cert, tls_key, backend, tokens)  # one line, exit 2, before anything binds
    store = state(ctx).store
    parsed = [parse_ref(r) for r in refs]
    resolved = [store.resolve(ref) for ref in parsed]  # fail fast (exit 3) on a name, version or alias
    if backend not in BACKENDS:
        raise InvalidInput(f"--backend must be 'maasctl' or 'tfserving' (got {backend!r})")
    if poll_seconds is not None and poll_seconds <= 0:
        raise InvalidInput(f"--poll-seconds must be positive (got {poll_seconds})")
    models = sorted({r.name for r in parsed})
    trusted = resolve_signing(require_signed, key, store, parsed, backend)  # unsigned: one line, exit 1
    if grpc_port is not None and backend != "maasctl":
        raise InvalidInput("--grpc-port works with --backend maasctl only")
    if backend == "tfserving":
        from maasctl.serving.tfserving import require_binary

        require_binary()
    from maasctl.serving.launch import DetachedServe

    launch = DetachedServe(tuple(refs), server_id, host=host, port=port, max_batch_size=batch_size,
                           batch_timeout_ms=batch_timeout_ms, max_body_bytes=max_body_bytes, backend=backend,
                           grpc_port=grpc_port, poll_seconds=poll_seconds, token_file=token_file,
                           tls_cert=tls.cert if tls is not None else None,
                           tls_key=tls.key if tls is not None else None,
                           trusted_keys=tuple(k.path for k in trusted or ()), workers=workers,
                           debug=state(ctx).debug, scaling=scaling)
    if detach and not (scaling is not None and address is not None):  # a Ray app in a cluster: no process
        _detach(store, launch, models, token=token, json_out=json_out, tokens=tokens, tls=tls)
        return
    if scaling is not None:
        from maasctl.serving.server import ServeOptions

        options = ServeOptions(batch_size=batch_size, batch_timeout_ms=batch_timeout_ms,
                               max_body_bytes=max_body_bytes, token=token, tokens=tokens,
                               poll_interval=poll_seconds if poll_seconds is not None else store.poll_seconds)
        options.check()
        _ray(store, refs, models, options, scaling, address=address, host=host, port=port, server_id=server_id,
             json_out=json_out)
        return
    _configure_logging(store, server_id, worker=worker_dir is not None)
    if not tokens and host not in ("127.0.0.1", "localhost", "::1") and worker_dir is None:
        render.message(f"warning: serving on {host} without --token: anyone who can reach this port can call "
                       "the models")
    if workers > 1:
        _supervise(store, launch, models, tls=tls, token=token, json_out=json_out)
        return
    if backend == "tfserving":
        _tfserving(store, parsed, refs, models, host=host, port=port, batch_size=batch_size,
                   batch_timeout_ms=batch_timeout_ms, server_id=server_id, json_out=json_out)
        return
    for info in resolved:  # a remote version starts downloading into the cache now (no-op locally)
        store.prefetch(info)
    from maasctl.serving.foreground import serve_here
    from maasctl.serving.server import ServeOptions
    from maasctl.tf.servable import store_loader  # TensorFlow itself comes in at the first load

    options = ServeOptions(batch_size=batch_size, batch_timeout_ms=batch_timeout_ms,
                           max_body_bytes=max_body_bytes, token=token, tokens=tokens, tls=tls,
                           trusted_keys=trusted,
                           poll_interval=poll_seconds if poll_seconds is not None else store.poll_seconds)
    if grpc_port is not None:
        from maasctl.tf import load_tensorflow

        load_tensorflow()  # quietly, before TF Serving's message modules import it
    serve_here(store, parsed, refs, models, options, loader=store_loader(store), host=host, port=port, tls=tls,
               grpc_port=grpc_port, server_id=server_id, worker_dir=worker_dir,
               announce=lambda url, grpc: _announce(url, grpc, refs, models, server_id, json_out))
    if worker_dir is None:
        render.message("server stopped")


def _announce(url: str, grpc_address: str | None, refs: list[str], models: list[str], server_id: str | None,
              json_out: bool, workers: int = 1) -> None:
    if json_out:
        render.emit_json({"url": url, "pid": os.getpid(), "models": models, "id": server_id,
                          "grpc": grpc_address, "workers": workers})
    else:
        print(url)
    sys.stdout.flush()
    render.message(f"serving {', '.join(refs)} at {url}" + (f" and gRPC {grpc_address}" if grpc_address else "")
                   + (f" with {workers} workers" if workers > 1 else "") + " (Ctrl-C or SIGTERM stops)")


def _supervise(store: ModelStore, launch, models: list[str], *, tls, token: str | None, json_out: bool) -> None:
    from maasctl.serving import workers

    refs = list(launch.refs)
    workers.serve(store, launch, workers=launch.workers, tls=tls, token=token, server_id=launch.server_id,
                  models=models, refs=refs,
                  announce=lambda url, grpc: _announce(url, grpc, refs, models, launch.server_id, json_out,
                                                       launch.workers))
    render.message("server stopped")


def _ray(store: ModelStore, refs: list[str], models: list[str], options, scaling, *, address: str | None,
         host: str, port: int, server_id: str | None, json_out: bool) -> None:
    """Deploy into the cluster at --address and return (a record with no pid: `stop` deletes the application),
    or start a local cluster and serve in the foreground until Ctrl-C/SIGTERM (detached: its record has our pid)."""
    from maasctl.serving import ray_engine, records

    server_id = server_id or records.new_id()
    app = ray_engine.app_name(server_id)
    # each replica imports TensorFlow and builds its own loader; this process never needs TensorFlow
    config = ray_engine.ReplicaConfig(store.location, tuple(refs), options, "maasctl.tf.servable:store_loader")
    if not options.tokens and not options.token and host not in ("127.0.0.1", "localhost", "::1"):
        render.message(f"warning: Ray's proxy on {host} without --token: anyone who can reach it can call the "
                       "models")
    render.message(f"deploying {', '.join(refs)} on Ray Serve as {app} ({scaling.describe()})"
                   + (f" into {address}" if address else ", on a local Ray cluster"))
    with ray_engine.connected(address) as cluster:
        url = ray_engine.deploy(config, scaling, app=app, host=host, port=port)
        doc = {"url": url, "pid": None if address else os.getpid(), "models": models, "id": server_id,
               "grpc": None, "workers": None, "engine": "ray", "address": cluster, "app": app}
        if address is not None:
            records.write_record(store, server_id, url=url, models=models, refs=list(refs), pid=0, engine="ray",
                                 address=cluster, app=app)
            _emit_ray(doc, json_out, f"Ray Serve application {app} serving {', '.join(refs)} at {url}; stop it "
                      f"with: maasctl stop {server_id}")
            return
        with records.published(store, server_id, url=url, models=models, refs=list(refs), engine="ray",
                               address=cluster, app=app):
            _emit_ray(doc, json_out, f"serving {', '.join(refs)} at {url} on a local Ray cluster "
                      "(Ctrl-C or SIGTERM stops)")
            ray_engine.wait_for_signal()
            ray_engine.delete(app)  # replicas drain (in-flight requests finish) before the cluster goes
    render.message("server stopped")


def _emit_ray(doc: dict, json_out: bool, message: str) -> None:
    if json_out:
        render.emit_json(doc)
    else:
        print(doc["url"])
    sys.stdout.flush()
    render.message(message)


def _configure_logging(store: ModelStore, server_id: str | None, worker: bool = False) -> None:
    from maasctl.serving import logs, records

    # a detached server (it has an id) writes its own log file, size-capped and rotated; a worker of
    # `--workers` writes to stderr, which is its supervisor's log (lines tagged with the worker's pid)
    logs.configure(records.log_path(store, server_id) if server_id else None,
                   tag=f"worker {os.getpid()} " if worker else "")


def _detach(store: ModelStore, launch, models: list[str], *, token: str | None, json_out: bool, tokens=None,
            tls=None) -> None:
    import dataclasses

    from maasctl.serving import records

    server_id = records.new_id()
    launch = dataclasses.replace(launch, server_id=server_id)
    probe = None
    if launch.token_file:  # the child reads the file itself: only its path is in argv, never a token
        probe = tokens.token_with("read")
        if probe is None:
            raise InvalidInput(f"--token-file {launch.token_file}: --detach checks readiness at /readyz, which "
                               "needs a token with the 'read' scope; add one")
    args = launch.to_argv()
    ready = None if launch.backend == "maasctl" else [f"/v1/models/{m}" for m in models]
    failed: list[str] = []
    rec = records.spawn_detached(store, server_id, args, token=token if not launch.token_file else None,
                                 ready_paths=ready, probe_token=probe, tls_cert=tls.cert if tls else None,
                                 failed=failed)
    for problem in failed:  # every ref serves a version, but not the one wanted (see /readyz, `maasctl ps`)
        render.message(f"warning: could not load {problem}; another version serves in its place")
    refs = ", ".join(launch.refs)
    if json_out:
        ray = {"engine": rec.engine, "address": rec.address, "app": rec.app} if rec.engine == "ray" else {}
        render.emit_json({"url": rec.url, "pid": rec.pid, "models": models, "id": rec.id, "log": rec.log,
                          "grpc": rec.grpc, "workers": rec.workers, **ray})
    else:
        print(rec.url)
        render.message(f"server {rec.id} (pid {rec.pid}{f', {rec.workers} workers' if rec.workers > 1 else ''}) "
                       f"serving {refs}; log: {rec.log}; stop it with: maasctl stop {rec.id}")


def _tfserving(store: ModelStore, parsed: list[ModelRef], refs: list[str], models: list[str], *, host: str,
               port: int, batch_size: int, batch_timeout_ms: float, server_id: str | None, json_out: bool) -> None:
    from maasctl.serving.foreground import tfserving_here

    def announce(url: str, _grpc: str | None) -> None:
        if json_out:
            render.emit_json({"url": url, "pid": os.getpid(), "models": models, "id": server_id})
        else:
            print(url)
        sys.stdout.flush()

    if tfserving_here(store, parsed, refs, models, host=host, port=port, batch_size=batch_size,
                      batch_timeout_ms=batch_timeout_ms, server_id=server_id, announce=announce):
        raise typer.Exit(1)


def ps(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List detached servers and Ray Serve apps of this store.

    Example: maasctl ps --json
    """
    from maasctl.serving import records

    recs = records.list_servers(state(ctx).store)
    if json_out:
        render.emit_json([r.to_json() for r in recs])
        return
    if not recs:
        render.message("no running servers (start one with: maasctl serve NAME --detach)")
        return
    render.table(["id", "pid", "url", "grpc", "workers", "models", "uptime"],
                 [(r.id, r.pid or f"ray:{r.app}", r.url, r.grpc or "-", r.workers, ", ".join(r.refs or r.models), _duration(r.uptime))
                  for r in recs])


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def stop(
    ctx: typer.Context,
    server_id: Annotated[str | None, typer.Argument(metavar="ID", help="Server id (or a unique prefix) from "
                                                    "`maasctl ps`.",
                                                       autocompletion=complete_server)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every running server of this store.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait before killing.")] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Stop detached servers gracefully.

    SIGTERM: in-flight requests finish; a server still running after --timeout is killed. A Ray Serve
    application in a cluster is deleted through Ray (its replicas drain).

    Example: maasctl stop 3f2a9c1d
    """
    from maasctl.serving import records

    store = state(ctx).store
    if all_ == (server_id is not None):
        raise InvalidInput("give a server id or --all (see: maasctl ps)")
    recs = records.list_servers(store) if server_id is None else [records.find_server(store, server_id)]
    stopped = []
    for rec in recs:
        graceful = records.stop_server(store, rec, timeout=timeout)
        stopped.append({"id": rec.id, "pid": rec.pid, "url": rec.url, "graceful": graceful})
        if not json_out:
            render.message(f"stopped {rec.id} (pid {rec.pid}, {rec.url})" + ("" if graceful else " (killed)"))
    if json_out:
        render.emit_json(stopped)
    elif not recs:
        render.message("no running servers")


def attach(app: typer.Typer) -> None:
    """Register this module's commands on the root app."""
    app.command("serve")(serve)
    app.command("ps")(ps)
    app.command("stop")(stop)
