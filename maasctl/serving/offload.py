"""Big request bodies are decoded, and their answers encoded, in a helper process.

Decoding a 30 MB JSON body into arrays is one long C call (orjson, then NumPy) that holds the GIL for its whole
length: on a worker thread it still freezes the event loop, so /healthz would wait seconds and a liveness
probe would kill a healthy server. A helper process (spawned on the first big request, so a server that never
gets one never pays for it; `spawn`, never `fork`, because TensorFlow's threads do not survive a fork) does
that work while the event loop keeps answering. The model call itself already runs on the batcher's thread,
where TensorFlow releases the GIL. Should the helper die, the work falls back to a thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from maasctl import tensors
from maasctl.serving import codec

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def decode_predict(body: bytes, signatures: dict[str, Any]) -> codec.PredictRequest:
    """JSON body -> validated arrays (runs in the helper)."""
    return codec.nested_ok(codec.parse_predict, tensors.loads(body), signatures)


def encode_predict(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    return tensors.encode_predict(outputs, row_format)


def decode_examples(body: bytes, signatures: dict[str, Any], meta: dict[str, Any]
                    ) -> tuple[str, dict[str, np.ndarray], int]:
    """A :classify/:regress body -> (signature name, input arrays, rows) (runs in the helper)."""
    return codec.nested_ok(codec.parse_examples, tensors.loads(body), signatures, meta)


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        # submit() starts the helper when there is none (spawn: an exec plus the pickled start-up state), which
        # held the event loop for up to seconds on the first big request: submit from a thread
        future = await asyncio.to_thread(lambda: _executor().submit(fn, *args))
        return await asyncio.wrap_future(future)
    except BrokenProcessPool:
        shutdown()  # the helper died (killed, out of memory): the next big request starts a fresh one
        return await asyncio.to_thread(fn, *args)
