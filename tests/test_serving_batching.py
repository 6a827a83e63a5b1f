"""Dynamic batching with a real SavedModel: merged calls, exact splitting, errors delivered to every caller."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from maasctl.errors import InvalidInput
from maasctl.serving.batching import INLINE_MAX_S, Batcher

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def model(tf, models):
    from maasctl.tf.loader import load_model

    return load_model(models["small"])


def run_concurrently(batcher: Batcher, inputs: list[np.ndarray], first_alone: bool = False) -> list:
    """Submit all inputs at once (or the first, then the rest once the worker has picked it up)."""
    async def main():
        head = []
        if first_alone:
            head = [asyncio.ensure_future(batcher.submit({"features": inputs[0]}, len(inputs[0])))]
            await asyncio.sleep(0.2)
        rest = inputs[1:] if first_alone else inputs
        return await asyncio.gather(*head, *(batcher.submit({"features": x}, len(x)) for x in rest),
                                    return_exceptions=True)

    return asyncio.run(main())


def wait_idle(batcher: Batcher) -> None:
    deadline = time.monotonic() + 10
    while batcher._busy and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not batcher._busy


def test_requests_queued_while_busy_share_one_call(model):
    gate, calls = threading.Event(), []

    def call(inputs):
        calls.append(len(inputs["features"]))
        if len(calls) == 1:
            gate.wait(10)  # hold the first batch so the others queue up behind it
        return model.predict(inputs)

    batcher = Batcher(call, max_rows=64)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(1 + i % 4, 4)).astype(np.float32) for i in range(20)]
    threading.Timer(0.5, gate.set).start()
    results = run_concurrently(batcher, inputs, first_alone=True)
    batcher.stop()
    assert calls[0] == len(inputs[0]) and len(calls) == 2 and calls[1] == sum(len(x) for x in inputs[1:])
    for x, out in zip(inputs, results):
        np.testing.assert_allclose(out["output_0"], model.predict({"features": x})["output_0"], atol=1e-6)


def test_batches_respect_max_rows(model):
    gate, calls = threading.Event(), []

    def call(inputs):
        calls.append(len(inputs["features"]))
        gate.wait(10)
        return model.predict(inputs)

    batcher = Batcher(call, max_rows=5)
    inputs = [np.full((2, 4), i, dtype=np.float32) for i in range(7)]
    threading.Timer(0.5, gate.set).start()
    results = run_concurrently(batcher, inputs, first_alone=True)
    batcher.stop()
    assert max(calls) <= 5 and sum(calls) == 14
    for x, out in zip(inputs, results):
        np.testing.assert_allclose(out["output_0"], model.predict({"features": x})["output_0"], atol=1e-6)


def test_timeout_waits_for_more_rows(model):
    calls = []

    def call(inputs):
        calls.append(len(inputs["features"]))
        return model.predict(inputs)

    batcher = Batcher(call, max_rows=8, timeout_s=0.5)

    async def main():
        first = asyncio.ensure_future(batcher.submit({"features": np.zeros((1, 4), np.float32)}, 1))
        await asyncio.sleep(0.05)
        second = batcher.submit({"features": np.ones((1, 4), np.float32)}, 1)
        return await asyncio.gather(first, second)

    asyncio.run(main())
    batcher.stop()
    assert calls == [2]


def test_errors_reach_every_caller(model):
    def call(inputs):
        raise InvalidInput("bad rows")

    batcher = Batcher(call, max_rows=8)
    results = run_concurrently(batcher, [np.zeros((1, 4), np.float32)] * 3)
    batcher.stop()
    assert all(isinstance(r, InvalidInput) for r in results)


def test_a_lone_request_on_an_idle_model_runs_inline_else_on_the_worker(model):
    threads = []

    def call(inputs):
        threads.append(threading.current_thread().name)
        return model.predict(inputs)

    x = np.ones((1, 4), np.float32)
    inline = Batcher(call, max_rows=8)
    run_concurrently(inline, [x])  # a new model: the worker measures its call time first
    # the measured call time is injected (the clock of a loaded machine says nothing about the policy)
    inline._recent_s = 0.0
    wait_idle(inline)  # the caller may get its result a moment before the worker marks itself idle
    run_concurrently(inline, [x])  # fast and idle: inline
    inline._recent_s = 0.0
    run_concurrently(inline, [x, x, x])  # ready together: handed to the worker as one batch
    inline._recent_s = INLINE_MAX_S  # a slow model: a lone request goes to the worker too
    run_concurrently(inline, [x])
    inline.stop()
    assert threads == ["batch-", threading.current_thread().name, "batch-", "batch-"]
    threads.clear()
    waiting = Batcher(call, max_rows=8, timeout_s=0.01)  # a batch timeout always uses the worker
    run_concurrently(waiting, [x])
    waiting.stop()
    assert threads == ["batch-"]


def test_a_bad_request_in_a_merged_batch_fails_only_itself(model):
    calls = []

    def call(inputs):
        x = inputs["features"]
        calls.append(len(x))
        if (x < 0).any():
            raise InvalidInput("negative feature")
        return model.predict(inputs)

    batcher = Batcher(call, max_rows=64)
    good1, bad, good2 = (np.full((2, 4), v, np.float32) for v in (1.0, -1.0, 2.0))
    results = run_concurrently(batcher, [good1, bad, good2])  # ready together: one merged call
    batcher.stop()
    assert calls[0] == 6 and sorted(calls[1:]) == [2, 2, 2]  # the merged call failed; each retried alone
    assert isinstance(results[1], InvalidInput) and "negative feature" in str(results[1])
    for x, out in ((good1, results[0]), (good2, results[2])):
        np.testing.assert_allclose(out["output_0"], model.predict({"features": x})["output_0"], atol=1e-6)
