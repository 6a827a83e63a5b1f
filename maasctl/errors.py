"""The one exception hierarchy. The CLI maps it to exit codes, the REST app to HTTP statuses."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class MaasError(Exception):
    """Base of every error maasctl reports to a user. The message is one line."""

    exit_code = 1
    http_status = 500


class OperationFailed(MaasError):
    """The operation ran but failed (corruption found, a server did not start...)."""

    exit_code = 1
    http_status = 500


class InvalidInput(MaasError):
    """Bad config, bad argument, bad file: the user must change the input."""

    exit_code = 2
    http_status = 400


class NotFound(MaasError):
    """A model, version, alias, run or file that does not exist."""

    exit_code = 3
    http_status = 404


class Conflict(MaasError):
    """The store's state forbids the operation (e.g. removing a version an alias points at)."""

    exit_code = 1
    http_status = 409


class Unavailable(MaasError):
    """A servable or server is not ready."""

    exit_code = 1
    http_status = 503


class Unimplemented(MaasError):
    exit_code = 1
    http_status = 501


# The file system refused to take more bytes: the message must say where, because write(), fsync() and
# copy_file_range() raise these without a file name.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_failed(path: object, exc: OSError) -> OperationFailed:
    """An OSError met while writing `path` as one line naming it (a full disk says so)."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.EFBIG:
        why += " (over the file size limit: see ulimit -f)"
    elif exc.errno in NO_SPACE:
        why += " (free space on that file system, or write elsewhere)"
    return OperationFailed(f"cannot write {path}: {why}")


@contextlib.contextmanager
def writing(path: object) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into OperationFailed naming it, when the error itself names
    no file or is a full disk (shutil names the source there); any other OSError passes through unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or exc.errno in NO_SPACE:
            raise write_failed(path, exc) from exc
        raise
