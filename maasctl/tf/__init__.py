"""The only package that imports TensorFlow at module level (through `load_tensorflow`).

TensorFlow's C++ runtime prints oneDNN and CUDA banners on fd 2 before its logging is configured, so
TF_CPP_MIN_LOG_LEVEL alone does not silence them; the import runs with fd 2 pointed at /dev/null.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def quiet_stderr_fd() -> Iterator[None]:
    """Send the process's fd 2 to /dev/null for the duration (Python's sys.stderr included)."""
    if os.environ.get("MAASCTL_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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
