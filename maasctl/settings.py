"""Integer settings read from the environment (limits, caps), each checked the same way."""

from __future__ import annotations

import os

from maasctl.errors import InvalidInput


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """`$name` as a whole number >= `minimum`; unset or empty gives `default`. Anything else is InvalidInput
    (exit 2) naming the variable and its value."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        what = {1: "a positive whole number", 0: "a whole number >= 0"}.get(minimum, f"a whole number >= {minimum}")
        raise InvalidInput(f"{name}={text!r}: expected {what}")
    return value
