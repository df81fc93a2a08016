"""Splits by rollout: no rollout in two splits, both outcomes everywhere, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from vlarisk.core.errors import InputError
from vlarisk.data.dataset import load_dataset
from vlarisk.data.splits import (
    calibration_tasks_of,
    plain_split,
    split_rollouts,
    split_rows,
    task_split_seed,
    test_sets,
    unseen_tasks,
    validate_split,
)


def test_no_rollout_in_two_splits(dataset_path):
    dataset = load_dataset(dataset_path)
    split = plain_split(dataset.metadata["rollouts"], 0.2, 0.1, seed=3)
    rows = split_rows(dataset.rollout_id, split)
    seen = [set(dataset.rollout_id[rows[name]].tolist()) for name in ("train", "val", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(r) for r in rows.values()) == len(dataset)
    validate_split(split, dataset.metadata["rollouts"])


def test_split_is_stratified_and_seeded(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    outcome = {r["rollout_id"]: r["success"] for r in rollouts}
    split = plain_split(rollouts, 0.2, 0.1, seed=0)
    for ids in split.values():
        assert {outcome[i] for i in ids} == {True, False}
    assert split == plain_split(rollouts, 0.2, 0.1, seed=0)
    assert split != plain_split(rollouts, 0.2, 0.1, seed=1)


def test_held_out_tasks_form_the_unseen_test_set(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    split = split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks=["0"], calibration_fraction=0.15)
    task = {r["rollout_id"]: r["task"] for r in rollouts}
    every_task_0 = {r["rollout_id"] for r in rollouts if r["task"] == "0"}
    assert set(split["test_unseen"]) == every_task_0
    assert "0" not in {task[i] for name in ("train", "val", "calibration", "test_seen") for i in split[name]}
    assert set(split["test"]) == set(split["test_seen"]) | set(split["test_unseen"])
    assert unseen_tasks(split, rollouts) == ["0"]
    validate_split(split, rollouts)


def test_calibration_holds_only_unused_successes(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    outcome = {r["rollout_id"]: r["success"] for r in rollouts}
    split = split_rollouts(rollouts, 0.2, 0.1, seed=0, calibration_fraction=0.2)
    assert split["calibration"] and all(outcome[i] for i in split["calibration"])
    # 20% of the 30 successes (none held out) go to calibration
    assert len(split["calibration"]) == round(0.2 * 30)
    used = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert not set(split["calibration"]) & used
    assert len(used) + len(split["calibration"]) == len(rollouts)
    validate_split(split, rollouts)


def test_automatic_held_out_tasks_need_enough_tasks():
    def table(tasks):
        return [{"rollout_id": i, "success": i % 2 == 0, "task": str(i % tasks)} for i in range(20 * tasks)]

    few = split_rollouts(table(4), 0.2, 0.1, seed=0, held_out_tasks="auto")
    assert "test_unseen" not in few and unseen_tasks(few, table(4)) == []
    many = split_rollouts(table(10), 0.2, 0.1, seed=0, held_out_tasks="auto", unseen_task_fraction=0.2)
    chosen = unseen_tasks(many, table(10))
    assert len(chosen) == 2
    assert chosen != unseen_tasks(split_rollouts(table(10), 0.2, 0.1, seed=3, held_out_tasks="auto"), table(10))
    train_tasks = {str(i % 10) for i in many["train"]}
    assert not train_tasks & set(chosen)


def test_held_out_tasks_of_one_outcome_are_refused():
    rollouts = [{"rollout_id": i, "success": i >= 5 and i % 2 == 0, "task": "a" if i < 5 else "b"} for i in range(40)]
    with pytest.raises(InputError, match="test_unseen split has only failures"):
        split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks=["a"])


def test_test_sets_must_partition_test(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    split = split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks=["1"])
    broken = {**split, "test_seen": split["test_seen"][1:]}
    with pytest.raises(InputError, match="together hold exactly"):
        validate_split(broken, rollouts, "split.json")
    assert test_sets(split) == ("test_seen", "test_unseen") and test_sets({"test": [1]}) == ("test",)


def test_overlapping_split_file_is_refused(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    split = plain_split(rollouts, 0.2, 0.1)
    split["test"] = split["test"] + split["train"][:1]
    with pytest.raises(InputError, match="more than one split"):
        validate_split(split, rollouts, "split.json")


def test_split_rows_are_sorted_row_indices():
    rollout_id = np.array([0, 0, 1, 1, 1, 2])
    rows = split_rows(rollout_id, {"train": [1], "val": [0], "test": [2]})
    assert rows["train"].tolist() == [2, 3, 4] and rows["test"].tolist() == [5]


def test_calibration_tasks_are_held_out_of_training_and_give_only_successes():
    rollouts = [{"rollout_id": i, "success": i % 3 != 0, "task": str(i % 10)} for i in range(400)]
    split = split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks="auto", calibration_fraction=0.15, calibration_tasks="auto")
    task = {r["rollout_id"]: r["task"] for r in rollouts}
    outcome = {r["rollout_id"]: r["success"] for r in rollouts}
    calibrating = calibration_tasks_of(split, rollouts)
    assert len(calibrating) == 2 and not set(calibrating) & set(unseen_tasks(split, rollouts))
    # every rollout of a calibration task: its successes calibrate, its failures are unused, none trains
    for rid, t in task.items():
        if t in calibrating:
            assert rid in (split["calibration"] if outcome[rid] else split["unused"])
    assert not {task[i] for i in split["train"] + split["val"] + split["test"]} & set(calibrating)
    validate_split(split, rollouts)
    with pytest.raises(InputError, match="both held out for testing and for calibration"):
        split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks=["1"], calibration_tasks=["1"])


def _task_table(tasks: int, per_task: int = 20) -> list[dict]:
    """A rollout table with both outcomes in every task."""
    return [{"rollout_id": i, "success": i % 2 == 0, "task": str(i % tasks)} for i in range(per_task * tasks)]


def test_task_splits_hold_out_different_tasks_where_the_tasks_allow():
    rollouts = _task_table(10)
    splits = [split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks="auto", unseen_task_fraction=0.3, task_split=k) for k in range(3)]
    held = [set(unseen_tasks(split, rollouts)) for split in splits]
    assert [len(tasks) for tasks in held] == [3, 3, 3]
    # 10 tasks hold three disjoint sets of 3: checked pair by pair
    for a in range(3):
        for b in range(a + 1, 3):
            assert not held[a] & held[b], held
    for split, tasks in zip(splits, held, strict=True):
        validate_split(split, rollouts)
        trained = {r["task"] for r in rollouts if r["rollout_id"] in set(split["train"]) | set(split["val"])}
        assert not trained & tasks
    # split 0 is the plain split; split k's draw is seeded (the same call gives the same split)
    assert splits[0] == split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks="auto", unseen_task_fraction=0.3)
    assert splits[2] == split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks="auto", unseen_task_fraction=0.3, task_split=2)


def test_task_splits_reuse_tasks_only_when_they_run_out():
    rollouts = _task_table(5)
    held = [
        set(
            unseen_tasks(
                split_rollouts(rollouts, 0.2, 0.1, seed=1, held_out_tasks="auto", unseen_task_fraction=0.4, task_split=k), rollouts
            )
        )
        for k in range(3)
    ]
    assert held[0] != held[1] and not held[0] & held[1]  # 2 + 2 of 5 tasks: still disjoint
    assert held[2] not in held[:2]  # the third must share a task, but is not a repeat


def test_task_split_seeds_differ_from_plain_seeds():
    assert task_split_seed(7, 0) == 7
    derived = {task_split_seed(seed, k) for seed in range(3) for k in range(1, 4)}
    assert len(derived) == 9 and not derived & set(range(100))


def test_task_splits_need_automatic_task_choice():
    with pytest.raises(InputError, match="task split 1 needs held_out_tasks 'auto'"):
        split_rollouts(_task_table(10), 0.2, 0.1, seed=0, held_out_tasks=["1"], task_split=1)


def test_task_splits_redraw_the_rollouts_when_no_task_can_be_held_out():
    rollouts = _task_table(4)  # too few tasks for unseen ones: the splits differ by their seeds alone
    first, second = (split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks="auto", task_split=k) for k in (0, 1))
    assert "test_unseen" not in second and first["test"] != second["test"]
