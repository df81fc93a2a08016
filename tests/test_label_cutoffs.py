"""Positives are fixed by the TRAINING split's label maxima, and a label on the cut-off is a positive.

The synthetic generator's labels all reach 1.0, so every split has the same maxima and a cut-off
taken from the wrong split goes unnoticed there. Here a hand-built dataset has different maxima in
train, validation and test, and labels lying exactly on the label cut-offs (binary fractions, exact in
float32). Every expected count, cut-off, AUC and AP below is worked out by hand in the comments;
none comes from ``positive_label_cutoffs``, ``binarize`` or ``ranking_metrics``.

Hidden states are 7-D and equal to the scores we want: an identity linear model then predicts them
exactly, so AUC/AP on the scored rows are known in advance.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pipeline_utils import load_script

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import STEP_FIELDS, DatasetWriter, load_dataset
from vlarisk.data.label_cutoffs import binarize, label_cutoffs_by_dimension, positive_label_cutoffs
from vlarisk.model.models import MultiRiskPredictor, NormalizedMultiRiskPredictor, NormalizedRiskPredictor, RiskPredictor
from vlarisk.score.evaluation import evaluate, evaluate_sources
from vlarisk.score.predictions import load_predictions, save_predictions
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer, validation_metrics

NAN = float("nan")
CPU = torch.device("cpu")

# Columns: x, y, z, roll, pitch, yaw, gripper.
# Training split (rollouts 0 and 1): maxima x 0.75, y 0.5, z 1.0, the rest 0.
TRAIN_LABELS = [
    [0.75, 0.0, 0.0, 0, 0, 0, 0],
    [0.0, 0.5, 0.0, 0, 0, 0, 0],
    [0.0, 0.0, 1.0, 0, 0, 0, 0],
    [0.5, 0.25, 0.5, 0, 0, 0, 0],
]
TRAIN_HIDDEN = [[0.5] * 7] * 4
# Cut-offs at fraction 0.5 of the training maxima; no training risk -> no cut-off (NaN).
CUTOFFS = [0.375, 0.25, 0.5, NAN, NAN, NAN, NAN]

# Scored split (the same six steps serve as validation, rollouts 2 and 3, and test, rollouts 4 and 5).
# Its own maxima differ from training: x 0.5 (< 0.75), y 1.0 (> 0.5), z 0.25, gripper 0.5 (train: 0).
SCORED_LABELS = [
    #  x      y      z     r  p  yw  gripper
    [0.375, 0.25, 0.25, 0, 0, 0, 0.0],  # x and y exactly on their label cut-offs
    [0.5, 1.0, 0.125, 0, 0, 0, 0.5],
    [0.25, 0.0, 0.0, 0, 0, 0, 0.0],
    [0.0, 0.375, 0.0, 0, 0, 0, 0.25],
    [0.125, 0.125, 0.25, 0, 0, 0, 0.0],
    [0.375, 0.5, 0.0, 0, 0, 0, 0.0],  # x exactly on its cut-off
]
SCORES = [
    [0.1, 0.6, 0.3, 0.5, 0.5, 0.5, 0.2],
    [0.9, 0.5, 0.1, 0.5, 0.5, 0.5, 0.4],
    [0.8, 0.4, 0.5, 0.5, 0.5, 0.5, 0.1],
    [0.2, 0.3, 0.2, 0.5, 0.5, 0.5, 0.6],
    [0.3, 0.2, 0.4, 0.5, 0.5, 0.5, 0.3],
    [0.7, 0.1, 0.6, 0.5, 0.5, 0.5, 0.5],
]
# Positives with the training cut-offs and ">=":
#   x >= 0.375: rows 0, 1, 5 (rows 0 and 5 on the cut-off)        -> 3
#   y >= 0.25:  rows 0, 1, 3, 5 (row 0 on the cut-off)            -> 4
#   z >= 0.5:   none (the scored split's max is 0.25)               -> 0
#   roll, pitch, yaw, gripper: no cut-off                         -> 0
# (Cut-offs from the scored split would be x 0.25, y 0.5, z 0.125, gripper 0.25: counts 4, 2, 3, 2;
#  ">" instead of ">=" would give x 1, y 3.)
POSITIVE_ROWS = {"x": [0, 1, 5], "y": [0, 1, 3, 5]}
EXPECTED_COUNTS = {"x": 3, "y": 4, "z": 0, "roll": 0, "pitch": 0, "yaw": 0, "gripper": 0}
# AUC = share of (positive, negative) pairs ranked correctly.
#   x: positives score 0.1, 0.9, 0.7; negatives 0.8, 0.2, 0.3 -> 0 + 3 + 2 = 5 of 9 pairs.
#   y: positives score 0.6, 0.5, 0.3, 0.1; negatives 0.4, 0.2 -> 2 + 2 + 1 + 0 = 5 of 8 pairs.
# AP = mean precision at each positive, ranking by score (no ties):
#   x: 0.9 P, 0.8 N, 0.7 P, 0.3 N, 0.2 N, 0.1 P -> (1/1 + 2/3 + 3/6) / 3 = 13/18.
#   y: 0.6 P, 0.5 P, 0.4 N, 0.3 P, 0.2 N, 0.1 P -> (1/1 + 2/2 + 3/4 + 4/6) / 4 = 41/48.
EXPECTED_AUC = {"x": 5 / 9, "y": 5 / 8}
EXPECTED_AP = {"x": 13 / 18, "y": 41 / 48}
UNDEFINED = {"z", "roll", "pitch", "yaw", "gripper"}

SPLIT = {"train": [0, 1], "val": [2, 3], "test": [4, 5]}


def write_dataset(path, scale: float = 1.0):
    """Train rows (rollouts 0, 1), then the scored rows twice (val: 2, 3; test: 4, 5); labels times ``scale``."""
    labels = np.array(TRAIN_LABELS + SCORED_LABELS + SCORED_LABELS, dtype=np.float32) * np.float32(scale)
    hidden = np.array(TRAIN_HIDDEN + SCORES + SCORES, dtype=np.float32)
    rollout_id = np.repeat(np.arange(6), [2, 2, 3, 3, 3, 3])
    success = (rollout_id % 2 == 0).astype(np.uint8)
    n = len(labels)
    step_index = np.concatenate([np.arange(k) for k in (2, 2, 3, 3, 3, 3)])
    arrays = {
        "risk_label": labels,
        "action": np.zeros((n, 7), dtype=np.float32),
        "rollout_id": rollout_id,
        "task_index": np.zeros(n),
        "step_index": step_index,
        "success": success,
        "collision": 1 - success,
        "time_to_failure": np.where(success == 1, -1, 3 - step_index),
        "fail_within_k": 1 - success,
        "has_provided_label": np.ones(n),
    }
    assert set(arrays) == set(STEP_FIELDS)
    rollouts = [{"rollout_id": r, "success": bool(r % 2 == 0), "task": "0"} for r in range(6)]
    with DatasetWriter(path) as writer:
        writer.append_hidden(hidden)
        writer.finish(arrays, {"rollouts": rollouts})
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Paths of the hand-built dataset and of a copy with all labels halved (another source's scale)."""
    root = tmp_path_factory.mktemp("label_cutoffs")
    return write_dataset(root / "a.vlarisk"), write_dataset(root / "b.vlarisk", scale=0.5)


def identity_predictor() -> RiskPredictor:
    """A linear probe whose prediction is its (7-D) input."""
    model = RiskPredictor(7, [], 7, dropout=0.0, output_activation="identity")
    with torch.no_grad():
        model.mlp[0].weight.copy_(torch.eye(7))
        model.mlp[0].bias.zero_()
    return model.eval()


def identity_on_raw_inputs() -> NormalizedRiskPredictor:
    """:func:`identity_predictor` behind an identity normalisation."""
    return NormalizedRiskPredictor(identity_predictor(), torch.zeros(7), torch.ones(7))


def as_dict(values):
    return dict(zip(ACTION_DIMENSIONS, values, strict=True))


def assert_cutoffs(reported: dict, expected: list, scale: float = 1.0):
    for name, value in as_dict(expected).items():
        if math.isnan(value):
            assert reported[name] is None, name
        else:
            assert reported[name] == value * scale, name


def assert_report(report: dict, positives: dict = EXPECTED_COUNTS):
    """Counts, AUC, AP and undefined dimensions of a test report as worked out by hand above."""
    assert report["positives"] == positives
    metrics = report["test_metrics"]
    for name in ACTION_DIMENSIONS:
        if name in EXPECTED_AUC:
            assert metrics[f"auc_{name}"] == pytest.approx(EXPECTED_AUC[name], abs=1e-12), name
            assert metrics[f"ap_{name}"] == pytest.approx(EXPECTED_AP[name], abs=1e-12), name
        else:
            assert metrics[f"auc_{name}"] is None and metrics[f"ap_{name}"] is None, name
    assert set(report["undefined"]) == UNDEFINED
    assert metrics["mean_auc"] == pytest.approx((5 / 9 + 5 / 8) / 2, abs=1e-12)
    assert metrics["mean_ap"] == pytest.approx((13 / 18 + 41 / 48) / 2, abs=1e-12)


def test_label_cutoffs_are_fraction_of_training_max():
    """positive_label_cutoffs gives fraction x training max per dimension, NaN where training has no risk."""
    labels = np.array(TRAIN_LABELS, dtype=np.float32)
    np.testing.assert_array_equal(positive_label_cutoffs(labels), np.array(CUTOFFS))
    np.testing.assert_array_equal(positive_label_cutoffs(labels, 0.25), np.array([0.1875, 0.125, 0.25, NAN, NAN, NAN, NAN]))


def test_label_exactly_on_cutoff_is_positive():
    """binarize uses >=: a label equal to the cut-off is a positive, the next float32 below is not."""
    label_cutoffs = np.array([0.375, 0.25, 0.5, NAN, NAN, NAN, NAN])
    below = np.nextafter(np.float32(0.375), np.float32(0))
    labels = np.array([[below, 0.25, 0.5, 1, 1, 1, 1], [0.375, 0.125, 1.0, 0, 0, 0, 0]], dtype=np.float32)
    expected = np.array([[False, True, True, False, False, False, False], [True, False, True, False, False, False, False]])
    np.testing.assert_array_equal(binarize(labels, label_cutoffs), expected)


def test_source_label_cutoffs_come_from_its_training_split(data):
    """A source's label cut-offs are the hand-computed training-split ones, whatever the scored split holds."""
    source = Source("a", load_dataset(data[0]), SPLIT)
    np.testing.assert_array_equal(source.label_cutoffs(0.5), np.array(CUTOFFS))


def test_evaluate_uses_training_split_label_cutoffs(data):
    """evaluate's label cut-offs, positive counts, AUC and AP follow the training maxima, not the test split's."""
    source = Source("a", load_dataset(data[0]), SPLIT)
    report = evaluate(identity_on_raw_inputs(), source, source.label_cutoffs(0.5), CPU)
    assert_cutoffs(report["label_cutoffs"], CUTOFFS)
    assert_report(report)


def test_evaluate_counts_labels_on_cutoff(data):
    """Test labels exactly on the training cut-off (x 0.375 twice, y 0.25 once) are counted as positives."""
    source = Source("a", load_dataset(data[0]), SPLIT)
    test_labels = np.asarray(source.dataset.labels[10:16])
    assert (test_labels[:, 0] == 0.375).sum() == 2 and (test_labels[:, 1] == 0.25).sum() == 1
    report = evaluate(identity_on_raw_inputs(), source, source.label_cutoffs(0.5), CPU)
    assert report["positives"]["x"] == 3  # 0.375, 0.5, 0.375 (not 1 as with ">")
    assert report["positives"]["y"] == 4  # 0.25, 1.0, 0.375, 0.5 (not 3 as with ">")


def evaluate_checkpoint(checkpoint: dict, data_path, tmp_path) -> tuple[dict, dict]:
    """Run evaluate_risk_predictor.py on an identity-model checkpoint with extra ``checkpoint`` fields:
    ``(results.json, test predictions)``."""
    model = identity_predictor()
    tmp_path.mkdir(parents=True, exist_ok=True)
    path, split = tmp_path / "identity.pt", tmp_path / "split.json"
    torch.save(
        {
            "model_config": model.model_config,
            "model_state_dict": model.state_dict(),
            "normalization": {"mean": [0.0] * 7, "std": [1.0] * 7, "enabled": False},
            **checkpoint,
        },
        path,
    )
    split.write_text(json.dumps(SPLIT))
    args = [
        "--checkpoint",
        path,
        "--data",
        data_path,
        "--split",
        split,
        "--output",
        tmp_path / "r.json",
        "--predictions",
        tmp_path / "p.npz",
        "--device",
        "cpu",
    ]
    load_script("evaluate_risk_predictor").main([str(a) for a in args])
    return json.loads((tmp_path / "r.json").read_text()), load_predictions(tmp_path / "p.npz")


def test_guide_checkpoint_is_scored_by_training_split_label_cutoffs(data, tmp_path):
    """A checkpoint that saves no label cut-offs is scored by the training split's, in results and predictions alike."""
    results, arrays = evaluate_checkpoint({}, data[0], tmp_path)
    assert_cutoffs(results["label_cutoffs"], CUTOFFS)
    assert_report(results)
    np.testing.assert_array_equal(arrays["label_cutoffs"], np.array(CUTOFFS))
    expected = np.zeros((6, 7), dtype=bool)
    for name, rows in POSITIVE_ROWS.items():
        expected[rows, ACTION_DIMENSIONS.index(name)] = True
    np.testing.assert_array_equal(arrays["positive"], expected)
    np.testing.assert_allclose(arrays["prediction"], np.array(SCORES, dtype=np.float32), atol=1e-6)


def test_saved_label_cutoffs_are_used_only_for_their_own_data_split_and_fraction(data, tmp_path):
    """Label cut-offs saved at training score the test split when data, split and fraction match; else
    (here: the checkpoint names other data) the training split's are computed again."""
    saved = [0.5, 0.25, 0.5, NAN, NAN, NAN, NAN]  # x's cut-off moved from 0.375: only rows 1 (0.5) stay positive
    training = {
        "thresholds": label_cutoffs_by_dimension(np.array(saved)),  # the name before checkpoint format 2, still read
        "split": SPLIT,
        "training_config": {"positive_fraction_of_max": 0.5},
    }
    own = {**training, "data_sha256": load_dataset(data[0]).content_hash}
    results, arrays = evaluate_checkpoint(own, data[0], tmp_path / "own")
    assert_cutoffs(results["label_cutoffs"], saved)
    assert results["positives"]["x"] == 1 and int(arrays["positive"][:, 0].sum()) == 1
    results, _ = evaluate_checkpoint({**training, "data_sha256": "another dataset"}, data[0], tmp_path / "other")
    assert_cutoffs(results["label_cutoffs"], CUTOFFS)
    results, _ = evaluate_checkpoint({**own, "training_config": {"positive_fraction_of_max": 0.25}}, data[0], tmp_path / "fraction")
    assert_cutoffs(results["label_cutoffs"], CUTOFFS)


def test_predictions_file_naming_the_cutoffs_thresholds_reads_as_label_cutoffs(tmp_path):
    """An older predictions file stores the cut-offs as ``thresholds``; it reads as ``label_cutoffs``."""
    save_predictions(tmp_path / "p.npz", {"thresholds": np.array(CUTOFFS), "provenance": np.array("{}")})
    arrays = load_predictions(tmp_path / "p.npz")
    assert "thresholds" not in arrays
    np.testing.assert_array_equal(arrays["label_cutoffs"], np.array(CUTOFFS))


def test_validation_metrics_with_training_label_cutoffs():
    """validation_metrics binarises with the given (training) label cut-offs and >=: AUC as worked out by hand."""
    scores = np.array(SCORES, dtype=np.float32)
    labels = np.array(SCORED_LABELS, dtype=np.float32)
    metrics = validation_metrics(scores, labels, np.array(CUTOFFS), "mse")
    for name in ACTION_DIMENSIONS:
        if name in EXPECTED_AUC:
            assert metrics[f"auc_{name}"] == pytest.approx(EXPECTED_AUC[name], abs=1e-12), name
        else:
            assert metrics[f"auc_{name}"] is None, name
    assert metrics["mean_auc"] == pytest.approx((5 / 9 + 5 / 8) / 2, abs=1e-12)
    assert metrics["loss"] == pytest.approx(float(np.mean((scores.astype(np.float64) - labels) ** 2)), rel=1e-6)


def test_trainer_validation_uses_training_split_label_cutoffs(data, tmp_path):
    """The Trainer fixes label cut-offs on its training rows, so validation AUCs match the hand values."""
    dataset = load_dataset(data[0])
    # A linear probe (sigmoid keeps the ranking) on raw inputs; lr so small that one epoch cannot reorder scores.
    config = TrainingConfig(epochs=1, batch_size=2, lr=1e-9, hidden_dims=[], dropout=0.0, normalize=False, device="cpu", seed=0)
    trainer = Trainer([Source("probe", dataset, SPLIT)], config, tmp_path, "probe", log=lambda _: None)
    np.testing.assert_array_equal(np.asarray(trainer.parts[0].label_cutoffs, dtype=np.float64), np.array(CUTOFFS))
    with torch.no_grad():
        trainer.model.mlp[0].weight.copy_(torch.eye(7))
        trainer.model.mlp[0].bias.zero_()
    outcome = trainer.fit()
    metrics = outcome.history["val_metrics"][0]
    # With validation-split label cut-offs: x 0.75, y 3/8, and z and gripper would have an AUC.
    for name in ACTION_DIMENSIONS:
        if name in EXPECTED_AUC:
            assert metrics[f"auc_{name}"] == pytest.approx(EXPECTED_AUC[name], abs=1e-6), name
        else:
            assert metrics[f"auc_{name}"] is None, name


def identity_multi_network() -> MultiRiskPredictor:
    """Two 7-D sources whose input layers and trunk are identities: the prediction is the input."""
    network = MultiRiskPredictor(["a", "b"], [7, 7], hidden_dims=[7], dropout=0.0, activation="relu", output_activation="identity")
    set_identity(network)
    return network


def set_identity(network: MultiRiskPredictor) -> None:
    """Make both input layers and the trunk's output layer identity maps (in place)."""
    with torch.no_grad():
        for layer in (network.inputs[0][0], network.inputs[1][0], network.trunk.mlp[0]):
            layer.weight.copy_(torch.eye(7))
            layer.bias.zero_()


def test_multi_trainer_validation_uses_each_sources_training_label_cutoffs(data, tmp_path):
    """A multi-source Trainer fixes each source's label cut-offs on its own training rows; per-source validation AUCs match."""
    sources = [Source("a", load_dataset(data[0]), SPLIT), Source("b", load_dataset(data[1]), SPLIT)]
    config = TrainingConfig(epochs=1, batch_size=2, lr=1e-9, hidden_dims=[7], dropout=0.0, normalize=False, device="cpu", seed=0)
    trainer = Trainer(sources, config, tmp_path, "pair", log=lambda _: None)
    for part, scale in zip(trainer.parts, (1.0, 0.5), strict=True):
        np.testing.assert_array_equal(np.asarray(part.label_cutoffs, dtype=np.float64), np.array(CUTOFFS) * scale)
    set_identity(trainer.model)  # scores are nonnegative, so the ReLU passes them and the sigmoid keeps their order
    outcome = trainer.fit()
    for name in ("a", "b"):
        metrics = outcome.history["val_metrics"][0]["per_source"][name]
        for dim in ACTION_DIMENSIONS:
            if dim in EXPECTED_AUC:
                assert metrics[f"auc_{dim}"] == pytest.approx(EXPECTED_AUC[dim], abs=1e-6), (name, dim)
            else:
                assert metrics[f"auc_{dim}"] is None, (name, dim)


def test_multi_source_evaluation_uses_each_sources_training_label_cutoffs(data):
    """evaluate_sources: per-source label cut-offs from each source's training split; pooled positives per own source."""
    network = identity_multi_network()
    statistics = {name: (torch.zeros(7), torch.ones(7)) for name in ("a", "b")}
    model = NormalizedMultiRiskPredictor(network, statistics).eval()
    sources = [Source("a", load_dataset(data[0]), SPLIT), Source("b", load_dataset(data[1]), SPLIT)]
    report = evaluate_sources(model, sources, {source.name: source.label_cutoffs(0.5) for source in sources}, CPU)
    # Source b's labels are halved, so its training label cut-offs are too (x 0.1875, y 0.125, z 0.25) and
    # the same rows are positives; with source a's label cut-offs source b would have none.
    assert_cutoffs(report["per_source"]["a"]["label_cutoffs"], CUTOFFS)
    assert_cutoffs(report["per_source"]["b"]["label_cutoffs"], CUTOFFS, scale=0.5)
    assert_report(report["per_source"]["a"])
    assert_report(report["per_source"]["b"])
    # Pooled: both sources' rows, each binarised by its own label cut-offs: counts double; with identical
    # scores and positives in both halves every pair ratio and precision is unchanged, so AUC/AP are too.
    assert_report(report, positives={name: 2 * count for name, count in EXPECTED_COUNTS.items()})
