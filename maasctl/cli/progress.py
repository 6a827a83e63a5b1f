"""Progress bars on stderr that share a terminal with stdout without eating it.

A rich Live display redraws (and, when transient, erases) the lines it believes it owns; anything written to
the same terminal in between is overwritten. So, for `predict`:

- nothing is drawn for work that ends within MAASCTL_PROGRESS_AFTER seconds (default 1);
- when stdout is the same terminal, the bar is finished and cleared before the first byte of output
  (`guard(stdout)`), and not drawn again;
- a phase that ends is shown at 100 % before the next one starts or the bar stops.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar, TextIO

DEFAULT_AFTER = 1.0


def _after() -> float:
    try:
        return max(0.0, float(os.environ.get("MAASCTL_PROGRESS_AFTER", DEFAULT_AFTER)))
    except ValueError:
        return DEFAULT_AFTER


class RowsProgress:
    """`update(phase, rows, consumed)` for maasctl.predict.pipeline.run_predict; `stop()` when done."""

    LABELS: ClassVar[dict[str, str]] = {"check": "checking", "predict": "predicting"}

    def __init__(self, total: int, *, stream: TextIO | None = None, after: float | None = None) -> None:
        self.total = total or None
        self.stream = stream or sys.stderr
        self.after = _after() if after is None else after
        self._t0 = time.monotonic()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._last: dict[str, tuple[int, int]] = {}
        self._stopped = False

    def update(self, phase: str, rows: int, consumed: int) -> None:
        if self._stopped:
            return
        now = time.monotonic()
        if phase not in self._started:
            for other in self._started:  # the previous phase is over: show it complete
                self._complete(other)
            self._started[phase] = now
        self._last[phase] = (rows, consumed)
        if self._bar is None:
            if now - self._t0 < self.after:
                return
            self._start()
        for name in self._started:
            if name not in self._tasks:
                self._tasks[name] = self._bar.add_task(self.LABELS.get(name, name), total=self.total, rows="0",
                                                       rate="0")
        self._show(phase)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             TextColumn("{task.fields[rows]} rows"), TextColumn("{task.fields[rate]} rows/s"),
                             TimeRemainingColumn(), transient=True, redirect_stdout=False,
                             console=Console(file=self.stream))
        self._bar.start()

    def _show(self, phase: str, completed: int | None = None) -> None:
        if self._bar is None or phase not in self._tasks:
            return
        rows, consumed = self._last.get(phase, (0, 0))
        rate = rows / max(1e-6, time.monotonic() - self._started[phase])
        total = self.total
        if completed is not None:
            total = total or completed or 1
            consumed = total
        elif total is not None:
            consumed = min(consumed, total)
        self._bar.update(self._tasks[phase], completed=consumed, total=total, rows=f"{rows:,}",
                         rate=f"{rate:,.0f}")

    def _complete(self, phase: str) -> None:
        self._show(phase, completed=self.total or 1)

    def stop(self) -> None:
        """Show every phase at 100 %, then clear the bar (idempotent; no more drawing afterwards)."""
        if self._stopped:
            return
        self._stopped = True
        if self._bar is not None:
            for phase in self._started:
                self._complete(phase)
            self._bar.refresh()
            self._bar.stop()

    def guard(self, out: TextIO) -> TextIO:
        """`out`, which stops the bar before its first write when it shares the terminal with the bar."""
        same_terminal = _isatty(out) and _isatty(self.stream)
        return _BeforeFirstWrite(out, self.stop) if same_terminal else out  # type: ignore[return-value]  # duck-typed TextIO


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _BeforeFirstWrite:
    """A text stream that calls `before()` once, ahead of the first write (no `buffer`: text goes through us)."""

    def __init__(self, out: TextIO, before: Callable[[], None]) -> None:
        self._out = out
        self._before: Callable[[], None] | None = before

    def write(self, text: str) -> int:
        if self._before is not None and text:
            before, self._before = self._before, None
            before()
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return _isatty(self._out)

    def fileno(self) -> int:
        return self._out.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._out, "encoding", "utf-8")


class BytesProgress:
    """Transfer bars for push/pull: `phase(label, total_bytes)` gives a callback told how many more bytes went
    by (called from transfer threads). Nothing is drawn for a transfer that ends within
    MAASCTL_PROGRESS_AFTER seconds; `stop()` clears the bars before the command prints its result."""

    def __init__(self, *, stream: TextIO | None = None, after: float | None = None) -> None:
        import threading

        self.stream = stream or sys.stderr
        self.after = _after() if after is None else after
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._bar: Any = None
        self._phases: dict[str, list[Any]] = {}  # label -> [total, done, task id or None]
        self._stopped = False

    def phase(self, label: str, total: int) -> Callable[[int], None]:
        with self._lock:
            self._phases[label] = [total, 0, None]

        def tick(n: int) -> None:
            with self._lock:
                entry = self._phases[label]
                entry[1] += n
                if self._stopped:
                    return
                if self._bar is None:
                    if time.monotonic() - self._t0 < self.after:
                        return
                    self._start()
                self._show()

        return tick

    def _start(self) -> None:
        from rich import progress as rp
        from rich.console import Console

        self._bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
                                rp.TransferSpeedColumn(), rp.TimeRemainingColumn(), transient=True,
                                redirect_stdout=False, console=Console(file=self.stream))
        self._bar.start()

    def _show(self) -> None:
        for label, entry in self._phases.items():
            total, done, task = entry
            if task is None:
                entry[2] = task = self._bar.add_task(label, total=total or None)
            self._bar.update(task, completed=min(done, total) if total else done)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._bar is not None:
                self._show()
                self._bar.refresh()
                self._bar.stop()
