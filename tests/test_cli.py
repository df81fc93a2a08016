"""Command lines: every command's help shows its defaults and choices; the guide's steps are
installed commands that run the same code as ``python workflow_scripts/<script>.py``."""

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vlarisk.core.cli import HelpFormatter

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow_scripts").glob("*.py"))
# The installed commands and the scripts that run the same code.
COMMANDS = {
    "vlarisk-prepare": ("vlarisk.commands.prepare:cli", "prepare_training_data"),
    "vlarisk-train": ("vlarisk.commands.train:cli", "train_risk_predictor"),
    "vlarisk-train-multi": ("vlarisk.commands.train_multi:cli", "train_multi_model"),
    "vlarisk-evaluate": ("vlarisk.commands.evaluate:cli", "evaluate_risk_predictor"),
    "vlarisk-check": ("vlarisk.commands.check:cli", None),
    "vlarisk-compare": ("vlarisk.commands.compare:cli", "compare_runs"),
    "vlarisk-simulate": ("vlarisk.commands.simulate:cli", "simulate_rollouts"),
    "vlarisk-split": ("vlarisk.commands.split:cli", "split_dataset"),
    "vlarisk-run": ("vlarisk.commands.run:cli", None),
    "vlarisk-collect": ("vlarisk.commands.collect:cli", "collect_rollouts"),
}


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parsers_of(script: Path, monkeypatch, capsys) -> tuple[str, list[argparse.ArgumentParser]]:
    """``--help`` output of ``script`` and every parser it builds, sub-command parsers included."""
    built = []
    original = argparse.ArgumentParser.parse_known_args

    def recording(self, args=None, namespace=None):
        built.append(self)
        return original(self, args, namespace)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", recording)
    with pytest.raises(SystemExit) as exited:
        load_script(script).main(["--help"])
    assert exited.value.code == 0
    parsers = list(built[:1])
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return capsys.readouterr().out, parsers


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_help_shows_defaults_and_choices(script, monkeypatch, capsys):
    printed, parsers = parsers_of(script, monkeypatch, capsys)
    assert printed.startswith("usage:")
    for parser in parsers:
        assert issubclass(parser.formatter_class, HelpFormatter), f"{parser.prog}: {parser.formatter_class.__name__}"
        text = flat(parser.format_help())
        for action in parser._actions:
            default = action.default
            shown = not (
                action.required or action.nargs == 0 or default in (None, argparse.SUPPRESS) or (isinstance(default, list) and not default)
            )
            if shown:
                assert f"(default: {default})" in text, f"{parser.prog} {action.option_strings}: default {default!r} not shown"
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                for choice in action.choices:
                    assert str(choice) in text, f"{parser.prog} {action.option_strings}: choice {choice!r} not shown"


def test_required_options_and_flags_show_no_default(monkeypatch, capsys):
    printed, _ = parsers_of(ROOT / "workflow_scripts" / "prepare_training_data.py", monkeypatch, capsys)
    assert "default: None" not in printed and "default: False" not in printed


def test_training_help_shows_every_setting_s_default(monkeypatch, capsys):
    printed = flat(parsers_of(ROOT / "workflow_scripts" / "train_risk_predictor.py", monkeypatch, capsys)[0])
    for expected in (
        "--epochs EPOCHS training epochs (the guide's 50; the pipeline's config/config.yaml sets 20 for its quick run) (default: 50)",
        "{mse,mae,huber,bce}",
        "(default: bce)",
        "(default: [512, 256])",
    ):
        assert expected in printed


def project_scripts() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_pyproject_declares_the_guide_s_commands():
    assert project_scripts() == {name: target for name, (target, _) in COMMANDS.items()}


@pytest.mark.parametrize("name", [name for name, (_, script) in COMMANDS.items() if script])
def test_scripts_are_the_commands(name):
    """The script runs the package's ``main``, so the guide's ``python workflow_scripts/...`` and
    the command cannot drift apart."""
    target, script = COMMANDS[name]
    module = importlib.import_module(target.split(":")[0])
    assert load_script(ROOT / "workflow_scripts" / f"{script}.py").main is module.main


SHIM = re.compile(
    r'#!/usr/bin/env python\n"""[^"]+"""\n\nfrom vlarisk\.commands\.(\w+) import main\nfrom vlarisk\.core\.cli import run\n\n'
    r'if __name__ == "__main__":\n    run\(main\)\n'
)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_every_script_is_the_same_thin_shim(script):
    """One convention for every command: a script only runs the ``main`` of a module in
    ``vlarisk.commands``, so its logic is importable and tested like the rest of the package."""
    shim = SHIM.fullmatch(script.read_text(encoding="utf-8"))
    assert shim, f"{script.name}: not the thin shim over vlarisk.commands.<name>.main"
    assert (ROOT / "src" / "vlarisk" / "commands" / f"{shim[1]}.py").is_file()


@pytest.mark.parametrize("name", COMMANDS)
def test_entry_points_run_help(name, monkeypatch, capsys):
    module_name, function = COMMANDS[name][0].split(":")
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exited:
        getattr(importlib.import_module(module_name), function)()
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {name} ")


HEAVY_LIBRARIES = ("torch", "sklearn", "matplotlib")  # each takes a second or more to import


@pytest.mark.parametrize("name", COMMANDS)
def test_help_loads_no_heavy_library(name):
    """A command's ``--help`` (and so its usage errors) comes without importing torch,
    scikit-learn or matplotlib: those load in ``main`` once the flags are parsed."""
    module_name, function = COMMANDS[name][0].split(":")
    probe = (
        f"import sys, contextlib, io; sys.argv = [{name!r}, '--help']; from {module_name} import {function}\n"
        f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): {function}()\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_LIBRARIES)!r})))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == []


def test_installed_commands_run():
    """``pip install -e .`` put the commands beside the interpreter; they start and print their help."""
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name.startswith("vlarisk")}
    assert installed == project_scripts(), "the installed commands differ from pyproject.toml: run `pip install -e .` again"
    bindir = Path(sys.executable).parent
    for name in COMMANDS:
        done = subprocess.run([str(bindir / name), "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: {name} ")
    done = subprocess.run([str(bindir / "vlarisk-train"), "--epochs", "0x"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid int value: '0x'" in done.stderr


def test_a_guide_command_runs_as_a_script():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "workflow_scripts" / "prepare_training_data.py"), "--help"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert re.match(r"usage: prepare_training_data\.py ", done.stdout)
