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
