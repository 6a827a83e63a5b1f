"""Help text, option names and global options as a new user meets them (issue 11 items 8, 11, 13, 23).

In-process through CliRunner (`cli`), which renders help at 80 columns.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import cli


def _leaves():
    from maasctl.cli import command

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None) or {}
        if not subs:
            yield path, cmd
        for name, sub in subs.items():
            yield from walk(sub, path + [name])

    return list(walk(command(), []))


LEAVES = [" ".join(path) for path, _ in _leaves()]


# -- item 8: --store and --debug after the subcommand ---------------------------------------------------
def test_global_options_after_the_subcommand(tmp_path, saved_models):
    a, b = tmp_path / "a", tmp_path / "b"
    r = cli("register", str(saved_models["small"]), "--name", "m", "--store", str(a), store=b)
    assert r.returncode == 0, r.stderr
    assert [m["name"] for m in json.loads(cli("list", "--store", str(a), "--json", store=b).stdout)] == ["m"]
    assert json.loads(cli("list", f"--store={b}", "--json").stdout) == []
    assert cli("alias", "set", "m@1", "prod", "--store", str(a)).returncode == 0
    r = cli("show", "nosuch", "--debug", "--store", str(a))
    assert r.returncode == 3 and "Traceback" in r.stderr and "Error: model 'nosuch' not found" in r.stderr
    assert "Traceback" not in cli("show", "nosuch", "--store", str(a)).stderr


# -- item 11: help for people ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["", *LEAVES])
def test_help_has_no_python_types_and_upper_case_metavars(path):
    r = cli(*path.split(), "--help")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert not re.search(r"<[a-z][a-z_ \[\]|]*>", text), text  # <str>, <int range>, <list[str]>, <path> ...
    assert "list[" not in text and "{" not in text.split("\n")[0], text
    usage = text.splitlines()[0]
    for word in usage.split()[2 + len(path.split()):]:  # after `Usage: maasctl CMD`
        assert word in ("[OPTIONS]", "COMMAND", "[ARGS]...") or re.fullmatch(r"\[?[A-Z][A-Z_]*(\.[a-z]+)?\]?(\.\.\.)?", word), usage


def test_every_metavar_is_upper_case_or_a_choice_list():
    bad = []
    for path, cmd in _leaves():
        for p in cmd.params:
            if getattr(p, "is_flag", False) or getattr(p, "hidden", False):
                continue
            # NAME, KEY=VALUE, HOST:PORT, PUBLIC.pem (a file of that kind), COL,... (a list), [a|b|c] (choices)
            if not re.fullmatch(r"[A-Z][A-Z_=:]*(,[A-Z]+)*(\.[a-z]+|,?\.\.\.)?|\[[a-z]+(\|[a-z]+)+\]", p.metavar or ""):
                bad.append((" ".join(path), p.name, p.metavar))
    assert bad == []


def test_choices_are_shown():
    assert "-f, --format [json|jsonl|csv|table]" in cli("predict", "--help").stdout
    assert "--input-format [json|jsonl|csv]" in cli("predict", "--help").stdout
    assert "--backend [maasctl|tfserving]" in cli("serve", "--help").stdout
    assert "--compression [gzip|none]" in cli("package", "--help").stdout


def test_cli_choices_match_the_library():
    from maasctl.cli import predict
    from maasctl.predict.schema import FORMATS
    from maasctl.predict.writers import OUTPUT_FORMATS

    assert predict.OUTPUT_FORMATS == OUTPUT_FORMATS and predict.INPUT_FORMATS == FORMATS


def test_missing_argument_names_the_metavar(store_path):
    r = cli("serve", store=store_path)
    assert (r.returncode, r.stderr) == (2, "Error: Missing argument 'REF'. (see: maasctl serve --help)\n")


@pytest.mark.parametrize("path", LEAVES)
def test_examples_fit_80_columns(path):
    """The Example: line is printed whole, not wrapped mid-command, at 80 columns."""
    from maasctl.cli import command

    cmd = command()
    for name in path.split():
        cmd = cmd.commands[name]
    example = next(line.strip() for line in cmd.help.splitlines() if line.strip().startswith("Example:"))
    shown = cli(*path.split(), "--help").stdout.splitlines()
    assert "  " + example in shown, f"{example!r} wraps at 80 columns ({len(example) + 2} wide)"


def test_top_level_summaries_fit_80_columns():
    text = cli("--help").stdout
    commands = text.split("Commands:\n", 1)[1].splitlines()
    assert all(len(line) <= 80 for line in commands)
    cut = [line for line in commands if line.rstrip().endswith("...") or line.rstrip().endswith("…")]
    assert cut == []


# -- item 13: one meaning per short option; the two batch sizes named apart --------------------------------
def test_each_short_option_means_one_thing():
    meanings: dict[str, set[str]] = {}
    for _, cmd in _leaves():
        for p in cmd.params:
            names = list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", []))
            longs = [n for n in names if n.startswith("--")]
            for short in (n for n in names if re.fullmatch(r"-[a-zA-Z]", n)):
                meanings.setdefault(short, set()).update(longs)
    assert {s: m for s, m in meanings.items() if len(m) != 1} == {}


def test_batch_sizes_have_distinct_names_and_old_names_still_work():
    serve, predict = cli("serve", "--help").stdout, cli("predict", "--help").stdout
    assert "--max-batch-size N" in serve and "--batch-size" not in serve
    assert "-b, --rows-per-request N" in predict and "--batch-size" not in predict
    # the old long names are hidden aliases: parsed, not shown
    from maasctl.cli import command

    root = command()
    for name, args in (("serve", ["m", "--batch-size", "8"]), ("predict", ["--batch-size", "8"])):
        ctx = root.commands[name].make_context(name, args, **root.context_settings)
        assert ctx.params["old_batch_size"] == 8
