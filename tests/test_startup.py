"""Commands that do not need TensorFlow must never import it (it costs seconds)."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from maasctl.cli import main
sys.argv = ["maasctl", *{args!r}]
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "keras", "uvicorn", "numpy") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["show", "nosuch"], ["verify"]])
def test_no_heavy_imports(tmp_path, args):
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                       env={"MAASCTL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line == ["HEAVY="], r.stderr


def test_every_command_has_help_with_example():
    from maasctl.cli import app
    from typer.main import get_command

    root = get_command(app)
    missing = []

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, path + [name])
            elif "Example:" not in (sub.help or ""):
                missing.append(" ".join(path + [name]))

    walk(root, [])
    assert missing == []
