"""Splits by rollout: no rollout in two splits, both outcomes everywhere, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from vlarisk.dataset import load_dataset
from vlarisk.errors import InputError
from vlarisk.splits import split_rollouts, split_rows, validate_split


def test_no_rollout_in_two_splits(dataset_path):
    dataset = load_dataset(dataset_path)
    split = split_rollouts(dataset.metadata["rollouts"], 0.2, 0.1, seed=3)
    rows = split_rows(dataset.rollout_id, split)
    seen = [set(dataset.rollout_id[rows[name]].tolist()) for name in ("train", "val", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(r) for r in rows.values()) == len(dataset)
    validate_split(split, dataset.metadata["rollouts"])


def test_split_is_stratified_and_seeded(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    outcome = {r["rollout_id"]: r["success"] for r in rollouts}
    split = split_rollouts(rollouts, 0.2, 0.1, seed=0)
    for ids in split.values():
        assert {outcome[i] for i in ids} == {True, False}
    assert split == split_rollouts(rollouts, 0.2, 0.1, seed=0)
    assert split != split_rollouts(rollouts, 0.2, 0.1, seed=1)


def test_held_out_tasks_form_the_test_set(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    split = split_rollouts(rollouts, 0.2, 0.1, seed=0, held_out_tasks=["0"])
    task = {r["rollout_id"]: r["task"] for r in rollouts}
    assert {task[i] for i in split["test"]} == {"0"}
    assert "0" not in {task[i] for i in split["train"] + split["val"]}


def test_overlapping_split_file_is_refused(dataset_path):
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    split = split_rollouts(rollouts, 0.2, 0.1)
    split["test"] = split["test"] + split["train"][:1]
    with pytest.raises(InputError, match="more than one split"):
        validate_split(split, rollouts, "split.json")


def test_split_rows_are_sorted_row_indices():
    rollout_id = np.array([0, 0, 1, 1, 1, 2])
    rows = split_rows(rollout_id, {"train": [1], "val": [0], "test": [2]})
    assert rows["train"].tolist() == [2, 3, 4] and rows["test"].tolist() == [5]
