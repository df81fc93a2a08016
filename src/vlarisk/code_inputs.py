"""The package modules a command imports, read from the source with ``ast``: a rule's code inputs.

Each rule lists, as inputs, the script it runs and every ``vlarisk`` module that script reaches
through imports, at any depth (the commands import torch and the training code inside ``main``, so
that ``--help`` is quick: those imports count like module-level ones), so a change to one module
re-runs exactly the steps that load it. An import whose line ends with the comment
``# code inputs: not of <step>`` is left out: it serves only a mode the pipeline's rules never run
(scoring the test split in the training commands, which the pipeline does in its own rule).
Nothing is listed by hand, so the lists cannot drift.

Like :mod:`vlarisk.config_checks`, this module imports nothing of the package, so the Snakefile can
load it on every run at no cost.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

PACKAGE = "vlarisk"


NOT_A_CODE_INPUT = "# code inputs: not of"  # the comment that leaves an import out


def imported_modules(path: str | os.PathLike, marked: bool = False) -> set[str]:
    """Names of the ``vlarisk`` modules that the file at ``path`` imports (``vlarisk.x`` -> ``x``)
    anywhere in it, without those marked :data:`NOT_A_CODE_INPUT` unless ``marked``."""
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
        found.update(name.split(".")[1] for name in names if name.startswith(PACKAGE + ".") and name.count(".") >= 1)
    return found


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
