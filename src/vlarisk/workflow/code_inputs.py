"""The package modules a command imports, read from the source with ``ast``: a rule's code inputs.

Each rule lists, as inputs, the script it runs and every ``vlarisk`` module that script reaches
through imports, at any depth (the commands import torch and the training code inside ``main``, so
that ``--help`` is quick: those imports count like module-level ones), so a change to one module
re-runs exactly the steps that load it. An import whose line ends with the comment
``# code inputs: not of <step>`` is left out: it serves only a mode the pipeline's rules never run
(scoring the test split in the training commands, which the pipeline does in its own rule).
Nothing is listed by hand, so the lists cannot drift.

Like :mod:`vlarisk.workflow.config_checks`, this module imports nothing of the package, so the Snakefile can
load it on every run at no cost.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

PACKAGE = "vlarisk"


NOT_A_CODE_INPUT = "# code inputs: not of"  # the comment that leaves an import out


def module_file(name: str, package_dir: str | os.PathLike) -> Path | None:
    """The source file of package module ``name`` (dotted, below the package: ``train.training``),
    a subpackage's ``__init__.py`` for a folder, or None when no such module exists."""
    base = Path(package_dir).joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: str | os.PathLike, package_dir: str | os.PathLike, marked: bool = False) -> set[str]:
    """The package modules (dotted below the package: ``vlarisk.train.training`` -> ``train.training``)
    that the file at ``path`` imports anywhere in it, without those marked :data:`NOT_A_CODE_INPUT`
    unless ``marked``."""
    source = Path(path).read_text(encoding="utf-8")
    lines = source.splitlines()
    found = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if not marked and NOT_A_CODE_INPUT in lines[node.end_lineno - 1]:
            continue
        below = (name[len(PACKAGE) + 1 :] for name in names if name.startswith(PACKAGE + "."))
        found.update(name for name in below if module_file(name, package_dir) is not None)
    return found


def module_closure(script: str | os.PathLike, package_dir: str | os.PathLike) -> list[str]:
    """Source files of every package module ``script`` reaches, with the ``__init__.py`` of the
    package and of every subpackage on the way (Python runs them on import), sorted."""
    package_dir = Path(package_dir)
    seen: set[str] = set()
    pending = list(imported_modules(script, package_dir) | imported_modules(package_dir / "__init__.py", package_dir))
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        parents = [".".join(module.split(".")[:depth]) for depth in range(1, module.count(".") + 1)]
        pending.extend(parents)
        pending.extend(imported_modules(module_file(module, package_dir), package_dir) - seen)
    files = {package_dir / "__init__.py", *(module_file(module, package_dir) for module in seen)}
    return sorted(str(path) for path in files)
