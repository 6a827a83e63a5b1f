"""Ctrl-C stops training even when Python's own KeyboardInterrupt is lost.

Python raises KeyboardInterrupt at the next bytecode the main thread runs after SIGINT. When that bytecode
belongs to a finalizer (TensorFlow's iterators and resources run `__del__` code between steps), the exception
is reported as "ignored" and dropped, and training goes on: about one Ctrl-C in forty, here. The handler
below also records the signal, and a callback raises KeyboardInterrupt again at the next epoch's end. When
the interrupt lands inside TensorFlow's own code it can also come out as another error ("None values not
supported", a SystemError): with the signal recorded, `fit` turns those back into KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from maasctl.tf import load_tensorflow

load_tensorflow()
import keras  # after load_tensorflow(): Keras imports TensorFlow, which must come in quietly


class InterruptCheck(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at an epoch's end once SIGINT arrived (epoch-level: batch hooks cost every step)."""

    def __init__(self, interrupted: threading.Event) -> None:
        super().__init__()
        self.interrupted = interrupted

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.interrupted.is_set():
            raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_recorded() -> Iterator[threading.Event]:
    """While inside, SIGINT both sets the yielded event and raises KeyboardInterrupt as usual.

    Only in the main thread and over Python's default handler: an embedding program's own handler is kept.
    """
    interrupted = threading.Event()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield interrupted
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
