"""Reading both rollout layouts, the heuristic labels, and the prepared dataset format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vlarisk.data.dataset import load_dataset
from vlarisk.data.labels import failure_window, heuristic_risk_labels
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.rollouts import load_rollouts


def test_heuristic_labels_follow_the_reference_rule():
    actions = np.zeros((50, 7), dtype=np.float32)
    actions[:, 0] = np.linspace(-1.0, 1.0, 50)
    actions[:, 6] = 0.5
    labels = heuristic_risk_labels(actions, success=False)
    window = failure_window(50)  # max(10, 0.2 * 50) = 10
    assert window == 10
    inside = np.abs(actions[-window:])
    np.testing.assert_allclose(labels[-window:, 0], inside[:, 0] / inside[:, 0].max())
    np.testing.assert_allclose(labels[-window:, 6], 1.0)
    np.testing.assert_allclose(labels[:-window], np.clip(0.1 * np.abs(actions[:-window]), 0, 1))
    assert not heuristic_risk_labels(actions, success=True).any()


def test_window_grows_with_long_episodes():
    assert failure_window(520) == 104


def test_both_pickle_layouts_are_read(rollout_files, unlabelled_rollout_files):
    dict_layout = load_rollouts(str(rollout_files[1]))
    list_layout = load_rollouts(str(unlabelled_rollout_files[1]))
    assert isinstance(dict_layout, list) and isinstance(list_layout, list)
    with open(rollout_files[1], "rb") as handle:
        assert "trajectories" in pickle.load(handle)
    with open(unlabelled_rollout_files[1], "rb") as handle:
        assert isinstance(pickle.load(handle), list)


def test_provided_labels_are_used_and_ids_kept(rollout_files, dataset_path):
    dataset = load_dataset(dataset_path)
    assert dataset.arrays["has_provided_label"].all()
    rollouts = load_rollouts(str(rollout_files[1]))
    first_failure = next(r for r in dataset.metadata["rollouts"] if not r["success"])
    rows = np.flatnonzero(dataset.rollout_id == first_failure["rollout_id"])
    expected = np.array([s["labels"]["per_dim_risk"] for s in rollouts[first_failure["index"]]["steps"]], dtype=np.float32)
    np.testing.assert_array_equal(dataset.labels[rows], expected)
    np.testing.assert_array_equal(dataset.arrays["step_index"][rows], np.arange(len(rows)))
    assert dataset.metadata["task_names"][dataset.arrays["task_index"][rows[0]]] == str(rollouts[first_failure["index"]]["task_id"])


def test_unlabelled_rollouts_get_heuristic_labels(unlabelled_rollout_files, tmp_path):
    prepare_dataset(unlabelled_rollout_files[0], unlabelled_rollout_files[1], tmp_path / "d.vlarisk")
    dataset = load_dataset(tmp_path / "d.vlarisk")
    assert not dataset.arrays["has_provided_label"].any()
    rollouts = load_rollouts(str(unlabelled_rollout_files[1]))
    rows = np.flatnonzero(dataset.rollout_id == dataset.metadata["num_success_rollouts"])  # first failure
    expected = heuristic_risk_labels(np.array(rollouts[0]["actions"]), success=False)
    np.testing.assert_array_equal(dataset.labels[rows], expected)
    assert not dataset.labels[dataset.arrays["success"] == 1].any()


def test_require_labels_drops_unlabelled_steps(unlabelled_rollout_files, tmp_path):
    from vlarisk.core.errors import InputError

    with pytest.raises(InputError, match="no usable successful rollouts"):
        prepare_dataset(unlabelled_rollout_files[0], unlabelled_rollout_files[1], tmp_path / "d.vlarisk", labelling="require")
    assert not (tmp_path / "d.vlarisk").exists()


def test_heuristic_variant_ignores_provided_labels(rollout_files, tmp_path):
    prepare_dataset(rollout_files[0], rollout_files[1], tmp_path / "h.vlarisk", labelling="heuristic")
    dataset = load_dataset(tmp_path / "h.vlarisk")
    assert dataset.metadata["labelling"] == "heuristic" and not dataset.arrays["has_provided_label"].any()


def test_pickle_output_matches_the_memory_mapped_dataset(rollout_files, dataset_path, tmp_path):
    prepare_dataset(rollout_files[0], rollout_files[1], tmp_path / "d.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pkl"]  # no staging file left behind
    legacy, native = load_dataset(tmp_path / "d.pkl"), load_dataset(dataset_path)
    np.testing.assert_array_equal(legacy.hidden, native.hidden)
    for name in ("risk_label", "action", "rollout_id", "step_index", "success"):
        np.testing.assert_array_equal(legacy.arrays[name], native.arrays[name])
    with open(tmp_path / "d.pkl", "rb") as handle:
        payload = pickle.load(handle)
    sample = payload["dataset"][0]
    assert {"hidden_state", "risk_label", "action", "time_to_failure", "fail_within_k", "success", "collision", "rollout_id"} <= set(sample)
    assert {"num_samples", "num_success_rollouts", "num_failure_rollouts", "num_with_labels", "num_without_labels", "hidden_dim"} <= set(
        payload["metadata"]
    )


def test_dataset_is_memory_mapped_and_hashed(dataset_path):
    dataset = load_dataset(dataset_path)
    assert isinstance(dataset.states, np.memmap) and isinstance(dataset.labels, np.memmap)
    assert dataset.states.dtype == np.float32 and dataset.states.shape == (dataset.metadata["num_states"], 16)
    assert dataset.hidden.shape == (dataset.metadata["num_samples"], 16) == (len(dataset.state_index), 16)
    assert len(dataset.content_hash) == 64


def test_dataset_is_plain_numpy_files(dataset_path):
    """Any numpy user can open the arrays: one .npy per array, metadata as JSON."""
    import json

    document = json.loads((dataset_path / "metadata.json").read_text())
    assert document["format"] == "vlarisk-dataset" and document["metadata"]["num_samples"] == len(load_dataset(dataset_path))
    for name, entry in document["arrays"].items():
        array = np.load(dataset_path / f"{name}.npy", mmap_mode="r")
        assert list(array.shape) == entry["shape"] and array.dtype == np.dtype(entry["dtype"]), name


def test_failed_preparation_leaves_nothing_and_keeps_the_old_dataset(rollout_files, tmp_path, monkeypatch):
    import vlarisk.data.prepare as prepare_module

    output = tmp_path / "d.vlarisk"
    prepare_dataset(rollout_files[0], rollout_files[1], output)
    before = (output / "metadata.json").read_text()

    def broken(block):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prepare_module, "distinct_rows", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_dataset(rollout_files[0], rollout_files[1], output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.vlarisk"]  # no partial directory left
    assert (output / "metadata.json").read_text() == before
