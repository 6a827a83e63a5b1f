"""The one exception hierarchy. The CLI maps it to exit codes, the REST app to HTTP statuses."""

from __future__ import annotations


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
