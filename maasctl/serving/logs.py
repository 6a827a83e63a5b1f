"""Server logging: stderr in the foreground; a size-capped, rotating file for a detached server.

A detached server's stdout and stderr are its log file (`<store>/servers/<id>.log`), so output that bypasses
`logging` (TensorFlow's C++ messages, a crash) lands there too. When the file passes the cap it is renamed
`<id>.log.1` (older ones shift up to `.N`, the oldest is dropped) and file descriptors 1 and 2 move to the
fresh file, so the log never grows without bound: at most (backups + 1) x cap bytes on disk.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from maasctl.settings import env_int

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
MAX_BYTES_ENV = "MAASCTL_SERVER_LOG_MAX_BYTES"
BACKUPS_ENV = "MAASCTL_SERVER_LOG_BACKUPS"




class CappedLog(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that also moves fds 1 and 2 to the fresh file at each rollover."""

    def doRollover(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        super().doRollover()
        if self.stream is None:
            self.stream = self._open()
        fd = self.stream.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)


def configure(log_file: str | Path | None = None, tag: str = "") -> None:
    """Log INFO and up to stderr, or (detached) to `log_file`, capped and rotated (see the module doc).
    `tag` starts each message (a worker of `serve --workers` says which one it is)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if log_file is None:
        logging.basicConfig(level=logging.INFO, format=FORMAT.replace("%(message)s", tag + "%(message)s"),
                            stream=sys.stderr)
        return
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)  # a server started with --server-id by hand, not by --detach
    handler = CappedLog(log_file, maxBytes=env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, minimum=1024),
                        backupCount=env_int(BACKUPS_ENV, DEFAULT_BACKUPS), encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
