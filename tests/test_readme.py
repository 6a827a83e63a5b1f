"""README stays true: the command reference matches --help, and the Quick start is what CI runs."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def test_command_reference_matches_help():
    import gen_reference

    text = (ROOT / "README.md").read_text()
    assert gen_reference.updated(text) == text, "README is stale: run python scripts/gen_reference.py"


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", text, re.DOTALL).group(1)
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "examples/quickstart.sh" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_command_is_in_the_reference():
    from typer.main import get_command

    from maasctl.cli import app

    text = (ROOT / "README.md").read_text()
    for name in get_command(app).commands:
        assert f"### `maasctl {name}`" in text


def test_readme_says_what_the_tool_is_before_any_command():
    """Issue 11, item 24: an opening paragraph (what, why over MLflow/BentoML/TF Serving, measured how) before
    the first command; a venv for Debian's system Python."""
    text = (ROOT / "README.md").read_text()
    opening = text[:text.index("```")]
    for word in ("MLflow", "BentoML", "TensorFlow Serving", "bench/bench_serve.py"):
        assert word in opening, word
    assert "python3 -m venv" in text[:text.index("## A 5-minute tour")]


def test_the_tour_shows_output_as_the_commands_print_it():
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## A 5-minute tour"):text.index("## Training config reference")]
    header = re.search(r"\$ maasctl runs list\n(.*)\n", tour).group(1)
    assert header.split() == ["RUN", "CREATED", "TASK", "CONFIG", "METRIC"]
    assert re.search(r"\$ maasctl train .*\ndata: \d+ rows .*\nloading TensorFlow…\n", tour)
    assert "sha256 1470da41..." not in tour  # digests are printed whole


def test_quickstart_suggests_no_curl_to_the_server_it_stops():
    script = (ROOT / "examples" / "quickstart.sh").read_text()
    stop = script.index('"${maasctl[@]}" stop')
    assert "curl" not in script[:stop]
