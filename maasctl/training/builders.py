"""`model.builder = "module:function"`: find the builder before training, without running its module."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

from maasctl.training.config import TrainConfig, did_you_mean


def check_builder_importable(cfg: TrainConfig) -> None:
    """Find (without importing) the builder's module in the config's directory or on sys.path."""
    builder = cfg.model.get("builder")
    if not builder:
        return
    modname, _, fname = builder.partition(":")
    module = modname.split(".")[0]
    search = [str(cfg.base_dir)] + [p for p in sys.path if p]
    spec = importlib.machinery.PathFinder.find_spec(module, search)
    if spec is None and module not in sys.builtin_module_names:
        raise cfg.error("model.builder", f"cannot import '{builder}': no module '{module}' in {cfg.base_dir} "
                        f"(expected {cfg.base_dir / (module + '.py')}) or on sys.path")
    if spec is not None and spec.origin and modname == module and fname and spec.origin.endswith(".py"):
        _check_builder_defined(cfg, builder, Path(spec.origin), fname)


def _check_builder_defined(cfg: TrainConfig, builder: str, source: Path, fname: str) -> None:
    """Importing a module runs its code: when its source plainly lacks the function, say so without running it."""
    import ast

    try:
        tree = ast.parse(source.read_bytes(), str(source))
    except (SyntaxError, ValueError, OSError, RecursionError):
        return  # let the import report it
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return  # a star import may provide it
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif not isinstance(node, ast.Expr):
            return  # if/try/with/for at top level may define it: only the import can tell
    if "__getattr__" in names or fname in names:
        return
    funcs = sorted(n for n in names if not n.startswith("_"))
    raise cfg.error("model.builder", f"cannot use '{builder}': {source} defines no '{fname}'"
                    f"{did_you_mean(fname, funcs)} (checked without importing it)")
