"""Integer settings from the environment: one reader, one kind of error (naming the variable and its value)."""

from __future__ import annotations

import pytest

from maasctl.errors import InvalidInput
from maasctl.settings import env_int


@pytest.mark.parametrize(("text", "minimum", "expected"), [("", 1, 7), ("  ", 1, 7), ("12", 1, 12), ("0", 0, 0)])
def test_unset_empty_and_valid_values(monkeypatch, text: str, minimum: int, expected: int):
    monkeypatch.setenv("MAASCTL_X", text)
    assert env_int("MAASCTL_X", 7, minimum=minimum) == expected


@pytest.mark.parametrize(("text", "minimum", "message"), [
    ("lots", 1, "MAASCTL_X='lots': expected a positive whole number"),
    ("0", 1, "MAASCTL_X='0': expected a positive whole number"),
    ("-1", 0, "MAASCTL_X='-1': expected a whole number >= 0"),
    ("100", 1024, "MAASCTL_X='100': expected a whole number >= 1024"),
])
def test_bad_values_are_one_line_naming_the_variable(monkeypatch, text: str, minimum: int, message: str):
    monkeypatch.setenv("MAASCTL_X", text)
    with pytest.raises(InvalidInput) as info:
        env_int("MAASCTL_X", 7, minimum=minimum)
    assert str(info.value) == message
