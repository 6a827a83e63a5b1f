"""The one seam into click as typer carries it: every import of `typer._click` is here.

typer 0.29 vendors click as `typer._click` (private; typer has an upper version bound in pyproject.toml). The
CLI needs from it the exception classes commands raise (click's public API, under a private module name) and
the shell-completion machinery, of which `_resolve_context` / `_resolve_incomplete` are private to click too.

Checked once, at import: if typer no longer vendors click, the public `click` package (which typer then uses)
is taken instead; if the two private completion helpers are gone or take other parameters,
`COMPLETION_INTERNALS` is False and completion falls back to click's public `ShellComplete.get_completions`
(which completes the same words, without the file/dir hint for path parameters).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

try:
    from typer._click import exceptions, shell_completion
    from typer._click.core import Command, Parameter
except ImportError:  # pragma: no cover - a typer that uses the public click again
    from click import exceptions, shell_completion  # type: ignore[no-redef]
    from click.core import Command, Parameter  # type: ignore[assignment]

CompletionItem = shell_completion.CompletionItem
ShellComplete = shell_completion.ShellComplete
add_completion_class = shell_completion.add_completion_class
split_arg_string = shell_completion.split_arg_string


def _private(name: str, params: list[str]) -> Callable[..., Any] | None:
    """click's private helper `name` when it is there and takes exactly `params`, else None."""
    fn = getattr(shell_completion, name, None)
    try:
        if callable(fn) and list(inspect.signature(fn).parameters) == params:
            return fn
    except (TypeError, ValueError):
        pass
    return None


resolve_context = _private("_resolve_context", ["cli", "ctx_args", "prog_name", "args"])
resolve_incomplete = _private("_resolve_incomplete", ["ctx", "args", "incomplete"])
COMPLETION_INTERNALS = resolve_context is not None and resolve_incomplete is not None

__all__ = ["COMPLETION_INTERNALS", "Command", "CompletionItem", "Parameter", "ShellComplete", "add_completion_class",
           "exceptions", "resolve_context", "resolve_incomplete", "split_arg_string"]
