"""Calibration counts: the fewest successes a conformal threshold needs, recorded at split time and
warned about at plan time."""

from __future__ import annotations

import json

import pytest
from pipeline_utils import load_script
from test_planning import load

from vlarisk.data.calibration_counts import calibration_count, min_calibration_successes, plan_warnings
from vlarisk.data.dataset import load_dataset
from vlarisk.score.detection import conformal_rank
from vlarisk.workflow.planning import Plan


@pytest.mark.parametrize("alpha", [0.5, 0.25, 0.2, 0.1, 0.05, 0.01, 0.3, 0.15, 1 / 3, 1 / 6, 1 / 14])  # 1/3 ...: float noise
def test_the_minimum_is_the_first_count_with_a_finite_conformal_rank(alpha):
    # independent reference: walk n up until the detection module's rank fits inside n
    n = 1
    while conformal_rank(n, alpha) > n:
        n += 1
    assert min_calibration_successes(alpha) == n


def test_the_usual_levels_need_9_and_19_successes():
    assert (min_calibration_successes(0.1), min_calibration_successes(0.05)) == (9, 19)
    assert calibration_count(8, 0.1)["enough"] is False and calibration_count(9, 0.1)["enough"] is True


def test_the_split_records_its_calibration_count(dataset_path, tmp_path, capsys):
    output = tmp_path / "split.json"
    load_script("split_dataset").main(
        ["--data", str(dataset_path), "--output", str(output), "--calibration-split", "0.15", "--alpha", "0.1"]
    )
    split = json.loads(output.read_text())
    successes = len(split["calibration"])
    assert split["calibration_count"] == {
        "successes": successes,
        "alpha": 0.1,
        "needed": 9,
        "enough": successes >= 9,
        "fitted_on": "calibration",
    }
    assert f"fitted on {successes} calibration successes (9 needed at alpha 0.1)" in capsys.readouterr().out


def test_a_split_without_calibration_rollouts_counts_the_val_successes_and_warns(dataset_path, tmp_path, capsys):
    output = tmp_path / "split.json"
    load_script("split_dataset").main(["--data", str(dataset_path), "--output", str(output), "--calibration-split", "0", "--alpha", "0.1"])
    split = json.loads(output.read_text())
    success = {r["rollout_id"]: r["success"] for r in load_dataset(dataset_path).metadata["rollouts"]}
    val_successes = sum(1 for i in split["val"] if success[i])  # plain count
    assert split["calibration_count"]["fitted_on"] == "val" and split["calibration_count"]["successes"] == val_successes
    assert "no conformal guarantee" in capsys.readouterr().out


def test_too_few_calibration_successes_warn_with_the_count(dataset_path, tmp_path, capsys):
    output = tmp_path / "split.json"
    # 30 successes over 4 tasks, 5% of them for calibration: 1 or 2, fewer than the 19 alpha 0.05 needs
    load_script("split_dataset").main(
        ["--data", str(dataset_path), "--output", str(output), "--calibration-split", "0.05", "--alpha", "0.05"]
    )
    split = json.loads(output.read_text())
    assert split["calibration_count"]["enough"] is False
    assert "warning:" in capsys.readouterr().out


def _simulated_plan(num_success: int, **split) -> Plan:
    sources = {"small": {"simulate": {"hidden_dim": 16, "num_success": num_success, "num_failure": 40, "num_tasks": 10, "seed": 0}}}
    return Plan(load("tests/data/tiny_config.yaml", sources=sources, split={**load()["split"], **split}))


def test_a_dry_run_warns_from_a_simulated_spec():
    # 40 successes, 20% of tasks held out, 15% of the rest: about 5, fewer than 9
    warnings = plan_warnings(_simulated_plan(40), lambda path: None)
    assert len(warnings) == 1 and "about 5 calibration successes" in warnings[0] and "9" in warnings[0]
    assert plan_warnings(_simulated_plan(200), lambda path: None) == []
    three = plan_warnings(_simulated_plan(40, n_task_splits=3), lambda path: None)
    assert len(three) == 3 and "task-split-2" in three[2]


def test_a_dry_run_warns_from_an_existing_split_file_first():
    plan = _simulated_plan(200)
    recorded = {"calibration_count": calibration_count(4, plan.alpha)}
    warnings = plan_warnings(plan, lambda path: recorded)
    assert len(warnings) == 1 and " 4 calibration successes" in warnings[0] and "about" not in warnings[0]
    # a count recorded at another alpha is stale: the spec decides
    stale = {"calibration_count": calibration_count(4, 0.3)}
    assert plan_warnings(plan, lambda path: stale) == []


def test_a_dry_run_warns_once_when_no_split_has_calibration_rollouts():
    warnings = plan_warnings(_simulated_plan(200, calibration_fraction=0.0), lambda path: None)
    assert len(warnings) == 1 and "no conformal guarantee" in warnings[0]
