"""Names and references: `NAME`, `NAME@latest`, `NAME@3`, `NAME@ALIAS`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from maasctl.errors import InvalidInput

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_RULE = "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters"


def check_name(name: str, what: str = "model name") -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise InvalidInput(f"invalid {what} {name!r}: use {NAME_RULE}")
    return name


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if alias.isdigit():
        raise InvalidInput(f"invalid alias {alias!r}: an alias cannot be all digits (it would read as a version)")
    if alias == "latest":
        raise InvalidInput("invalid alias 'latest': it is reserved for the highest version")
    return alias


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference. Exactly one of version/alias is set, or neither (meaning latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.alias is None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> ModelRef:
    """Parse `NAME[@VERSION|@ALIAS|@latest]`, raising InvalidInput with the rule on bad syntax."""
    name, sep, selector = text.partition("@")
    check_name(name)
    if sep and not selector:
        raise InvalidInput(f"invalid reference {text!r}: nothing after '@' (use NAME@VERSION or NAME@ALIAS)")
    if not sep or selector == "latest":
        return ModelRef(name)
    if selector.isascii() and selector.isdigit():
        version = int(selector)
        if not 1 <= version < 2**63:
            raise InvalidInput(f"invalid reference {text!r}: versions run from 1 to 2**63-1")
        return ModelRef(name, version=version)
    check_alias(selector)
    return ModelRef(name, alias=selector)
