"""`maasctl train CONFIG --workers N`: N local `maasctl train` processes on loopback ports, one cluster.

Each child gets a generated TF_CONFIG (worker 0 is the chief) and MAASCTL_TRAIN_EVENTS=1, which makes it report
progress as `@maasctl {json}` lines on stderr; the launcher turns them into one view through callbacks. The
children run in their own session, so a terminal's Ctrl-C reaches only the launcher, which stops them all.
When one child fails the others are stopped at once (TF would notice too, but only after its health check).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from maasctl.errors import InvalidInput, NotFound, OperationFailed
from maasctl.training.distribute import free_ports, local_tf_configs

EVENT_PREFIX = "@maasctl "
EVENTS_ENV = "MAASCTL_TRAIN_EVENTS"


def role_of(index: int) -> str:
    return "chief" if index == 0 else f"worker {index}"


@dataclass
class Child:
    index: int
    proc: subprocess.Popen[str]
    stdout: str = ""
    lines: list[str] = field(default_factory=list)  # stderr lines that were not events
    last_epoch: int = 0

    @property
    def role(self) -> str:
        return role_of(self.index)


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def _stop(children: list[Child], grace: float = 3.0) -> None:
    for c in children:
        if c.proc.poll() is None:
            c.proc.terminate()
    deadline = time.monotonic() + grace
    for c in children:
        try:
            c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def _pump(child: Child, on_event: Callable[[int, dict[str, Any]], None]) -> None:
    assert child.proc.stderr is not None
    for line in child.proc.stderr:
        line = line.rstrip("\n")
        if line.startswith(EVENT_PREFIX):
            try:
                event = json.loads(line[len(EVENT_PREFIX):])
            except json.JSONDecodeError:
                continue
            if event.get("event") == "epoch_start":
                child.last_epoch = int(event.get("epoch", 0))
            on_event(child.index, event)
        elif line.strip():
            child.lines.append(line)
            on_event(child.index, {"event": "line", "text": line})


def run_local_cluster(n: int, train_args: Sequence[str], *, env: dict[str, str] | None = None,
                      on_event: Callable[[int, dict[str, Any]], None] = lambda i, e: None,
                      poll_s: float = 0.1) -> str:
    """Run `maasctl train TRAIN_ARGS` as an n-worker cluster; return the chief's stdout.

    Raises OperationFailed naming the first process that failed (the others are stopped); KeyboardInterrupt
    stops every process and propagates.
    """
    ports = free_ports(n)
    base = {**os.environ, **(env or {}), EVENTS_ENV: "1"}
    base.pop("MAASCTL_DEBUG", None)
    children: list[Child] = []
    threads: list[threading.Thread] = []
    try:
        for i, tf_config in enumerate(local_tf_configs(n, ports)):
            proc = subprocess.Popen([sys.executable, "-m", "maasctl", "train", *train_args],
                                    env={**base, "TF_CONFIG": tf_config}, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            child = Child(i, proc)
            children.append(child)
            on_event(i, {"event": "started", "pid": proc.pid, "address": f"127.0.0.1:{ports[i]}"})
            t = threading.Thread(target=_pump, args=(child, on_event), daemon=True)
            t.start()
            threads.append(t)
        failed: Child | None = None
        while failed is None and any(c.proc.poll() is None for c in children):
            failed = next((c for c in children if c.proc.poll() not in (None, 0)), None)
            if failed is None:
                time.sleep(poll_s)
        failed = failed or next((c for c in children if c.proc.returncode != 0), None)
        if failed is not None:
            _stop(children)
    except BaseException:
        _stop(children)
        raise
    for t in threads:
        t.join(timeout=5)
    for c in children:
        assert c.proc.stdout is not None
        c.stdout = c.proc.stdout.read()
        c.proc.stdout.close()
    if failed is not None:
        errors = [ln for ln in failed.lines if ln.startswith("Error:")]
        why = f": {errors[-1][len('Error: '):].removesuffix('; no run committed')}" if errors else ""
        epoch = f" in epoch {failed.last_epoch}" if failed.last_epoch else ""
        # the child's own exit status where it means bad input (2) or not found (3); else "failed" (1)
        kind = {2: InvalidInput, 3: NotFound}.get(failed.proc.returncode, OperationFailed)
        raise kind(f"{failed.role} (pid {failed.proc.pid}) {_exit_text(failed.proc.returncode)}{epoch}"
                   f"{why}; stopped the other workers; no run committed")
    return children[0].stdout


def emit_event(event: dict[str, Any]) -> None:
    """A child's progress line for the launcher (stderr; stdout stays data)."""
    sys.stderr.write(EVENT_PREFIX + json.dumps(event) + "\n")
    sys.stderr.flush()
