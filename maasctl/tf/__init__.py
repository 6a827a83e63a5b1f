"""The only package that imports TensorFlow at module level (through `load_tensorflow`).

TensorFlow's C++ runtime prints oneDNN and CUDA banners on fd 2 before its logging is configured, so
TF_CPP_MIN_LOG_LEVEL alone (or any absl/glog variable) does not silence them. While it imports, fd 2 is an
anonymous file (memfd) that a thread follows: lines in absl's C++ format are dropped, every other line (another
thread's message, a Python warning) goes on to the real stderr, in order, so nothing of ours is lost. A file, not
a pipe: a writer never blocks on it, even one holding the GIL that the forwarding thread would need.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

# absl's C++ lines ("I0000 00:00:1795677370.404707   15503 port.cc:153] ...": before absl is initialised the
# time is epoch seconds) and its notice about that
_CPP_LOG_LINE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] |"
                           rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")
_POLL_S = 0.02


def _forward(source: int, stderr: int, done: threading.Event) -> None:
    """Follow `source` (from its start) and copy it to `stderr` line by line, leaving out TensorFlow's C++ log
    lines, until `done` is set and everything written before that has been read."""
    offset, pending = 0, b""
    while True:
        finished = done.is_set()  # read before the last pass: nothing written before `done` is missed
        while chunk := os.pread(source, 65536, offset):
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not _CPP_LOG_LINE.match(line))
            if kept:
                _write_all(stderr, kept)
        if finished:
            break
        done.wait(_POLL_S)
    if pending and not _CPP_LOG_LINE.match(pending):
        _write_all(stderr, pending)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # stderr closed (a pipe whose reader left): say nothing
        while data:
            data = data[os.write(fd, data):]


def _anonymous_file() -> int:
    """A file with no name: in memory where Linux allows it, else an unlinked temporary file."""
    with contextlib.suppress(AttributeError, OSError):
        return os.memfd_create("maasctl-stderr")
    fd, name = tempfile.mkstemp(prefix="maasctl-stderr-")
    os.unlink(name)
    return fd


@contextlib.contextmanager
def quiet_stderr_fd() -> Iterator[None]:
    """For the duration, filter TensorFlow's C++ log lines out of the process's fd 2 (see the module's note)."""
    if os.environ.get("MAASCTL_TF_VERBOSE"):
        yield
        return
    try:
        buffer = _anonymous_file()
    except OSError:  # no memfd and no writable temporary directory: TensorFlow imports unfiltered
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    done = threading.Event()
    os.dup2(buffer, 2)
    forwarder = threading.Thread(target=_forward, args=(buffer, real, done), name="maasctl-stderr", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        done.set()
        forwarder.join()  # before anything else reaches the real stderr: the order stays
        os.close(real)
        os.close(buffer)


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
    from maasctl.settings import env_int

    n = env_int("MAASCTL_LOGICAL_CPUS", 1)
    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
