"""Every console command of pyproject.toml resolves to a callable, and each workflow script that has a
command runs the same code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pipeline_utils import load_script

ROOT = Path(__file__).resolve().parents[1]
# [project.scripts] read by hand: tomllib is not in Python 3.10
_SECTION = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[)", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)
SCRIPTS = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"$', _SECTION, re.M))
SAME_CODE = {"vlarisk-compare": "compare_runs", "vlarisk-simulate": "simulate_rollouts", "vlarisk-prepare": "prepare_training_data"}


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_the_command_resolves(command):
    module, function = SCRIPTS[command].split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_guides_steps_and_the_helpers_are_commands():
    assert {"vlarisk-prepare", "vlarisk-train", "vlarisk-evaluate", "vlarisk-check", "vlarisk-compare", "vlarisk-simulate"} <= set(SCRIPTS)


@pytest.mark.parametrize(("command", "script"), sorted(SAME_CODE.items()))
def test_the_workflow_script_runs_the_commands_code(command, script):
    module = importlib.import_module(SCRIPTS[command].split(":")[0])
    assert load_script(script).main is module.main
