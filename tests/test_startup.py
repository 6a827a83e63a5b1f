"""Commands that do not need TensorFlow must never import it (it costs seconds)."""

import os
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


@pytest.fixture(scope="module")
def populated_store(saved_models, tmp_path_factory):
    from maasctl.package.build import build_package
    from maasctl.store import Store

    root = tmp_path_factory.mktemp("startup")
    store = Store(root / "store")
    store.register(saved_models["small"], "iris", aliases=["production"])
    build_package(store, "iris@1", root / "iris.maas")
    return root


@pytest.mark.parametrize("args", [
    ["--help"], ["list"], ["list", "--json"], ["list", "iris"], ["show", "nosuch"], ["show", "iris@production"],
    ["verify"], ["inspect", "iris@1"], ["inspect", "{root}/iris.maas"], ["package", "iris@1", "-o", "{root}/out.maas"],
    ["register", "{root}/iris.maas", "--name", "copy"], ["alias", "history", "iris"], ["runs", "list"], ["ps"],
    ["completion", "bash"], ["train", "{root}/missing.toml"], ["predict", "--help"], ["serve", "--help"],
])
def test_no_heavy_imports(populated_store, args):
    args = [a.format(root=populated_store) for a in args]
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                       env={"MAASCTL_HOME": str(populated_store / "store"), "PATH": "/usr/bin:/bin",
                            **{k: os.environ[k] for k in ("PYTHONPATH", "MAASCTL_TEST_FORBID_TF") if k in os.environ}},
                       check=False)
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("HEAVY=")]
    heavy = set(filter(None, line[len("HEAVY="):].split(",")))
    if args[0] == "train":  # config and data checks use NumPy; TensorFlow still must not load
        heavy.discard("numpy")
    assert heavy == set(), r.stderr


def test_every_command_has_help_with_example():
    from typer.main import get_command

    from maasctl.cli import app

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
