"""The Manager: loads and unloads servables to match the Source, one action at a time.

Availability first (TF Serving's availability-preserving policy): a new version is loaded and published
before an old one is unloaded, and while none of a model's aspired versions is available (the new one failed
to load) the highest loaded version keeps serving. Request code
reads `manager.snapshot` (an immutable object swapped by assignment) without locks and holds a servable
through `acquire()`/`release()`; unloading publishes a snapshot without the version, marks it closing,
then waits for its in-flight requests before freeing it. A request that picked the servable from an old
snapshot sees `closing` after acquiring and retries on the current snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from maasctl.errors import InvalidInput, MaasError, NotFound, Unavailable
from maasctl.refs import ModelRef
from maasctl.serving.batching import Batcher
from maasctl.serving.source import Aspired, StoreSource
from maasctl.tensors import DEFAULT_SIGNATURE

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore

log = logging.getLogger("maasctl.serve")

UNLOAD_DRAIN_S = 60  # how long an unload waits for in-flight requests on the version
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class VersionStatus:
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self, version: int) -> dict[str, Any]:
        return {"version": str(version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


class Servable:
    """One loaded version: the model, its signatures and metadata, and its batch queues."""

    def __init__(self, name: str, version: int, model: Any, meta: dict[str, Any], *,
                 batch_size: int, batch_timeout_s: float, on_batch: Callable[[str, int, int, float], None] | None):
        self.name = name
        self.version = version
        self.model = model
        self.signatures: dict[str, Any] = model.signatures
        self.meta = meta
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self._on_batch = on_batch
        self._batchers: dict[str, Batcher] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last in-flight request is released
        self.inflight = 0
        self.closing = False

    def acquire(self) -> bool:
        with self._lock:
            self.inflight += 1
        if self.closing:
            self.release()
            return False
        return True

    def release(self) -> None:
        with self._lock:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request holds this servable; False when `timeout` seconds passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: self.inflight == 0, timeout)

    def batcher(self, signature: str) -> Batcher:
        b = self._batchers.get(signature)
        if b is None:
            with self._lock:
                b = self._batchers.get(signature)
                if b is None:
                    model, sig = self.model, signature
                    on_batch = self._on_batch
                    name, version = self.name, self.version

                    def report(rows: int, seconds: float) -> None:
                        if on_batch is not None:
                            on_batch(name, version, rows, seconds)

                    b = Batcher(lambda inputs: model.predict(inputs, sig), max_rows=self.batch_size,
                                timeout_s=self.batch_timeout_s, name=f"{name}-{version}-{sig}", on_batch=report)
                    self._batchers[signature] = b
        return b

    def close(self) -> None:
        for b in list(self._batchers.values()):
            b.stop()
        self._batchers.clear()
        model, self.model = self.model, None
        close = getattr(model, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class Snapshot:
    servables: dict[tuple[str, int], Servable] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)


Loader = Callable[[str, int], tuple[Any, dict[str, Any]]]
"""`(name, version) -> (model, meta)`: resolve, digest-check and load one version. The serving layer does not
import TensorFlow: the CLI passes `maasctl.tf.servable.store_loader(store)`, tests may pass a fake."""


_WARMUP_VALUES = {"string": b"", "bool": False}


def _warm_up(model: Any, signature: str = DEFAULT_SIGNATURE) -> None:
    """One call with a row of zeros before the version is published, so the first request does not pay
    for TensorFlow's first-call setup. Skipped when the input shapes are not fully known; errors ignored."""
    import numpy as np

    sig = model.signatures.get(signature)
    if not sig:
        return
    inputs = {}
    for name, spec in sig["inputs"].items():
        shape = spec["shape"]
        if not shape or shape[0] != -1 or any(d < 0 for d in shape[1:]):
            return
        dtype = object if spec["dtype"] == "string" else spec["dtype"]
        inputs[name] = np.full([1, *shape[1:]], _WARMUP_VALUES.get(spec["dtype"], 0), dtype=dtype)
    try:
        model.predict(inputs, signature)
    except Exception as exc:  # noqa: BLE001 - a model may reject zeros; the first real request will tell
        log.debug("warm-up call failed: %s", exc)


MAX_ENDED_STATUSES = 16  # unloaded or failed versions remembered per model for the status routes
MAX_FAILED = 16  # failed loads remembered per model (for the retry schedule); older ones are forgotten
RETRY_S = 30.0  # a failed load is retried after this, doubling per failure up to RETRY_MAX_S ...
RETRY_MAX_S = 600.0  # ... and at once when the model's aspired versions or labels change (someone acted)


@dataclass
class _Failure:
    at: float  # time.monotonic() of the last failed attempt
    attempts: int
    want: Aspired  # what the Source asked for when it failed

    def due(self, now: float, want: Aspired, retry_s: float) -> bool:
        return want != self.want or now - self.at >= min(RETRY_MAX_S, retry_s * 2 ** (self.attempts - 1))


class Manager:
    def __init__(self, store: ModelStore, refs: list[ModelRef], *, batch_size: int = 64, batch_timeout_s: float = 0.0,
                 poll_interval: float = 0.5, on_batch: Callable[[str, int, int, float], None] | None = None,
                 loader: Loader, source: Any = None, retry_s: float = RETRY_S) -> None:
        self.refs = list(refs)
        self.names = sorted({r.name for r in refs})
        self.source = source or StoreSource(store, self.refs)
        self.loader = loader
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.poll_interval = poll_interval
        self.on_batch = on_batch
        self.snapshot = Snapshot()
        self._status: dict[str, dict[int, VersionStatus]] = {n: {} for n in self.names}
        self._status_lock = threading.Lock()
        self.retry_s = retry_s
        self._failed: dict[str, dict[int, _Failure]] = {n: {} for n in self.names}
        self._aspired: dict[str, Aspired] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maasctl-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        snap = self.snapshot
        self.snapshot = Snapshot()
        for s in snap.servables.values():
            s.closing = True
            s.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # never let the manager thread die
                log.exception("serving manager: unexpected error (will retry)")
            self._stop.wait(self.poll_interval)

    def poll_once(self) -> None:
        aspired = self.source.poll()
        if aspired is None:
            return
        self._aspired = aspired
        for name in self.names:
            self._reconcile(name, aspired.get(name, Aspired(frozenset())))

    # -- reconciliation ---------------------------------------------------------------------------------
    def _set_status(self, name: str, version: int, status: VersionStatus) -> None:
        with self._status_lock:
            versions = self._status.setdefault(name, {})
            versions[version] = status
            # versions that are gone (END) are kept for TF Serving's status routes, but only the newest few:
            # a server that follows a model through thousands of versions must not grow without bound
            ended = sorted(v for v, st in versions.items() if st.state == END)
            for v in ended[:max(0, len(ended) - MAX_ENDED_STATUSES)]:
                del versions[v]

    def _reconcile(self, name: str, want: Aspired) -> None:
        loaded = {v for (n, v) in self.snapshot.servables if n == name}
        failed = self._failed.setdefault(name, {})
        for v in [v for v in failed if v not in want.versions]:  # aspired again later counts as a change
            del failed[v]
        now = time.monotonic()
        for v in sorted(want.versions - loaded, reverse=True):  # newest first: it becomes the default soonest
            if self._stop.is_set():
                return
            if v in failed and not failed[v].due(now, want, self.retry_s):
                continue
            self._load(name, v, want)
        self._publish(name, want, drop=frozenset())
        servables = self.snapshot.servables
        unaspired = sorted(v for v in loaded - want.versions if (name, v) in servables)
        kept = self._still_serving(name, want, servables)
        for v in unaspired:
            if v not in kept:
                self._unload(name, v, want)

    def _still_serving(self, name: str, want: Aspired, servables: dict[tuple[str, int], Servable]) -> set[int]:
        """TF Serving's availability-preserving policy, per served ref: while a ref's new target is not
        available (loading, or it failed), the version that ref serves now keeps serving, labels included."""
        snap = self.snapshot
        kept: set[int] = set()
        refs = [r for r in self.refs if r.name == name]
        if want.versions and any(r.version is None and r.alias is None for r in refs):
            current = snap.latest.get(name)
            if (name, max(want.versions)) not in servables and current is not None:
                kept.add(current)  # the latest ref: the newest version failed, the previous latest stays
        for alias, v in snap.labels.get(name, {}).items():
            target = want.labels.get(alias)
            if target is not None and (name, target) not in servables:
                kept.add(v)
        if want.versions and not any((name, v) in servables for v in want.versions):
            kept.update(v for (n, v) in servables if n == name)  # nothing aspired is available: keep all
        return kept

    def _load(self, name: str, version: int, want: Aspired) -> None:
        self._set_status(name, version, VersionStatus(START))
        self._set_status(name, version, VersionStatus(LOADING))
        t0 = time.perf_counter()
        try:
            model, meta = self.loader(name, version)
        except Exception as exc:  # noqa: BLE001 - a failed load is a status, not a crash
            msg = str(exc) if isinstance(exc, MaasError) else f"{type(exc).__name__}: {exc}"
            msg = msg.splitlines()[0] if msg else type(exc).__name__
            code = "NOT_FOUND" if isinstance(exc, NotFound) else "UNKNOWN"
            self._failed_load(name, version, want)
            self._set_status(name, version, VersionStatus(END, code, msg))
            log.error("failed to load %s@%d: %s (retried when the model's versions or aliases change, or in "
                      "%.3g s)", name, version, msg,
                      min(RETRY_MAX_S, self.retry_s * 2 ** (self._failed[name][version].attempts - 1)))
            return
        self._failed.get(name, {}).pop(version, None)
        _warm_up(model)
        servable = Servable(name, version, model, meta, batch_size=self.batch_size,
                            batch_timeout_s=self.batch_timeout_s, on_batch=self.on_batch)
        servables = dict(self.snapshot.servables)
        servables[(name, version)] = servable
        self._swap(servables, name, want)
        self._set_status(name, version, VersionStatus(AVAILABLE))
        log.info("loaded %s@%d in %.2f s", name, version, time.perf_counter() - t0)

    def _failed_load(self, name: str, version: int, want: Aspired) -> None:
        failed = self._failed.setdefault(name, {})
        before = failed.pop(version, None)
        failed[version] = _Failure(time.monotonic(), before.attempts + 1 if before else 1, want)
        while len(failed) > MAX_FAILED:  # bounded: forget the oldest failure (it is retried when due anyway)
            del failed[min(failed, key=lambda v: failed[v].at)]

    def _publish(self, name: str, want: Aspired, drop: frozenset[int]) -> None:
        servables = {k: s for k, s in self.snapshot.servables.items() if not (k[0] == name and k[1] in drop)}
        self._swap(servables, name, want)

    def _swap(self, servables: dict[tuple[str, int], Servable], name: str, want: Aspired) -> None:
        versions = [v for (n, v) in servables if n == name]
        labels = dict(self.snapshot.labels)
        latest = dict(self.snapshot.latest)
        new = {a: v for a, v in want.labels.items() if (name, v) in servables}
        # a label whose new target is not available (loading, or failed) stays on its old, still loaded target
        for a, v in labels.get(name, {}).items():
            if a in want.labels and a not in new and (name, v) in servables:
                new[a] = v
        labels[name] = new
        if versions:
            latest[name] = max(versions)
        else:
            latest.pop(name, None)
        self.snapshot = Snapshot(servables, labels, latest)

    def _unload(self, name: str, version: int, want: Aspired) -> None:
        servable = self.snapshot.servables.get((name, version))
        if servable is None:
            return
        self._set_status(name, version, VersionStatus(UNLOADING))
        self._publish(name, want, drop=frozenset({version}))
        servable.closing = True  # new requests are refused from here on; those in flight finish first
        if not servable.wait_idle(UNLOAD_DRAIN_S):
            log.warning("unloading %s@%d with %d request(s) still in flight after %d s", name, version,
                        servable.inflight, UNLOAD_DRAIN_S)
        servable.close()
        self._set_status(name, version, VersionStatus(END))
        log.info("unloaded %s@%d", name, version)

    # -- queries (request path) -------------------------------------------------------------------------
    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names, held until `release()`; TF Serving's errors otherwise."""
        for _ in range(5):
            snap = self.snapshot
            if label is not None:
                v = snap.labels.get(name, {}).get(label)
                if v is None:
                    self._missing(name, None, label)
            elif version is not None:
                v = version
            else:
                v = snap.latest.get(name)
                if v is None:
                    self._missing(name, None, None)
            servable = snap.servables.get((name, v))
            if servable is None:
                self._missing(name, v, None)
            if servable.acquire():
                return servable
        raise Unavailable(f"model '{name}' is being reloaded; retry")

    def _missing(self, name: str, version: int | None, label: str | None) -> NoReturn:
        if name not in self._status:
            served = ", ".join(self.names)
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise NotFound(f"Servable not found for request: {what} (this server serves: {served})")
        statuses = self.status(name)
        available = sorted(v for v, s in statuses.items() if s.state == AVAILABLE)
        if label is not None:
            known = self.snapshot.labels.get(name, {})
            have = ", ".join(f"{a} -> {v}" for a, v in sorted(known.items())) or "none"
            raise InvalidInput(f"Unrecognized servable version label: {label} (labels of '{name}': {have})")
        if version is not None and version in statuses and statuses[version].state != AVAILABLE:
            s = statuses[version]
            if s.state in (START, LOADING):
                raise Unavailable(f"model '{name}' version {version} is {s.state}; retry shortly")
            if s.error_code != "OK":
                raise Unavailable(f"model '{name}' version {version} failed to load: {s.error_message}")
        if version is not None:
            have = ", ".join(map(str, available)) or "none"
            raise NotFound(f"Servable not found for request: Specific({name}, {version}) "
                           f"(available versions: {have})")
        loading = sorted(v for v, s in statuses.items() if s.state in (START, LOADING))
        if loading or not statuses:
            raise Unavailable(f"model '{name}' is not ready yet (loading version(s) "
                              f"{', '.join(map(str, loading)) or '...'}); retry shortly")
        failed = [(v, s) for v, s in sorted(statuses.items()) if s.error_code != "OK"]
        if failed:
            v, s = failed[-1]
            raise Unavailable(f"model '{name}' has no available version: version {v} failed to load: "
                              f"{s.error_message}")
        raise NotFound(f"Servable not found for request: Latest({name}) (no version is loaded)")

    def status_of(self, name: str, version: int | None = None, label: str | None = None) -> dict[int, VersionStatus]:
        """TF Serving's GetModelStatus: every version of `name`, or the one `version`/`label` names, with
        TF Serving's NotFound/InvalidInput wording (shared by the REST and gRPC APIs)."""
        if not self.serves(name):
            raise NotFound(f"Could not find any versions of model {name} (this server serves: "
                           f"{', '.join(self.names)})")
        statuses = self.status(name)
        if label is not None:
            labelled = self.snapshot.labels.get(name, {}).get(label)
            if labelled is None:
                raise InvalidInput(f"Unrecognized servable version label: {label}")
            version = labelled
        if version is not None:
            if version not in statuses:
                raise NotFound(f"Could not find version {version} of model {name} "
                               f"(known versions: {', '.join(map(str, sorted(statuses))) or 'none'})")
            statuses = {version: statuses[version]}
        if not statuses:
            raise NotFound(f"Could not find any versions of model {name}")
        return statuses

    def status(self, name: str) -> dict[int, VersionStatus]:
        with self._status_lock:
            return dict(self._status.get(name, {}))

    def serves(self, name: str) -> bool:
        return name in self._status

    def loaded_counts(self) -> dict[str, int]:
        counts = {n: 0 for n in self.names}
        for n, _ in self.snapshot.servables:
            counts[n] = counts.get(n, 0) + 1
        return counts

    def readiness(self) -> tuple[bool, list[str], list[str]]:
        """Ready while every served ref (NAME, NAME@V, NAME@ALIAS) has a loaded version to answer with, even if
        a newer target is still loading or was refused: the old version serves, so a Kubernetes replica must
        stay in rotation. Not ready when some ref has nothing loaded.

        Returns (ready, problems, failed): `problems` names every aspired version that is not AVAILABLE (and
        each ref with nothing loaded); `failed` the versions whose load failed or was refused (retried later,
        see RETRY_S), so a caller waiting for a first start can give up at once."""
        aspired = self._aspired
        if aspired is None:
            return False, ["the store has not been read yet"], []
        snap = self.snapshot
        problems: list[str] = []
        failed: list[str] = []
        ready = True
        for ref in self.refs:
            if self._resolves(ref, snap) is None:
                ready = False
                problems.append(f"{ref}: no version loaded")
        for name in self.names:
            want = aspired.get(name)
            if want is None or not want.versions:
                ready = False
                problems.append(f"{name}: no version to serve")
                continue
            st = self.status(name)
            for v in sorted(want.versions):
                s = st.get(v)
                if s is None or s.state != AVAILABLE:
                    state = s.state if s else START
                    detail = f" ({s.error_message})" if s and s.error_message else ""
                    problems.append(f"{name}@{v} is {state}{detail}")
                    if s is not None and s.error_code != "OK":
                        failed.append(f"{name}@{v}: {s.error_message}")
        return ready, problems, failed

    def settled(self) -> bool:
        """No aspired version is waiting to load (each is AVAILABLE or failed): for tests and start-up waits."""
        aspired = self._aspired
        if aspired is None:
            return False
        for name in self.names:
            st = self.status(name)
            for v in aspired.get(name, Aspired(frozenset())).versions:
                if v not in st or st[v].state in (START, LOADING):
                    return False
        return True

    @staticmethod
    def _resolves(ref: ModelRef, snap: Snapshot) -> int | None:
        """The loaded version a served ref answers with now, or None."""
        if ref.version is not None:
            return ref.version if (ref.name, ref.version) in snap.servables else None
        if ref.alias is not None:
            return snap.labels.get(ref.name, {}).get(ref.alias)
        return snap.latest.get(ref.name)
