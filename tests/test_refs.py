import pytest

from maasctl.errors import InvalidInput
from maasctl.refs import ModelRef, check_alias, check_name, parse_ref


@pytest.mark.parametrize("text,expected", [
    ("iris", ModelRef("iris")),
    ("iris@latest", ModelRef("iris")),
    ("iris@3", ModelRef("iris", version=3)),
    ("iris@production", ModelRef("iris", alias="production")),
    ("a.b_c-d@v2", ModelRef("a.b_c-d", alias="v2")),
])
def test_parse_ref(text, expected):
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text,fragment", [
    ("Iris", "invalid model name 'Iris'"),
    ("iris@", "nothing after '@'"),
    ("iris@0", "versions run from 1"),
    ("iris@99999999999999999999999", "versions run from 1"),
    ("-iris", "invalid model name"),
    ("iris@Prod", "invalid alias 'Prod'"),
    ("x" * 65, "at most 64 characters"),
])
def test_parse_ref_rejects(text, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        parse_ref(text)


def test_alias_rules():
    assert check_alias("prod-2") == "prod-2"
    with pytest.raises(InvalidInput, match="all digits"):
        check_alias("42")
    with pytest.raises(InvalidInput, match="reserved"):
        check_alias("latest")
    assert check_name("a" * 64)


def test_ref_str_round_trips():
    for text in ("iris", "iris@3", "iris@prod"):
        assert str(parse_ref(text)) == text
