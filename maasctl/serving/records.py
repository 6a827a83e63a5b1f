"""Records of detached servers: `<store>/servers/<id>.json` (+ `<id>.log`), listing and stopping them.

A record is written by the server process itself once its socket is bound (so it knows its URL and pid)
and removed by it on a clean exit. Readers prune records whose process is gone (or is a zombie, or is a
different program that reused the pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maasctl.errors import InvalidInput, NotFound, OperationFailed

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore


@dataclass
class ServerRecord:
    id: str
    pid: int
    url: str
    models: list[str]
    refs: list[str]
    started_at: str
    log: str
    backend: str = "maasctl"
    grpc: str | None = None  # host:port of the gRPC API (serve --grpc-port), None when off
    workers: int = 1  # serve --workers N: processes sharing the port(s); `pid` is their supervisor's
    engine: str = "maasctl"  # "ray": a Ray Serve application (serve --engine ray)
    address: str | None = None  # engine ray: the Ray cluster's address
    app: str | None = None  # engine ray: the Serve application's name
    path: Path | None = field(default=None, repr=False, compare=False)

    @property
    def uptime(self) -> float:
        try:
            started = datetime.strptime(self.started_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return 0.0
        return max(0.0, (datetime.now(timezone.utc) - started).total_seconds())

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("path")
        doc["uptime_seconds"] = round(self.uptime)
        return doc


def new_id() -> str:
    return uuid.uuid4().hex[:8]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_path(store: ModelStore, server_id: str) -> Path:
    return Path(store.servers_dir) / f"{server_id}.json"


def log_path(store: ModelStore, server_id: str) -> Path:
    return Path(store.servers_dir) / f"{server_id}.log"


def write_record(store: ModelStore, server_id: str, *, url: str, models: list[str], refs: list[str],
                 backend: str = "maasctl", pid: int | None = None, grpc: str | None = None,
                 workers: int = 1, engine: str = "maasctl", address: str | None = None,
                 app: str | None = None) -> ServerRecord:
    """Atomically write this process's record (called by the server once bound). A Ray Serve application
    deployed into an existing cluster has no process of ours: pid 0, and `address` + `app` name it."""
    rec = ServerRecord(server_id, os.getpid() if pid is None else pid, url, models, refs, _now(),
                       str(log_path(store, server_id)), backend, grpc, workers, engine, address, app)
    path = record_path(store, server_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    doc = rec.to_json()
    doc.pop("uptime_seconds")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    rec.path = path
    return rec


def remove_record(store: ModelStore, server_id: str, pid: int | None = None) -> None:
    """Remove a record (only if it is still ours when `pid` is given)."""
    path = record_path(store, server_id)
    if pid is not None:
        rec = _read(path)
        if rec is not None and rec.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def published(store: Any, server_id: str | None, *, url: str, models: list[str], refs: list[str],
              backend: str = "maasctl", grpc: str | None = None, engine: str = "maasctl",
              address: str | None = None, app: str | None = None) -> Iterator[ServerRecord | None]:
    """This process's record, for `ps` and `stop`, while the body runs (serving); removed on the way out,
    also on errors and signals. With no `server_id` (a foreground server nobody detached) there is none."""
    if server_id is None:
        yield None
        return
    rec = write_record(store, server_id, url=url, models=models, refs=refs, backend=backend, grpc=grpc,
                       engine=engine, address=address, app=app)
    try:
        yield rec
    finally:
        remove_record(store, server_id, pid=rec.pid)


def _read(path: Path) -> ServerRecord | None:
    try:
        doc = json.loads(path.read_text())
        return ServerRecord(id=doc["id"], pid=int(doc["pid"]), url=doc["url"], models=list(doc["models"]),
                            refs=list(doc.get("refs", [])), started_at=doc.get("started_at", ""),
                            log=doc.get("log", ""), backend=doc.get("backend", "maasctl"),
                            grpc=doc.get("grpc"), workers=int(doc.get("workers", 1)),
                            engine=doc.get("engine", "maasctl"), address=doc.get("address"), app=doc.get("app"),
                            path=path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """True when pid is a live (non-zombie) process that looks like a maasctl server."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":
                return False
            cmdline = (proc / "cmdline").read_bytes()
            if b"maasctl" not in cmdline and b"tensorflow_model_server" not in cmdline:
                return False  # the pid was reused by another program
        except (OSError, ValueError, IndexError):
            return False
    return True


def list_servers(store: ModelStore, *, prune: bool = True) -> list[ServerRecord]:
    """Live detached servers of this store, oldest first; records of dead ones are removed (unless not `prune`:
    read-only viewers such as `maasctl ui` leave that to `ps`)."""
    d = Path(store.servers_dir)
    if not d.is_dir():
        return []
    out = []
    for path in sorted(d.glob("*.json")):
        rec = _read(path)
        if rec is None:
            continue
        if (rec.pid == 0 and rec.engine == "ray" and _ray_app_alive(rec)) or (rec.pid and pid_alive(rec.pid)):
            out.append(rec)
        elif prune:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return sorted(out, key=lambda r: r.started_at)


def _ray_app_alive(rec: ServerRecord) -> bool:
    """A Ray Serve application (no local process): gone only when Ray's proxy refuses the connection or no
    longer routes to it (404 on /healthz); a slow or unreachable cluster keeps its record."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(rec.url + "/healthz", timeout=2):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    except urllib.error.URLError as exc:  # a refused connection arrives wrapped in one
        return not isinstance(exc.reason, ConnectionRefusedError)
    except OSError:
        return True


def stopped_server_logs(store: ModelStore, min_age_s: float = 300.0, now: float | None = None) -> list[Path]:
    """Logs in servers/ of servers that are not running (stopped, crashed, or a failed `serve --detach`).

    A log younger than `min_age_s` is left alone: a detached server writes its record only once it listens,
    so a starting server's log has no record yet."""
    d = Path(store.servers_dir)
    if not d.is_dir():
        return []
    live = {r.id for r in list_servers(store)}
    now = time.time() if now is None else now
    out = []
    for p in sorted(d.glob("*.log*")):  # <id>.log and its rotated <id>.log.1 ... <id>.log.N
        server_id, _, suffix = p.name.partition(".log")
        if suffix and not (suffix[:1] == "." and suffix[1:].isdigit()):
            continue
        with contextlib.suppress(FileNotFoundError):
            if server_id not in live and now - p.stat().st_mtime >= min_age_s:
                out.append(p)
    return out


def find_server(store: ModelStore, server_id: str) -> ServerRecord:
    servers = list_servers(store)
    matches = [r for r in servers if r.id == server_id] or [r for r in servers if r.id.startswith(server_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        have = ", ".join(r.id for r in servers) or "none running"
        raise NotFound(f"no running server '{server_id}' (servers: {have}). See: maasctl ps")
    ids = ", ".join(r.id for r in matches)
    raise InvalidInput(f"'{server_id}' matches several servers ({ids}); give more of the id")


def stop_server(store: ModelStore, rec: ServerRecord, timeout: float = 30.0) -> bool:
    """SIGTERM (graceful: in-flight requests finish), wait, SIGKILL after `timeout`. True if it stopped gracefully.
    A Ray Serve application in an existing cluster is deleted through Ray (its replicas drain gracefully)."""
    if rec.pid == 0 and rec.engine == "ray" and rec.address and rec.app:
        from maasctl.serving import ray_engine

        ray_engine.require_ray()
        ray_engine.undeploy(rec.address, rec.app)
        remove_record(store, rec.id)
        return True
    graceful = True
    try:
        os.kill(rec.pid, signal.SIGTERM)
    except ProcessLookupError:
        remove_record(store, rec.id)
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(rec.pid):
        if time.monotonic() > deadline:
            graceful = False
            _kill_group(rec.pid)
            time.sleep(0.2)
            break
        _reap(rec.pid)
        time.sleep(0.05)
    remove_record(store, rec.id)
    return graceful


def _kill_group(pid: int) -> None:
    """SIGKILL a detached server and its children: it leads its own session and process group (the
    tfserving backend's tensorflow_model_server would otherwise be orphaned, still holding the port)."""
    try:
        if os.getpgid(pid) == pid and pid != os.getpgid(0):
            os.killpg(pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def spawn_detached(store: ModelStore, server_id: str, args: list[str], *, token: str | None = None,
                   timeout: float = 120.0, ready_paths: list[str] | None = None,
                   probe_token: str | None = None, tls_cert: Path | None = None,
                   failed: list[str] | None = None) -> ServerRecord:
    """Start `python -m maasctl ARGS` in its own session with its log under the store; wait until it is
    ready (its record exists and every `ready_paths` route answers 200: /readyz for maasctl's server,
    the status routes for TF Serving, which has no readiness route). On failure: OperationFailed with the
    log's tail. The server is stopped and its record removed on any failure, Ctrl-C included.
    `failed` receives the versions a ready server could not load (each ref still has one that serves)."""
    log = log_path(store, server_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MAASCTL_TOKEN", None)
    if token:
        env["MAASCTL_TOKEN"] = token  # via the environment, not argv: argv is visible to every local user
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", store.location, *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    try:
        return _wait_ready(store, server_id, proc, log, token=probe_token or token, timeout=timeout,
                           ready_paths=ready_paths, tls_cert=tls_cert, failed_out=failed)
    except BaseException:  # Ctrl-C or any error while waiting: do not leave a server nobody asked to keep
        _terminate(proc)
        remove_record(store, server_id)
        raise


def _wait_ready(store: ModelStore, server_id: str, proc: subprocess.Popen, log: Path, *, token: str | None,
                timeout: float, ready_paths: list[str] | None, tls_cert: Path | None = None,
                failed_out: list[str] | None = None) -> ServerRecord:
    import urllib.error
    import urllib.request

    # the server is on this machine: never through an http_proxy from the environment
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if tls_cert is not None:  # over TLS, trusting exactly the server's own certificate
        from maasctl.serving.tls import probe_context

        handlers.append(urllib.request.HTTPSHandler(context=probe_context(tls_cert)))
    opener = urllib.request.build_opener(*handlers)
    deadline = time.monotonic() + timeout
    path = record_path(store, server_id)
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    while True:
        code = proc.poll()
        if code is not None:
            raise OperationFailed(f"the server exited with code {code} before it was ready; log {log}:\n"
                                  + tail(log))
        rec = _read(path)
        if rec is not None:
            failed: list[str] = []
            try:
                for route in ready_paths or ["/readyz"]:
                    req = urllib.request.Request(rec.url + route, headers=headers)
                    with opener.open(req, timeout=2) as resp:
                        body = resp.read()
                        if resp.status != 200 or (route != "/readyz" and b"AVAILABLE" not in body):
                            break
                        if route == "/readyz" and failed_out is not None:
                            with contextlib.suppress(ValueError, AttributeError):
                                failed_out.extend(str(f) for f in json.loads(body).get("failed") or [])
                else:
                    return rec
            except urllib.error.HTTPError as exc:
                with contextlib.suppress(ValueError, OSError, AttributeError):
                    doc = json.loads(exc.read() or b"{}")
                    # give up on a failed version once nothing else is loading: another may yet serve its ref
                    failed = (doc.get("failed") or []) if doc.get("settled", True) else []
                if exc.code in (401, 403):
                    failed = [f"the server refused the readiness check ({exc.code}): token mismatch"]
            except (urllib.error.URLError, OSError):
                pass
            if failed:
                raise OperationFailed(f"the server could not load {'; '.join(failed)} (stopped it); log {log}:\n"
                                      + tail(log))
        if time.monotonic() > deadline:
            raise OperationFailed(f"the server was not ready after {timeout:.0f} s (stopped it); log {log}:\n"
                                  + tail(log))
        time.sleep(0.05)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited after 15 s (or if this wait is interrupted)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except BaseException:  # a second Ctrl-C while waiting: do not wait politely any more
        proc.kill()
        proc.wait(5)
        raise
