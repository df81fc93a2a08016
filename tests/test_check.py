"""vlarisk-check: counts, labels and the detection outlook of rollout files, against plain recomputations;
and the writer example of docs/rollout-format.md runs and gives files that check and prepare."""

from __future__ import annotations

import math
import pickle
import re
import runpy
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vlarisk.commands.check import main
from vlarisk.core.errors import InputError
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import DEFAULTS
from vlarisk.workflow.check import check_rollouts, detection_outlook, min_calibration_successes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5])
def test_min_calibration_successes_is_ceil_of_one_minus_alpha_over_alpha(alpha):
    exact = Fraction(str(alpha))
    assert min_calibration_successes(alpha) == math.ceil((1 - exact) / exact)


def _write(path: Path, rollouts: list[dict]) -> Path:
    path.write_bytes(pickle.dumps(rollouts))
    return path


def _rollouts(rng, count: int, tasks: int, labelled_every: int = 0) -> list[dict]:
    """``count`` rollouts of 5-14 steps with 6-D states; every ``labelled_every``-th step labelled (0: none)."""
    rollouts = []
    for index in range(count):
        steps = []
        for t in range(int(rng.integers(5, 15))):
            step = {"action": rng.normal(size=7), "hidden_state": rng.normal(size=6).astype(np.float32)}
            if labelled_every and t % labelled_every == 0:
                step["per_dim_risk"] = rng.uniform(size=7)
            steps.append(step)
        rollouts.append({"task_id": index % tasks, "steps": steps})
    return rollouts


def test_counts_match_a_plain_recount(tmp_path):
    rng = np.random.default_rng(3)
    successes, failures = _rollouts(rng, 14, 7, labelled_every=3), _rollouts(rng, 9, 7)
    failures[2]["steps"][1]["hidden_state"] = None  # a failed hook: skipped and counted
    failures[4]["steps"][0]["hidden_state"] = np.full(6, np.nan, np.float32)
    successes.append({"task_id": 0, "steps": []})  # empty: skipped
    check = check_rollouts(_write(tmp_path / "s.pkl", successes), _write(tmp_path / "f.pkl", failures))
    assert (check.count(True), check.count(False)) == (14, 9)
    assert check.steps[True] == sum(len(r["steps"]) for r in successes)
    assert check.steps[False] == sum(len(r["steps"]) for r in failures) - 2
    assert check.labelled_steps == sum("per_dim_risk" in s for r in successes for s in r["steps"])
    assert check.hidden_dim == 6
    assert (check.skips.empty_rollouts, check.skips.wrong_hidden_length, check.skips.nonfinite_hidden) == (1, 1, 1)
    expected = {str(task): (0, 0) for task in range(7)}
    for rollouts, column in ((successes, 0), (failures, 1)):
        for rollout in rollouts:
            if rollout["steps"]:
                counts = list(expected[str(rollout["task_id"])])
                counts[column] += 1
                expected[str(rollout["task_id"])] = tuple(counts)
    assert check.per_task() == expected


def test_outlook_counts_calibration_successes_of_the_seen_tasks(tmp_path):
    rng = np.random.default_rng(4)
    successes, failures = _rollouts(rng, 70, 7), _rollouts(rng, 35, 7)
    check = check_rollouts(_write(tmp_path / "s.pkl", successes), _write(tmp_path / "f.pkl", failures))
    outlook = detection_outlook(check, alphas=(0.05, 0.1))
    unseen = set(outlook["unseen_tasks"])
    assert unseen, "7 tasks: auto holds some out"
    seen_successes = sum(str(r["task_id"]) not in unseen for r in successes)
    assert outlook["calibration_successes"] == round(DEFAULTS["calibration_fraction"] * seen_successes)
    assert outlook["unseen_rollouts"] == (
        sum(str(r["task_id"]) in unseen for r in successes),
        sum(str(r["task_id"]) in unseen for r in failures),
    )
    assert outlook["alarms"][0.1] == {"needed": 9, "have": outlook["calibration_successes"]}


def test_command_reports_too_few_calibration_successes(tmp_path, capsys):
    rng = np.random.default_rng(5)
    success = _write(tmp_path / "s.pkl", _rollouts(rng, 24, 6))
    failure = _write(tmp_path / "f.pkl", _rollouts(rng, 24, 6))
    main(["--success", str(success), "--failure", str(failure)])
    out = capsys.readouterr().out
    assert re.search(r"alpha 0\.1: needs >= 9 calibration successes, has \d: NO alarm threshold", out), out
    assert "hidden size: 6" in out and "tasks: 6" in out and "0 of" in out and "get the heuristic labels" in out


def test_a_split_that_cannot_be_made_is_reported_not_raised(tmp_path, capsys):
    rng = np.random.default_rng(6)
    main(
        [
            "--success",
            str(_write(tmp_path / "s.pkl", _rollouts(rng, 2, 1))),
            "--failure",
            str(_write(tmp_path / "f.pkl", _rollouts(rng, 2, 1))),
        ]
    )
    assert "the split cannot be made:" in capsys.readouterr().out


def test_a_bad_step_names_file_rollout_step_and_field(tmp_path):
    rng = np.random.default_rng(7)
    failures = _rollouts(rng, 3, 1)
    failures[1]["steps"][2]["action"] = [0.0] * 6
    failure = _write(tmp_path / "f.pkl", failures)
    with pytest.raises(InputError, match=rf"^{failure}: rollout 1, step 2: field 'action' must have 7 values"):
        check_rollouts(_write(tmp_path / "s.pkl", _rollouts(rng, 3, 1)), failure)


def test_the_documented_writer_example_runs_and_its_files_prepare(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "rollout-format.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(example.strip().splitlines()) <= 20
    script = tmp_path / "writer.py"
    script.write_text(example)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script))
    check = check_rollouts("success_rollouts.pkl", "failure_rollouts.pkl")
    assert (check.count(True), check.count(False), check.hidden_dim, len(check.per_task())) == (12, 12, 64, 6)
    metadata = prepare_dataset("success_rollouts.pkl", "failure_rollouts.pkl", tmp_path / "ds.vlarisk")
    assert metadata["num_without_labels"] == 24 * 40


def test_a_hooks_batch_of_one_gets_a_hint(tmp_path):
    rng = np.random.default_rng(8)
    successes = _rollouts(rng, 2, 1)
    successes[0]["steps"][3]["hidden_state"] = np.zeros((1, 6), np.float32)
    success = _write(tmp_path / "s.pkl", successes)
    with pytest.raises(
        InputError,
        match=r"rollout 0, step 3: field 'hidden_state' must be a vector \[D\], got shape \(1, 6\) \(a batch of one\? save hidden_state\[0\], shape \(6,\)\)$",
    ):
        check_rollouts(success, _write(tmp_path / "f.pkl", _rollouts(rng, 2, 1)))
