"""Rule code inputs come from the scripts' imports at any depth, read with ast: complete, and without the marked ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlarisk.workflow.code_inputs import imported_modules, module_closure

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "vlarisk"
LAYER_PACKAGES = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}


def names(paths):
    """Dotted module names (``train.training``) of package source files; subpackage folders drop."""
    dotted = (Path(p).relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".") for p in paths)
    return {name for name in dotted if not name.endswith("__init__")}


def all_modules() -> dict[str, Path]:
    return {name: path for path in PACKAGE.rglob("*.py") for name in names([path])}


def test_imports_at_any_depth_are_followed_and_marked_ones_are_not(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import vlarisk.data.splits\nfrom vlarisk.data import dataset\nfrom vlarisk.core.cli import run\n\n"
        "def main():\n    from vlarisk.train import training\n    if True:\n        import vlarisk.model.models\n\n"
        "def score():\n    from vlarisk.score.evaluation import (\n        evaluate,\n    )  # code inputs: not of training\n"
    )
    expected = {"data", "data.splits", "data.dataset", "core.cli", "train", "train.training", "model.models"}
    assert imported_modules(script, PACKAGE) == expected
    assert imported_modules(script, PACKAGE, marked=True) == expected | {"score.evaluation"}


def loaded_modules(script: Path, argv: list[str]) -> set[str]:
    """The package modules a Python process has loaded after running ``script`` with ``argv``
    (exiting as ``--help`` does counts as running)."""
    probe = (
        f"import contextlib, io, runpy, sys; sys.argv = ['x', *{argv!r}]\n"
        f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "print(' '.join(sorted(m.partition('.')[2] for m in sys.modules if m.startswith('vlarisk.'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return set(done.stdout.split())


def test_closure_holds_the_modules_python_loads():
    """Every module that running each script to its end (``--help``) loads is in its closure (the
    independent reference); the modules its ``main`` imports after parsing are in the next test."""
    for script in sorted((REPO / "workflow_scripts").glob("*.py")):
        assert loaded_modules(script, ["--help"]) - LAYER_PACKAGES <= names(module_closure(script, PACKAGE)), script.name


def test_closure_holds_what_a_training_run_loads(dataset_path, tmp_path):
    """A training step as the pipeline runs it (``--no-test``) loads the training code inside
    ``main``: all of it is in the closure, and the evaluation code is neither loaded nor listed."""
    script = REPO / "workflow_scripts" / "train_risk_predictor.py"
    argv = ["--data", str(dataset_path), "--output-dir", str(tmp_path / "run"), "--epochs", "1", "--no-test"]
    loaded = loaded_modules(script, argv)
    assert (tmp_path / "run" / "best_model.pt").is_file()
    closure = names(module_closure(script, PACKAGE))
    assert {"train.training", "model.models"} <= loaded - LAYER_PACKAGES <= closure
    assert "score.evaluation" not in loaded


@pytest.mark.parametrize("script", ["train_risk_predictor", "train_multi_model", "train_ablation_cell"])
def test_training_does_not_depend_on_the_metric_code(script):
    closure = names(module_closure(REPO / f"workflow_scripts/{script}.py", PACKAGE))
    assert {"train.training", "model.models", "model.checkpoints", "train.batches", "train.sources", "model.collapse"} <= closure
    assert not {"score.metrics", "score.evaluation", "score.baselines"} & closure


def test_package_imports_have_no_cycle():
    """The package's imports, marked ones included, form an acyclic graph."""
    modules = all_modules()
    graph = {name: imported_modules(path, PACKAGE, marked=True) - LAYER_PACKAGES for name, path in modules.items()}
    assert all(imported_modules(path, PACKAGE) - LAYER_PACKAGES <= graph[name] for name, path in modules.items())
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
