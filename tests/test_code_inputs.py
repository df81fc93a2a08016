"""Rule code inputs come from the scripts' imports, read with ast: complete, and not more than loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlarisk.code_inputs import imported_modules, module_closure

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "vlarisk"


def names(paths):
    return {Path(p).stem for p in paths}


def test_imports_at_module_level_are_followed_and_lazy_ones_are_not(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import vlarisk.splits\nfrom vlarisk import dataset\nfrom vlarisk.cli import run\n\ndef later():\n    from vlarisk import evaluation\n"
    )
    assert imported_modules(script) == {"splits", "dataset", "cli"}


def test_closure_equals_the_modules_python_loads():
    """The closure of each script is what importing it really loads (the independent reference)."""
    for script in sorted((REPO / "workflow_scripts").glob("*.py")):
        probe = f"import runpy, sys; sys.argv = ['x']; runpy.run_path({str(script)!r}, run_name='probe'); print(' '.join(sorted(m.split('.')[1] for m in sys.modules if m.startswith('vlarisk.'))))"
        loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
        assert names(module_closure(script, PACKAGE)) - {"__init__"} == set(loaded), script.name


@pytest.mark.parametrize("script", ["train_risk_predictor", "train_multi_model"])
def test_training_does_not_depend_on_the_metric_code(script):
    closure = names(module_closure(REPO / f"workflow_scripts/{script}.py", PACKAGE))
    assert {"training", "models", "checkpoints", "batches", "sources", "collapse"} <= closure
    assert not {"metrics", "evaluation", "baselines"} & closure


def test_package_imports_have_no_cycle():
    """The package's imports, module-level and lazy ones alike, form an acyclic graph."""
    graph = {path.stem: imported_modules(path, lazy=True) for path in PACKAGE.glob("*.py")}
    assert all(imported_modules(path) <= graph[path.stem] for path in PACKAGE.glob("*.py"))
    assert {module for targets in graph.values() for module in targets} <= set(graph), "an import names no module of the package"
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(module: str, path: tuple[str, ...]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join((*path, module))}"
        state[module] = "open"
        for target in sorted(graph[module]):
            visit(target, (*path, module))
        state[module] = "done"
        order.append(module)

    for module in sorted(graph):
        visit(module, ())
    assert len(order) == len(graph)
