"""Prometheus text exposition, written by hand (a counter, a histogram and a gauge need no dependency).

Updates come from the event loop and from batch worker threads, so each metric takes a lock; the cost
is a dictionary lookup and a bisect per observation.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(str(v))}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


class Counter:
    def __init__(self, name: str, help: str, labelnames: tuple[str, ...]) -> None:
        self.name, self.help, self.labelnames = name, help, labelnames
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labelvalues: str, amount: float = 1) -> None:
        with self._lock:
            self._values[labelvalues] = self._values.get(labelvalues, 0) + amount

    def value(self, *labelvalues: str) -> float:
        return self._values.get(labelvalues, 0)

    def state(self) -> list[list]:
        """[[label values, value], ...]: JSON for another worker to add (`absorb`)."""
        with self._lock:
            return [[list(k), v] for k, v in self._values.items()]

    def absorb(self, state: list[list]) -> None:
        for labelvalues, v in state:
            self.inc(*labelvalues, amount=v)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for lv, v in items:
            yield f"{self.name}{_labels(tuple(zip(self.labelnames, lv)))} {_num(v)}"


class Histogram:
    def __init__(self, name: str, help: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.labelnames, self.buckets = name, help, labelnames, buckets
        self._data: dict[tuple[str, ...], list] = {}  # labels -> [bucket counts..., +Inf count, sum]
        self._lock = threading.Lock()

    def observe(self, value: float, *labelvalues: str) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            row = self._data.get(labelvalues)
            if row is None:
                row = self._data[labelvalues] = [0] * (len(self.buckets) + 1) + [0.0]
            row[i] += 1
            row[-1] += value

    def state(self) -> list[list]:
        with self._lock:
            return [[list(k), list(v)] for k, v in self._data.items()]

    def absorb(self, state: list[list]) -> None:
        with self._lock:
            for labelvalues, row in state:
                mine = self._data.setdefault(tuple(labelvalues), [0] * (len(self.buckets) + 1) + [0.0])
                if len(row) == len(mine):
                    for i, v in enumerate(row):
                        mine[i] += v

    def count(self, *labelvalues: str) -> int:
        row = self._data.get(labelvalues)
        return sum(row[:-1]) if row else 0

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        for lv, row in items:
            labels = tuple(zip(self.labelnames, lv))
            cumulative = 0
            for bound, n in zip(self.buckets, row):
                cumulative += n
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(labels, le)} {cumulative}"
            cumulative += row[len(self.buckets)]
            yield f"{self.name}_bucket{_labels(labels, 'le=' + chr(34) + '+Inf' + chr(34))} {cumulative}"
            yield f"{self.name}_sum{_labels(labels)} {_num(row[-1])}"
            yield f"{self.name}_count{_labels(labels)} {cumulative}"


class Metrics:
    """The server's metrics. `loaded` is called at scrape time: {model: number of AVAILABLE versions}.

    `serve --workers N`: each worker publishes `state()` (serving/workers.py) and `peers` returns the other
    workers' states, so any worker's scrape renders the sum over all of them (the `loaded` gauge stays the
    scraping worker's own: every worker follows the same refs)."""

    def __init__(self, loaded: Callable[[], dict[str, int]] | None = None) -> None:
        self.requests = Counter("maasctl_requests_total", "Requests by model, version, API and HTTP status.",
                                ("model", "version", "api", "code"))
        self.request_latency = Histogram("maasctl_request_latency_seconds",
                                         "Time from request start to response, by model and API.",
                                         ("model", "api"), LATENCY_BUCKETS)
        self.model_latency = Histogram("maasctl_model_call_seconds", "Duration of one model call (one batch).",
                                       ("model", "version"), LATENCY_BUCKETS)
        self.batch_size = Histogram("maasctl_batch_size_rows", "Rows per model call after dynamic batching.",
                                    ("model", "version"), BATCH_BUCKETS)
        self.loaded = loaded
        self.peers: Callable[[], list[dict]] | None = None

    def _all(self) -> tuple[Counter, Histogram, Histogram, Histogram]:
        return self.requests, self.request_latency, self.model_latency, self.batch_size

    def state(self) -> dict[str, list[list]]:
        """This process's counters and histograms as JSON (what a worker publishes for the others)."""
        return {m.name: m.state() for m in self._all()}

    def render(self) -> bytes:
        lines: list[str] = []
        metrics = self._all()
        if self.peers is not None:  # a worker of several: the sum over all of them
            total = Metrics()
            for state in [self.state(), *self.peers()]:
                for m in total._all():
                    m.absorb(state.get(m.name, []))
            metrics = total._all()
        for m in metrics:
            lines.extend(m.render())
        lines.append("# HELP maasctl_loaded_versions Versions of each model that are AVAILABLE.")
        lines.append("# TYPE maasctl_loaded_versions gauge")
        for model, n in sorted((self.loaded() if self.loaded else {}).items()):
            lines.append(f'maasctl_loaded_versions{{model="{_escape(model)}"}} {n}')
        return ("\n".join(lines) + "\n").encode()
