"""Import rules from the design notes, checked on the source (cheaper and stricter than a lint run)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "maasctl"
HEAVY = {"tensorflow", "keras", "uvicorn"}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        yield path.relative_to(PKG.parent).as_posix(), ast.parse(path.read_text(), str(path))


def _top_level_imports(tree):
    """Imports executed when the module is imported (module body, including if/try blocks)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []) or [])
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def _all_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_only_tf_package_imports_tensorflow_at_module_level():
    offenders = [(mod, name) for mod, tree in _modules() if not mod.startswith("maasctl/tf/")
                 for name in _top_level_imports(tree) if name.split(".")[0] in HEAVY]
    assert offenders == []


def test_nothing_imports_the_cli_and_only_the_cli_imports_typer():
    offenders = []
    for mod, tree in _modules():
        in_cli = mod.startswith("maasctl/cli/") or mod == "maasctl/__main__.py"
        for name in _all_imports(tree):
            if not in_cli and (name.split(".")[0] == "typer" or (name == "maasctl.cli" or name.startswith("maasctl.cli."))):
                offenders.append((mod, name))
    assert offenders == []
