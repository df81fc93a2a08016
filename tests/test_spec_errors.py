"""simulate_rollouts.py --spec: a bad spec is one line naming the field (and the valid ones), no traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from vlarisk.core.errors import InputError
from vlarisk.core.spec_options import dataclass_from_json
from vlarisk.data.synthetic import SimulationSpec

ROOT = Path(__file__).resolve().parents[1]
FIELD_LIST = ", ".join(field.name for field in fields(SimulationSpec))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"num_task": 6}', f"--spec: unknown field 'num_task' (did you mean num_tasks?); the fields are {FIELD_LIST}"),
        ("{hidden_dim: 16}", "--spec: not valid JSON (Expecting property name enclosed in double quotes at character 1)"),
        ("[1]", "--spec: expected a JSON object of SimulationSpec fields, got list"),
        ('{"hidden_dim": "16"}', "--spec: field 'hidden_dim' expects int, got \"16\""),
        ('{"with_labels": 1}', "--spec: field 'with_labels' expects bool, got 1"),
        ('{"num_success": true}', "--spec: field 'num_success' expects int, got true"),
        ('{"layout": "x"}', "--spec: layout must be one of ['dict', 'list'], got 'x'"),
        # the config schema's constraints, held by the settings' fields (vlarisk.core.settings.check_values)
        ('{"num_tasks": 0}', "--spec: num_tasks must be >= 1, got 0"),
        ('{"success_steps": [10, 1]}', "--spec: success_steps must be a rollout length (at least 2), or an inclusive range"),
        ('{"signal_strength": [1, 2]}', "--spec: signal_strength needs 7 values, got 2"),
        ('{"nonlinear_dimensions": [7]}', "--spec: nonlinear_dimensions values must be <= 6, got 7"),
        ('{"failure_onset": [0.5, 0.2]}', "--spec: failure_onset must be a range lo <= hi"),
    ],
)
def test_bad_spec_names_the_field(text, message):
    with pytest.raises(InputError) as caught:
        dataclass_from_json(SimulationSpec, text, "--spec")
    assert str(caught.value).startswith(message), str(caught.value)


def test_good_spec_gives_the_dataclass():
    spec = dataclass_from_json(
        SimulationSpec, '{"hidden_dim": 16, "failure_drift": 2, "success_steps": [10, 12], "signal_strength": [1,1,1,1,1,1,1]}'
    )
    assert spec == SimulationSpec(hidden_dim=16, failure_drift=2, success_steps=(10, 12), signal_strength=[1] * 7)


def test_the_script_prints_one_line_and_exits_2(tmp_path):
    out = [str(tmp_path / name) for name in ("s.pkl", "f.pkl", "p.npz")]
    script = ROOT / "workflow_scripts" / "simulate_rollouts.py"
    command = [sys.executable, str(script), "--success", out[0], "--failure", out[1], "--planting", out[2], "--spec", '{"num_task": 6}']
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --spec: unknown field 'num_task' (did you mean num_tasks?); the fields are {FIELD_LIST}"
    ]
