"""Dynamic batching: concurrent requests for one (model, version, signature) share one model call.

A worker thread per queue takes whatever is queued (up to `max_rows` rows). When the model is idle it does
not wait, unless `timeout_s` > 0: then it waits up to that long for more rows. While it runs a batch, new
requests pile up and form the next one, so batches grow exactly when the model is the bottleneck.
Inputs are concatenated along axis 0, the model is called once off the event loop (TensorFlow releases the
GIL), and each caller gets exactly its own rows back through its asyncio future. When a merged call fails,
each request is retried alone, so a bad request fails only itself.

One shortcut: handing a request to the worker thread and back costs two thread wake-ups, which for a tiny
model is more than the model call itself. So when exactly one request is ready in an event-loop iteration,
the worker is idle, no batch timeout is set and the model's recent calls took under INLINE_MAX_S, the call
runs right there on the event loop (blocking it for at most about that long) — unless the request holds more
than INLINE_MAX_VALUES values. Whenever requests arrive
together or the worker is busy, they go to the worker and are batched as above.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput, MaasError, OperationFailed, Unavailable

log = logging.getLogger("maasctl.serve")

Inputs = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
_STOP = object()
INLINE_MAX_S = 0.002
# A request this large never runs inline, however fast the model's recent calls were: a 1M-row request would
# hold the event loop (and /healthz) for seconds.
INLINE_MAX_VALUES = 16384


class _Item:
    __slots__ = ("future", "inputs", "key", "loop", "rows", "size")

    def __init__(self, inputs: Inputs, rows: int | None, future: asyncio.Future, loop: asyncio.AbstractEventLoop):
        self.inputs = inputs
        self.rows = 0 if rows is None else rows  # 0: unknown (such an item never merges: key is None)
        # requests merge only when every input has the same per-row shape and dtype
        self.key = None if rows is None else tuple((k, v.shape[1:], v.dtype.str) for k, v in inputs.items())
        self.future = future
        self.loop = loop
        self.size = sum(v.size for v in inputs.values())


def _deliver(results: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """Runs on the event loop: resolve the callers' futures (skipping those whose client went away)."""
    for fut, value, exc in results:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


class Batcher:
    """One queue + worker thread. `call(inputs) -> outputs` is the model call, run on the worker thread."""

    def __init__(self, call: Callable[[Inputs], Outputs], *, max_rows: int, timeout_s: float = 0.0,
                 name: str = "", on_batch: Callable[[int, float], None] | None = None) -> None:
        self.call = call
        self.max_rows = max(1, max_rows)
        self.timeout_s = max(0.0, timeout_s)
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: collections.deque[_Item] = collections.deque()
        self._thread = threading.Thread(target=self._run, name=f"batch-{name}", daemon=True)
        self._stopped = False
        self._busy = False
        # moving average of model-call time; starts at the limit so the worker measures a new model first
        self._recent_s = INLINE_MAX_S
        # requests that became ready in the current iteration of each event loop (REST and gRPC run in
        # different threads with their own loops; each loop only touches its own list)
        self._ready: dict[Any, list[_Item]] = {}
        self._thread.start()

    async def submit(self, inputs: Inputs, rows: int | None) -> Outputs:
        """Queue one request's inputs and wait for its outputs (`rows` None: not batchable, runs alone)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        item = _Item(inputs, rows, fut, loop)
        if self.timeout_s > 0:
            self._queue.put(item)
        else:
            # collect the requests that become ready in this loop iteration, then decide in _flush
            ready = self._ready.get(loop)
            if ready is None:
                self._ready[loop] = [item]
                loop.call_soon(self._flush, loop)
            else:
                ready.append(item)
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._ready.pop(loop, [])
        if self._stopped:
            err = Unavailable("the model version was unloaded while the request waited; retry")
            _deliver([(item.future, None, err) for item in items])
            return
        if (len(items) == 1 and not self._busy and self._queue.empty()
                and self._recent_s < INLINE_MAX_S and items[0].size <= INLINE_MAX_VALUES):
            _deliver([self._call_one(items[0])])
            return
        for item in items:
            self._queue.put(item)

    def stop(self, wait: bool = True) -> None:
        if not self._stopped:
            self._stopped = True
            self._queue.put(_STOP)
            if wait and threading.current_thread() is not self._thread:
                self._thread.join(timeout=10)

    # -- worker -----------------------------------------------------------------------------------------
    def _take(self, block: bool, timeout: float | None = None) -> bool:
        """Move one item from the queue to pending; False on stop or when nothing came."""
        try:
            item = self._queue.get(block, timeout) if block else self._queue.get_nowait()
        except queue.Empty:
            return False
        if item is _STOP:
            self._stopped = True
            return False
        self._pending.append(item)
        return True

    def _run(self) -> None:
        while True:
            if not self._pending and not self._take(block=True):
                if self._stopped:
                    self._fail_pending()
                    return
                continue
            while self._take(block=False):  # everything queued while we were busy
                pass
            if self.timeout_s > 0 and self._rows_ready() < self.max_rows:
                deadline = time.monotonic() + self.timeout_s
                while self._rows_ready() < self.max_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._take(block=True, timeout=remaining):
                        break
            batch = self._form_batch()
            if batch:
                self._busy = True
                try:
                    self._execute(batch)
                finally:
                    self._busy = False
            if self._stopped and not self._pending:
                return

    def _rows_ready(self) -> int:
        if not self._pending:
            return 0
        key = self._pending[0].key
        return sum(i.rows for i in self._pending if i.key == key and key is not None)

    def _form_batch(self) -> list[_Item]:
        first = self._pending.popleft()
        if first.key is None or first.rows >= self.max_rows:
            return [first]
        batch, rows = [first], first.rows
        keep: collections.deque[_Item] = collections.deque()
        while self._pending:
            item = self._pending.popleft()
            if item.key == first.key and rows + item.rows <= self.max_rows:
                batch.append(item)
                rows += item.rows
            else:
                keep.append(item)
                if rows >= self.max_rows:
                    break
        keep.extend(self._pending)
        self._pending = keep
        return batch

    def _execute(self, batch: list[_Item]) -> None:
        results: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        if len(batch) == 1:
            item = batch[0]
            results.append(self._call_one(item))
        else:
            names = list(batch[0].inputs)
            merged = {n: np.concatenate([i.inputs[n] for i in batch]) for n in names}
            total = sum(i.rows for i in batch)
            outputs: Outputs | None = None
            error: BaseException | None = None
            try:
                outputs = self._timed(merged, total)
            except Exception:  # noqa: BLE001 - one bad request must not fail the others: each runs alone
                outputs = None
            except BaseException as exc:  # noqa: BLE001 - delivered to every caller
                error = _public(exc)
            if error is not None:
                results.extend((i.future, None, error) for i in batch)
            elif outputs is None:
                results.extend(self._call_one(i) for i in batch)
            elif all(getattr(v, "ndim", 0) >= 1 and v.shape[0] == total for v in outputs.values()):
                start = 0
                for item in batch:
                    end = start + item.rows
                    results.append((item.future, {k: v[start:end] for k, v in outputs.items()}, None))
                    start = end
            else:  # outputs not aligned with the batch dimension: batching does not apply to this model
                results.extend(self._call_one(i) for i in batch)
        by_loop: dict[Any, list[tuple[asyncio.Future, Any, BaseException | None]]] = {}
        for result, item in zip(results, batch):
            by_loop.setdefault(item.loop, []).append(result)
        for loop, res in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, res)
            except RuntimeError:  # the loop closed (shutdown): nobody is waiting
                pass

    def _call_one(self, item: _Item) -> tuple[asyncio.Future, Any, BaseException | None]:
        try:
            return item.future, self._timed(item.inputs, item.rows or 1), None
        except BaseException as exc:  # noqa: BLE001
            return item.future, None, _public(exc)

    def _timed(self, inputs: Inputs, rows: int) -> Outputs:
        t0 = time.perf_counter()
        out = self.call(inputs)
        seconds = time.perf_counter() - t0
        self._recent_s = 0.8 * self._recent_s + 0.2 * seconds
        if self.on_batch is not None:
            self.on_batch(rows, seconds)
        return out

    def _fail_pending(self) -> None:
        while self._take(block=False):
            pass
        if self._pending:
            err = Unavailable("the model version was unloaded while the request waited; retry")
            self._execute_failures(list(self._pending), err)
            self._pending.clear()

    def _execute_failures(self, items: list[_Item], err: BaseException) -> None:
        for item in items:
            try:
                failed: list[tuple[asyncio.Future, Any, BaseException | None]] = [(item.future, None, err)]
                item.loop.call_soon_threadsafe(_deliver, failed)
            except RuntimeError:
                pass


def _public(exc: BaseException) -> BaseException:
    """Model-call errors as MaasErrors: TensorFlow's InvalidArgumentError is the client's fault (400)."""
    if isinstance(exc, MaasError):
        return exc
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if type(exc).__name__ == "InvalidArgumentError":
        return InvalidInput(f"the model rejected the input: {first}")
    log.error("model call failed: %s: %s", type(exc).__name__, first)
    return OperationFailed(f"model call failed: {type(exc).__name__}: {first}")
