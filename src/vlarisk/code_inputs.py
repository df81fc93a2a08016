"""The package modules a command imports, read from the source with ``ast``: a rule's code inputs.

Each rule lists, as inputs, the script it runs and every ``vlarisk`` module that script reaches
through module-level imports, at any depth, so a change to one module re-runs exactly the steps
that load it. Imports inside functions are the package's deliberately lazy ones (torch and the
model API on first use) and are not followed. Nothing is listed by hand, so the lists cannot drift.

Like :mod:`vlarisk.config_checks`, this module imports nothing of the package, so the Snakefile can
load it on every run at no cost.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

PACKAGE = "vlarisk"


def imported_modules(path: str | os.PathLike, lazy: bool = False) -> set[str]:
    """Names of the ``vlarisk`` modules that the file at ``path`` imports (``vlarisk.x`` -> ``x``)
    at module level, and with ``lazy`` inside functions too."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree) if lazy else _module_level(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name.split(".")[1] for name in names if name.startswith(PACKAGE + ".") and name.count(".") >= 1)
    return found


def _module_level(tree: ast.AST):
    """Every node of ``tree`` outside function bodies."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
            yield from _module_level(node)


def module_closure(script: str | os.PathLike, package_dir: str | os.PathLike) -> list[str]:
    """Source files of every package module ``script`` reaches, ``__init__.py`` included, sorted."""
    package_dir = Path(package_dir)
    seen: set[str] = {"__init__"}
    pending = list(imported_modules(script) | imported_modules(package_dir / "__init__.py"))
    while pending:
        module = pending.pop()
        path = package_dir / f"{module}.py"
        if module in seen or not path.is_file():
            continue
        seen.add(module)
        pending.extend(imported_modules(path) - seen)
    return sorted(str(package_dir / f"{module}.py") for module in seen)
