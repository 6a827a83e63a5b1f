"""The only package that imports TensorFlow at module level (through `load_tensorflow`).

TensorFlow's C++ runtime prints oneDNN and CUDA banners on fd 2 before its logging is configured, so
TF_CPP_MIN_LOG_LEVEL alone (or any absl/glog variable) does not silence them. While it imports, fd 2 is a pipe
that a thread reads: lines in absl's C++ format are dropped, every other line (another thread's message, a
Python warning) goes on to the real stderr, so nothing of ours is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

# absl's C++ lines ("I0000 00:00:1795677370.404707   15503 port.cc:153] ...": before absl is initialised the
# time is epoch seconds) and its notice about that
_CPP_LOG_LINE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] |"
                           rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


def _forward(pipe: int, stderr: int) -> None:
    """Copy `pipe` to `stderr` line by line, leaving out TensorFlow's C++ log lines; close both at EOF."""
    pending = b""
    try:
        while chunk := os.read(pipe, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not _CPP_LOG_LINE.match(line))
            if kept:
                _write_all(stderr, kept)
        if pending and not _CPP_LOG_LINE.match(pending):
            _write_all(stderr, pending)
    finally:
        os.close(pipe)
        os.close(stderr)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # stderr closed (a pipe whose reader left): keep draining, say nothing
        while data:
            data = data[os.write(fd, data):]


@contextlib.contextmanager
def quiet_stderr_fd() -> Iterator[None]:
    """For the duration, filter TensorFlow's C++ log lines out of the process's fd 2 (see the module's note)."""
    if os.environ.get("MAASCTL_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, os.dup(real)), name="maasctl-stderr",
                                 daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the forwarder drains it and stops
        os.close(real)
        # a child process started meanwhile may hold a write end: then the forwarder outlives this call
        forwarder.join(timeout=2)


def load_tensorflow() -> Any:
    """Import TensorFlow once, quietly, and return the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    with quiet_stderr_fd():
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        _logical_cpus(tf)
        if not os.environ.get("TF_CONFIG"):  # MultiWorkerMirroredStrategy must configure the runtime first
            tf.constant(0)  # initialise the runtime (and its one-time banners) while fd 2 is quiet
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def _logical_cpus(tf: Any) -> None:
    """MAASCTL_LOGICAL_CPUS=N splits the CPU into N logical devices (before the runtime starts), so that
    `distribute = "mirrored"` can be tried and tested on a machine without GPUs."""
    n = os.environ.get("MAASCTL_LOGICAL_CPUS", "")
    if n.isdigit() and int(n) > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(n))
