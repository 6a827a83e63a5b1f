"""Import rules from the design notes, checked on the source (cheaper and stricter than a lint run).

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "maasctl"
HEAVY = {"tensorflow", "keras", "uvicorn"}

# The layers (design notes §1): a unit may import its own modules, the units of lower layers, and the same-layer
# units listed in SIDEWAYS. "maasctl" is the package's __init__ (the version).
LAYERS: dict[str, int] = {
    "maasctl": 0, "errors": 0, "refs": 0, "tensors": 0, "settings": 0,
    "store": 1, "training": 1,
    "package": 2, "registration": 2, "predict": 2, "serving": 2, "ui": 2, "housekeeping": 2,
    "deploy": 2,
    "tf": 3,
    "cli": 4, "__main__": 4,
}
SIDEWAYS: dict[str, set[str]] = {
    "refs": {"errors"},
    "tensors": {"errors"},
    "settings": {"errors"},
    "training": {"store"},          # a run is registered into the store
    "registration": {"package"},    # registering a .maas file reads it
    "predict": {"serving"},         # `predict` finds running servers through serving.records
    "ui": {"serving"},              # the web view lists detached servers through serving.records
    "housekeeping": {"serving"},    # gc removes the logs of stopped servers (serving.records knows which run)
    "__main__": {"cli"},            # `python -m maasctl`
}


def allowed(src: str, dst: str) -> bool:
    """Whether unit `src` may import unit `dst` (both keys of LAYERS)."""
    return src == dst or LAYERS[dst] < LAYERS[src] or dst in SIDEWAYS.get(src, set())


def unit_of(module: str) -> str:
    """`maasctl.serving.app` -> `serving`; `maasctl` -> `maasctl`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "maasctl"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def maasctl_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported maasctl module) for every import anywhere in `tree`, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "maasctl":
                    yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "maasctl":
                continue
            if target == "maasctl":  # `from maasctl import tensors` imports maasctl.tensors
                for a in node.names:
                    yield node.lineno, f"maasctl.{a.name}" if a.name in LAYERS else "maasctl"
            else:
                yield node.lineno, target


def layering_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    src = unit_of(module)
    out = []
    for line, target in maasctl_imports(ast.parse(source), module, is_package):
        dst = unit_of(target)
        if dst not in LAYERS:
            out.append(f"{module}:{line}: imports {target}, whose unit '{dst}' has no layer in LAYERS")
        elif not allowed(src, dst):
            out.append(f"{module}:{line}: {src} (L{LAYERS[src]}) imports {target} (L{LAYERS[dst]})")
    return out


def _modules() -> Iterator[tuple[Path, str, ast.AST]]:
    for path in sorted(PKG.rglob("*.py")):
        yield path, _module_name(path), ast.parse(path.read_text(), str(path))


def test_every_unit_has_a_layer():
    units = {unit_of(_module_name(p)) for p in PKG.rglob("*.py")}
    assert units - set(LAYERS) == set()


def test_imports_go_downward_only():
    violations = []
    for path, module, _ in _modules():
        violations += layering_violations(path.read_text(), module, path.name == "__init__.py")
    assert violations == []


def test_the_layering_check_sees_imports_inside_functions():
    """The checker itself: a wrong-way import hidden in a function body, or written relatively, is caught."""
    lazy = "def load():\n    from maasctl.tf.servable import load_servable\n    return load_servable\n"
    assert layering_violations(lazy, "maasctl.serving.manager") == [
        "maasctl.serving.manager:2: serving (L2) imports maasctl.tf.servable (L3)"]
    relative = "import os\n\nfrom ..cli import render\n"
    assert layering_violations(relative, "maasctl.predict.pipeline") == [
        "maasctl.predict.pipeline:3: predict (L2) imports maasctl.cli (L4)"]
    assert layering_violations("from maasctl import tf\n", "maasctl.store.local") == [
        "maasctl.store.local:1: store (L1) imports maasctl.tf (L3)"]
    assert layering_violations("from maasctl.serving import records\n", "maasctl.predict.pipeline") == []
    assert layering_violations("from maasctl.predict import wire\n", "maasctl.serving.app") == [
        "maasctl.serving.app:1: serving (L2) imports maasctl.predict (L2)"]


def _top_level_imports(tree: ast.Module) -> Iterator[str]:
    """Imports executed when the module is imported (module body, including if/try blocks)."""
    stack: list[ast.AST] = list(tree.body)
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


def _all_imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_only_tf_package_imports_tensorflow_at_module_level():
    offenders = [(module, name) for _, module, tree in _modules() if unit_of(module) != "tf"
                 for name in _top_level_imports(tree) if name.split(".")[0] in HEAVY]  # type: ignore[arg-type]
    assert offenders == []


def test_tensorflow_is_imported_only_by_the_tf_package_even_lazily():
    offenders = [(module, name) for _, module, tree in _modules() if unit_of(module) != "tf"
                 for name in _all_imports(tree) if name.split(".")[0] in {"tensorflow", "keras"}]
    assert offenders == []


def test_nothing_imports_the_cli_and_only_the_cli_imports_typer():
    offenders = []
    for _, module, tree in _modules():
        in_cli = unit_of(module) in ("cli", "__main__")
        for name in _all_imports(tree):
            if not in_cli and (name.split(".")[0] == "typer" or name == "maasctl.cli" or name.startswith("maasctl.cli.")):
                offenders.append((module, name))
    assert offenders == []
