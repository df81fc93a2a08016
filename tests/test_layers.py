"""The package's folders are its layers: a module imports only from its own folder and the folders
below it, at any depth of the module (lazy imports count), so the layering in
docs/architecture.md is a fact of the code rather than a wish."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vlarisk"
# Bottom to top; the same order as the table in docs/architecture.md.
LAYERS = ("core", "data", "physics", "model", "train", "score", "report", "workflow", "commands")


def imported_layers(path: Path) -> set[tuple[str, int]]:
    """``(layer, line)`` of every ``vlarisk.<layer>`` import in the file at ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update((name.split(".")[1], node.lineno) for name in names if name.startswith("vlarisk.") and name.count(".") >= 1)
    return found


def layer_violations(package: Path) -> list[str]:
    """``file:line imports <layer>`` for every import of a layer above the importing module's."""
    violations = []
    for layer in LAYERS:
        for path in sorted((package / layer).glob("*.py")):
            for target, line in sorted(imported_layers(path)):
                if target in LAYERS and LAYERS.index(target) > LAYERS.index(layer):
                    violations.append(f"{layer}/{path.name}:{line} imports {target}")
    return violations


def test_every_module_sits_in_a_layer_folder():
    assert sorted(path.name for path in PACKAGE.glob("*.py")) == ["__init__.py"]
    folders = sorted(path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file())
    assert folders == sorted(LAYERS)


def test_imports_point_down_the_layers():
    assert layer_violations(PACKAGE) == []


def test_an_upward_import_is_caught(tmp_path):
    """The check itself: a data module importing the scoring layer is reported."""
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "data" / "reader.py").write_text("def f():\n    from vlarisk.score import metrics\n")
    (tmp_path / "score" / "metrics.py").write_text("from vlarisk.data import reader\n")
    assert layer_violations(tmp_path) == ["data/reader.py:2 imports score"]
