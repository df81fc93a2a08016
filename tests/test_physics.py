"""A tiny MetaWorld collection (reach, a small policy, short episodes): recorded fields, exact
replay, the output read and prepared by the existing steps, and one-line errors for bad tasks.

Skipped when the simulator extra (``pip install -e ".[sim]"``) is not installed.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld", reason='the simulator extra is not installed: pip install -e ".[sim]"')

from vlarisk.core.errors import InputError  # noqa: E402
from vlarisk.data.prepare import prepare_dataset  # noqa: E402
from vlarisk.data.rollouts import load_rollouts  # noqa: E402
from vlarisk.physics.collect import COLLECTION_FILE, FAILURE_FILE, SUCCESS_FILE, CollectionSettings, collect  # noqa: E402
from vlarisk.physics.env import TaskEnv, check_tasks  # noqa: E402
from vlarisk.physics.episodes import replay  # noqa: E402
from vlarisk.physics.policy import PolicySettings, train_policy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK, HORIZON = "reach-v3", 60


SETTINGS = CollectionSettings((TASK,), 6, 0, HORIZON, {"none": 0.5, "action_noise": 0.5}, max_labelled_failures=2, workers=1)


@pytest.fixture(scope="module")
def policy():
    """A small reach policy (six demos)."""
    return train_policy([TASK], PolicySettings(demos_per_task=6, epochs=40, horizon=HORIZON, hidden_dims=(32, 32)), log=lambda _: None)


@pytest.fixture(scope="module")
def collected(tmp_path_factory, policy):
    """Six reach episodes, two failures labelled, in this process: ``(out dir, summary)``."""
    out = tmp_path_factory.mktemp("physics")
    return out, collect(SETTINGS, policy, out, log=lambda _: None)


@pytest.mark.slow
def test_worker_processes_collect_the_same_rollouts(collected, policy, tmp_path):
    out, summary = collected
    parallel = collect(dataclasses.replace(SETTINGS, workers=2), policy, tmp_path, log=lambda _: None)
    assert parallel["failures"] == summary["failures"]
    for name in (SUCCESS_FILE, FAILURE_FILE):
        for one, other in zip(load_rollouts(str(out / name)), load_rollouts(str(tmp_path / name)), strict=True):
            for field in ("executed_action", "per_dim_risk", "hidden_state"):
                np.testing.assert_array_equal(np.stack([s[field] for s in one["steps"]]), np.stack([s[field] for s in other["steps"]]))


def test_collection_records_every_field(collected):
    out, summary = collected
    successes, failures = load_rollouts(str(out / SUCCESS_FILE)), load_rollouts(str(out / FAILURE_FILE))
    assert successes and failures and (out / COLLECTION_FILE).is_file()
    assert summary["per_task"][TASK]["episodes"] == 6 and summary["absent_dimensions"] == ["roll", "pitch", "yaw"]
    for rollout in successes + failures:
        assert rollout["task_id"] == TASK and rollout["absent_dimensions"] == ["roll", "pitch", "yaw"]
        step = rollout["steps"][0]
        assert step["action"].shape == (7,) and not step["action"][3:6].any()
        assert step["hidden_state"].shape == (32,) and step["hidden_state"].dtype == np.float32
        assert step["executed_action"].dtype == np.float64 and step["expert_action"].shape == (4,)
        assert set(rollout["perturbation"]) == {"kind", "axis", "magnitude", "start"}
    for rollout in failures:
        assert 0 <= rollout["t_star"] <= len(rollout["steps"]) and rollout["blame"][3:6] == [None] * 3
        assert len(rollout["steps"]) == HORIZON
    assert [r["perturbation"] for r in failures] == [r["perturbation"] for r in summary["failures"]]


def test_replay_reproduces_a_recorded_rollout_exactly(collected):
    out, _ = collected
    for name, solved in ((SUCCESS_FILE, True), (FAILURE_FILE, False)):
        rollout = load_rollouts(str(out / name))[0]
        observations, replayed_solved = replay(TaskEnv(TASK), rollout["seed"], [s["executed_action"] for s in rollout["steps"]])
        assert replayed_solved == solved
        np.testing.assert_array_equal(np.stack(observations), np.stack([s["observation"] for s in rollout["steps"]]))


def test_output_prepares_with_the_provided_labels(collected, tmp_path):
    out, _ = collected
    metadata = prepare_dataset(out / SUCCESS_FILE, out / FAILURE_FILE, tmp_path / "physics.vlarisk", labelling="require")
    assert metadata["num_failure_rollouts"] == 2 and metadata["num_without_labels"] == 0


def test_wrong_task_names_list_close_ones():
    with pytest.raises(InputError, match="closest: pick-place-v3"):
        check_tasks(["pick-plac-v3"], "metaworld")
    with pytest.raises(InputError, match="unknown environment"):
        check_tasks([TASK], env="libero")


def test_the_command_reports_a_wrong_task_in_one_line(tmp_path):
    command = [sys.executable, str(ROOT / "workflow_scripts" / "collect_rollouts.py"), "--tasks", "push-v9", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "push-v3" in done.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mix", '{"earthquake": 1}'], "--mix: unknown fault kinds"),
        (["--mix", "{not json"], "--mix: not valid JSON"),
        (["--policy-settings", '{"layers": 3}'], "--policy-settings: unknown field 'layers'"),
        (["--episodes", "0"], "episodes must be >= 1, got 0"),
    ],
)
def test_bad_collection_flags_fail_in_one_line(flags, message, tmp_path):
    from vlarisk.commands.collect import main

    with pytest.raises(InputError, match=message):
        main(["--tasks", TASK, "--episodes", "1", "--out", str(tmp_path), "--train-only", *flags])
