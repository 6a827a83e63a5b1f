"""`serve --workers N`: N server processes on one port (SO_REUSEPORT), supervised by the process the user started.

One Python process cannot use a machine's cores (the GIL; TF Serving's C++ server uses all of them), so the
supervisor starts N ordinary `maasctl serve` processes ("workers") with the same options and concrete ports.
Each binds the REST (and gRPC) port itself with SO_REUSEPORT: the kernel spreads new connections over the
workers' listening sockets, and a worker that dies leaves the group at once, so new connections go to the
others. Each worker has its own Manager following the same refs (hot reload happens in every worker).

The supervisor imports no TensorFlow and holds no model. It reserves the ports first (bound with
SO_REUSEPORT, never listening, so a port in use is one line before any worker starts and `--port 0` has a
number to hand on), waits until every worker has settled (ready, or failed to load: /readyz then says why)
before it writes the server record, restarts a worker that exits on its own (and gives up, exit 1, when
workers exit MAX_CRASHES times within CRASH_WINDOW_S), and forwards SIGTERM/SIGINT so each worker drains
its in-flight requests. Workers run in their own process groups (a terminal's Ctrl-C reaches only the
supervisor, which forwards one SIGTERM) and die with it (PR_SET_PDEATHSIG) if it is killed.

Metrics: each worker writes its counters and histograms (`Metrics.state()`) to `<dir>/<pid>.json` every
REPORT_INTERVAL_S when they changed, and at exit; a scrape of any worker adds the other workers' files to
its own live values. Plain files rather than prometheus_client's multiprocess mode: the hand-written metrics
stay the one definition (no second metrics library, no env var that must be set before an import), and a
dead worker's file stays, so totals never go backwards when a worker is restarted. The cost: another
worker's last REPORT_INTERVAL_S of counts may be missing from a scrape (Prometheus scrapes every 15 s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maasctl.errors import InvalidInput, OperationFailed

if TYPE_CHECKING:
    from maasctl.serving.app import ServingApp
    from maasctl.serving.launch import DetachedServe
    from maasctl.serving.tls import TlsFiles
    from maasctl.store.base import ModelStore

log = logging.getLogger("maasctl.serve")

WORKER_HEADER = b"x-maasctl-worker"
REPORT_INTERVAL_S = 0.2
MAX_CRASHES = 5
CRASH_WINDOW_S = 60.0


def check_supported(workers: int) -> None:
    if workers < 1:
        raise InvalidInput(f"--workers must be at least 1 (got {workers})")
    if workers > 1 and (not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux")):
        raise InvalidInput("--workers above 1 needs Linux (SO_REUSEPORT spreads connections over the workers)")


# -- in each worker ---------------------------------------------------------------------------------------
class Reporter:
    """Publishes this worker's readiness and metrics to `<dir>/<pid>.json`; reads the other workers' files."""

    def __init__(self, app: ServingApp, directory: Path) -> None:
        self.app, self.dir, self.pid = app, Path(directory), os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-report", daemon=True)
        self._last = ""
        self.listening = False

    def start(self) -> Reporter:
        self.app.response_headers.append((WORKER_HEADER, str(self.pid).encode()))
        self.app.metrics.peers = self.peers
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.write()  # the last counts, after the requests in flight were answered

    def _loop(self) -> None:
        while not self._stop.wait(REPORT_INTERVAL_S):
            try:
                self.write()
            except Exception:  # a full disk must not end the worker; the next round tries again
                log.exception("worker %s: cannot write %s", self.pid, self.dir)

    def write(self) -> None:
        ready, _, failed = self.app.manager.readiness()
        doc = json.dumps({"pid": self.pid, "ready": ready, "settled": self.listening and bool(ready or failed),
                          "metrics": self.app.metrics.state()})
        if doc == self._last:
            return
        path = self.dir / f"{self.pid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(doc)
        os.replace(tmp, path)
        self._last = doc

    def peers(self) -> list[dict]:
        """The other workers' metrics (live and exited ones: counts stay in the totals)."""
        out = []
        for doc in read_reports(self.dir):
            if doc.get("pid") != self.pid:
                out.append(doc.get("metrics") or {})
        return out


def become_worker(app: ServingApp, sock: socket.socket, directory: Path) -> Reporter:
    """Make this serve process a worker: load the models first and only then listen on `sock` (bound with
    SO_REUSEPORT, not yet listening), so that a starting or restarted worker is given no connections it
    would keep waiting or answer 503; report readiness and metrics to `directory` meanwhile and after."""
    reporter = Reporter(app, directory).start()
    app.start()
    while True:
        ready, _, failed = app.manager.readiness()
        # every aspired version loaded or failed (ready alone comes as soon as each ref has some version, which
        # would let this worker answer `NAME` with an older version than its peers); failed loads: serve anyway,
        # /readyz says why (as a single server does)
        if app.manager.settled() and (ready or failed):
            break
        time.sleep(0.02)
    sock.listen(2048)
    sock.setblocking(False)
    reporter.listening = True
    reporter.write()
    return reporter


def read_reports(directory: Path) -> list[dict]:
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(path.read_text())
            if isinstance(doc, dict):
                out.append(doc)
    return out


# -- the supervisor ---------------------------------------------------------------------------------------
def _die_with(parent: int) -> Callable[[], None]:
    """preexec_fn: the worker gets SIGKILL when the supervisor dies (even by SIGKILL), so none is orphaned
    holding the port."""
    def set_parent_death_signal() -> None:
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


@dataclass
class _Worker:
    proc: subprocess.Popen
    started: float


class Supervisor:
    """Starts `n` workers running `argv` and keeps them running until SIGTERM/SIGINT (see the module doc)."""

    def __init__(self, argv: list[str], n: int, directory: Path, *, env: dict[str, str] | None = None,
                 command: list[str] | None = None, max_crashes: int = MAX_CRASHES,
                 restart_delay: float = 0.5) -> None:
        self.argv, self.n, self.dir = argv, n, Path(directory)
        self.command = command or [sys.executable, "-m", "maasctl"]
        self.max_crashes, self.restart_delay = max_crashes, restart_delay
        self.env = env if env is not None else dict(os.environ)
        self.workers: list[_Worker | None] = [None] * n
        self.crashes: list[float] = []
        self._signals = 0
        self._forwarded = 0

    def _spawn(self, slot: int) -> None:
        proc = subprocess.Popen([*self.command, *self.argv], stdin=subprocess.DEVNULL,
                                stdout=sys.stderr.fileno(), env=self.env, close_fds=True, process_group=0,
                                preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509 - the supervisor runs no threads
        self.workers[slot] = _Worker(proc, time.monotonic())
        log.info("worker %d started (pid %d)", slot, proc.pid)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w is not None and w.proc.poll() is None]

    def _settled(self) -> bool:
        settled = {d.get("pid") for d in read_reports(self.dir) if d.get("settled")}
        return all(w is not None and w.proc.pid in settled for w in self.workers)

    def run(self, on_ready: Callable[[], None]) -> int:
        """Serve until a signal (0 once the workers drained) or until workers keep crashing (1).
        `on_ready` is called once every first worker has settled (the supervisor then publishes the server)."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.n):
                self._spawn(slot)
            return self._loop(on_ready)
        finally:
            self._drain()
            for s, handler in old.items():
                signal.signal(s, handler)

    def _loop(self, on_ready: Callable[[], None]) -> int:
        ready = False
        restart_at: dict[int, float] = {}
        while not self._signals:
            now = time.monotonic()
            for slot, w in enumerate(self.workers):
                if w is not None and w.proc.poll() is not None:
                    code = w.proc.returncode
                    self.workers[slot] = None
                    if not ready:
                        log.error("worker %d (pid %d) exited with code %s while starting: stopping", slot,
                                  w.proc.pid, code)
                        return 1
                    self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S] + [now]
                    if len(self.crashes) >= self.max_crashes:
                        log.error("workers exited %d times within %.0f s (last: pid %d, code %s): stopping",
                                  len(self.crashes), CRASH_WINDOW_S, w.proc.pid, code)
                        return 1
                    restart_at[slot] = now + self.restart_delay * len(self.crashes)  # slower as crashes pile up
                    log.warning("worker %d (pid %d) exited with code %s; restarting it", slot, w.proc.pid, code)
            for slot, when in list(restart_at.items()):
                if now >= when:
                    del restart_at[slot]
                    self._spawn(slot)
            if not ready and self._settled():
                ready = True
                on_ready()
            time.sleep(0.05)
        return 0

    def _drain(self) -> None:
        """SIGTERM to every worker (again for each further signal: uvicorn then stops waiting), wait for all."""
        while True:
            live = [w for w in self.workers if w is not None and w.proc.poll() is None]
            if not live:
                return
            wanted = max(1, self._signals)
            if self._forwarded < wanted:
                self._forwarded = wanted
                for w in live:
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)


def serve(store: ModelStore, launch: DetachedServe, *, workers: int, tls: TlsFiles | None, token: str | None,
          server_id: str | None, models: list[str], refs: list[str],
          announce: Callable[[str, str | None], None]) -> int:
    """Reserve the ports, run `workers` copies of `launch` (a foreground serve) under a Supervisor, publish
    the server (record, `announce(url, grpc address)`) once they settled. Returns the exit code."""
    from maasctl.serving import records
    from maasctl.serving.server import bind, url_of

    check_supported(workers)
    sock = bind(launch.host, launch.port, reuse_port=True, listen=False)
    grpc_sock = None
    try:
        url = url_of(sock, tls)
        port = sock.getsockname()[1]
        grpc_address = None
        grpc_port = launch.grpc_port
        if grpc_port is not None:
            grpc_sock = bind(launch.host, grpc_port, reuse_port=True, listen=False, option="--grpc-port")
            grpc_port = grpc_sock.getsockname()[1]
            grpc_address = f"[{launch.host}]:{grpc_port}" if ":" in launch.host else f"{launch.host}:{grpc_port}"
        directory = Path(tempfile.mkdtemp(prefix="maasctl-workers-"))
        worker = replace(launch, server_id=None, port=port, grpc_port=grpc_port, workers=1, worker_dir=directory)
        env = {k: v for k, v in os.environ.items() if k != "MAASCTL_TOKEN"}
        if token:
            env["MAASCTL_TOKEN"] = token  # the environment, never argv
        supervisor = Supervisor(["--store", store.location, *worker.to_argv()], workers, directory, env=env)
        published: list[Any] = []

        def on_ready() -> None:
            if server_id is not None:
                published.append(records.write_record(store, server_id, url=url, models=models, refs=refs,
                                                      grpc=grpc_address, workers=workers))
            announce(url, grpc_address)
            log.info("%d workers serving %s at %s (pids %s)", workers, ", ".join(refs), url,
                     ", ".join(map(str, supervisor.pids())))

        try:
            code = supervisor.run(on_ready)
        finally:
            if published:
                records.remove_record(store, server_id or "", pid=os.getpid())
            shutil.rmtree(directory, ignore_errors=True)
        if code:
            raise OperationFailed("the workers could not be kept running (see the log above)")
        return code
    finally:
        sock.close()
        if grpc_sock is not None:
            grpc_sock.close()
