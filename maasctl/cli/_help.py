"""The one seam into typer's help rendering (typer 0.29, pinned <0.30 in pyproject.toml).

typer prints Python types in help (`refs... <list[str]>`, `--port <int>`, `--host <str>`, `{refs}`) and
lower-case names in errors (`Missing argument 'refs'.`). `polish()` walks the built click command once and
gives every parameter a metavar for people: arguments upper-case (`REF...`, `[NAME]`), numbers `N`,
`SECONDS` or `MS`, strings the option's own name (`--host HOST`), choices `[gzip|none]`. A metavar given in
the declaration always wins.

Self-check: the argument display overrides replace typer methods by name; if a typer release renames them,
`polish()` leaves arguments as typer renders them (uglier help, nothing broken) and tests/test_cli_help.py
fails loudly.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption

_ARGUMENT_HOOKS = ("_usage_display_name", "_rich_display_name", "display_type_rich")
SEAM_OK = all(callable(getattr(TyperArgument, name, None)) for name in _ARGUMENT_HOOKS)


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: `REF...` in usage and help, no `<type>`."""

    def _dots(self) -> str:
        return "..." if self.nargs != 1 and not str(self.metavar).endswith("...") else ""

    def _usage_display_name(self) -> str:
        label = f"{self.metavar}{self._dots()}"
        return label if self.required else f"[{label}]"

    def _rich_display_name(self) -> str:
        return f"{self.metavar}{self._dots()}"

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _choices(param: Any) -> list[str] | None:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or not getattr(desc, "is_choice", False):
        return None
    return [str(getattr(c, "value", c)) for c in desc.choices or ()]


def _option_metavar(opt: Any) -> str | None:
    if opt.is_flag or getattr(opt, "count", False):
        return None
    choices = _choices(opt)
    if choices:
        return "[" + "|".join(choices) + "]"
    name = opt.name or ""
    if isinstance(opt.default, (int, float)) and not isinstance(opt.default, bool):
        if name.endswith("_ms"):
            return "MS"
        return "SECONDS" if "timeout" in name else "N"
    longest = max(opt.opts, key=len).lstrip("-")
    return longest.replace("-", "_").upper()


def polish(command: Any) -> Any:
    """Give every parameter of `command` and its subcommands a metavar for people (in place; returns it)."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "").upper()
            if SEAM_OK and type(param) is TyperArgument:
                param.__class__ = _Argument
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _option_metavar(param)
    for sub in (getattr(command, "commands", None) or {}).values():
        polish(sub)
    return command
