"""`maasctl train --workers N`: the one progress view over N local workers, and the children's event reporter."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from maasctl.cli import render
from maasctl.training.launcher import emit_event, role_of


class EventReporter:
    """A child of `--workers`: progress as `@maasctl {json}` lines for the launcher's view."""

    wants_batches = True

    def __init__(self) -> None:
        self.last = 0.0

    def start(self, epochs: int, steps: int) -> None:
        emit_event({"event": "start", "epochs": epochs, "steps": steps})

    def epoch_start(self, epoch: int) -> None:
        emit_event({"event": "epoch_start", "epoch": epoch})

    def batch(self, step: int, logs: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self.last >= 0.1:  # at most 10 lines a second
            self.last = now
            emit_event({"event": "batch", "step": step, "logs": logs})

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        emit_event({"event": "epoch_end", "epoch": epoch, "logs": logs})

    def end(self) -> None:
        emit_event({"event": "end"})


class ClusterView:
    """The chief's progress (a bar on a terminal, epoch lines otherwise) plus each worker's state."""

    def __init__(self, n: int, tty: bool | None = None) -> None:
        self.n = n
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.lock = threading.Lock()
        self.epochs = 0
        self.steps = 0
        self.states = {i: "starting" for i in range(n)}
        self.progress: Any = None
        self.tasks: dict[int, Any] = {}
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[state]}"),
                                     console=Console(stderr=True), refresh_per_second=8, transient=True)
            for i in range(n):
                self.tasks[i] = self.progress.add_task(role_of(i), total=None, state="starting")
            self.progress.start()

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            render.message(text)

    def _state(self, i: int, state: str, **fields: Any) -> None:
        self.states[i] = state
        if self.progress is not None:
            self.progress.update(self.tasks[i], state=state, **fields)

    def __call__(self, i: int, event: dict[str, Any]) -> None:
        with self.lock:
            self._handle(i, event)

    def _handle(self, i: int, event: dict[str, Any]) -> None:
        kind, role = event.get("event"), role_of(i)
        if kind == "started":
            self._state(i, f"starting (pid {event['pid']}, {event['address']})")
            if not self.tty:
                self._print(f"{role}: started (pid {event['pid']}, {event['address']})")
        elif kind == "start":
            self.epochs, self.steps = int(event["epochs"]), int(event["steps"])
            self._state(i, "training", total=self.steps)
        elif kind == "epoch_start":
            self._state(i, f"epoch {event['epoch']}/{self.epochs}", completed=0)
        elif kind == "batch":
            self._state(i, f"epoch {self.states[i].split()[1] if self.states[i].startswith('epoch') else '?'}"
                        f"  {render.metrics_line(event.get('logs') or {})}", completed=int(event["step"]))
        elif kind == "epoch_end":
            self._state(i, f"epoch {event['epoch']}/{self.epochs} done", completed=self.steps)
            if i == 0:
                width = len(str(self.epochs))
                self._print(f"chief: epoch {event['epoch']:>{width}}/{self.epochs}  {render.metrics_line(event['logs'])}")
        elif kind == "end":
            self._state(i, "saving" if i == 0 else "finishing")
        elif kind == "line":
            self._print(str(event["text"]))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def train_on_workers(ctx: Any, cfg: Any, n: int, *, config: Any, set_: list[str], cluster_timeout: float,
                     register: bool, name: str | None, alias: list[str], json_out: bool) -> None:
    """Run the config as an n-worker cluster of local processes; print the chief's output (run id or JSON)."""
    from maasctl.cli._options import state
    from maasctl.errors import InvalidInput
    from maasctl.training.launcher import run_local_cluster

    mode = cfg.train["distribute"]
    if mode not in ("auto", "multi_worker"):
        raise InvalidInput(f"{cfg.path}: train.distribute: --workers needs \"auto\" or \"multi_worker\", "
                           f"got \"{mode}\"")
    args = [str(config), *[a for s in set_ for a in ("--set", s)], "--cluster-timeout", f"{cluster_timeout:g}"]
    args += ["--register"] if register else []
    args += ["--name", name] if name else []
    args += [a for x in alias for a in ("--alias", x)]
    args += ["--json"] if json_out else []
    env = {}
    store_path = state(ctx).store_path
    if store_path is not None:
        env["MAASCTL_HOME"] = str(store_path)
    render.message(f"starting {n} local workers (chief = worker 0)…")
    view = ClusterView(n)
    try:
        out = run_local_cluster(n, args, env=env, on_event=view)
    finally:
        view.close()
    sys.stdout.write(out)
