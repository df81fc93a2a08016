"""Baselines against independent references: scikit-learn fits, hand-computed AUCs, planted separability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

import vlarisk.score.baselines as baselines
from vlarisk.core.constants import ACTION_DIMENSIONS, NUM_DIMENSIONS
from vlarisk.data.dataset import load_dataset
from vlarisk.data.label_cutoffs import binarize, positive_label_cutoffs
from vlarisk.data.splits import plain_split, split_rows
from vlarisk.model.models import NormalizedRiskPredictor
from vlarisk.score.baselines import (
    LOGISTIC_MAX_ITER,
    LOGISTIC_TOLERANCE,
    baseline_report,
    baseline_scores,
    logistic_scores,
    model_vs_logistic,
)
from vlarisk.score.evaluation import evaluate
from vlarisk.score.metrics import ranking_metrics
from vlarisk.train.sources import Source

TRAIN, SCORED = np.arange(0, 400), np.arange(400, 600)


def reference_scores(hidden: np.ndarray, labels: np.ndarray, label_cutoffs: np.ndarray, dim: int) -> np.ndarray:
    """One dimension's scores from scikit-learn alone: scaler and fit on the training rows only."""
    scaler = StandardScaler().fit(hidden[TRAIN])
    model = LogisticRegression(C=0.05, class_weight="balanced", tol=LOGISTIC_TOLERANCE, max_iter=LOGISTIC_MAX_ITER)
    model.fit(scaler.transform(hidden[TRAIN]), binarize(labels[TRAIN], label_cutoffs)[:, dim])
    return model.decision_function(scaler.transform(hidden[SCORED]))


@pytest.fixture
def planted():
    """600 distinct 10-D states: x's positives are separable on feature 0, y's labels are shuffled."""
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((600, 10)).astype(np.float32)
    labels = (hidden[:, :NUM_DIMENSIONS] > 0.5).astype(np.float32)
    labels[:, 1] = rng.permutation(labels[:, 1])
    return hidden, labels, positive_label_cutoffs(labels[TRAIN])


def test_separable_dimension_ranks_perfectly_and_shuffled_one_is_chance(planted):
    hidden, labels, label_cutoffs = planted
    scores = logistic_scores(hidden, TRAIN, labels[TRAIN], label_cutoffs, SCORED)
    positives = labels[SCORED] >= 0.5
    assert scores.shape == (len(SCORED), NUM_DIMENSIONS)
    assert roc_auc_score(positives[:, 0], scores[:, 0]) > 0.99
    assert abs(roc_auc_score(positives[:, 1], scores[:, 1]) - 0.5) < 0.1


def test_statistics_come_from_the_training_rows_only(planted):
    hidden, labels, label_cutoffs = planted
    shifted = hidden.copy()
    shifted[SCORED, 2] += 1000.0  # statistics that saw the scored rows would centre this away
    scores = logistic_scores(shifted, TRAIN, labels[TRAIN], label_cutoffs, SCORED)
    for dim in (0, 2):
        expected = reference_scores(shifted, labels, label_cutoffs, dim)
        np.testing.assert_allclose(scores[:, dim], expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    assert np.abs(scores[:, 2]).min() > 100, "the offset must reach the scores through training-row statistics"


def test_repeated_states_are_fitted_once(planted, monkeypatch):
    hidden, labels, label_cutoffs = planted
    repeated = np.repeat(hidden, 8, axis=0)
    train = np.arange(8 * len(TRAIN))
    fitted_rows = []
    original_fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, x, y: fitted_rows.append(len(x)) or original_fit(self, x, y))
    scores = logistic_scores(repeated, train, np.repeat(labels[TRAIN], 8, axis=0), label_cutoffs, 8 * SCORED)
    assert set(fitted_rows) == {len(TRAIN)}
    np.testing.assert_allclose(scores[:, 0], reference_scores(hidden, labels, label_cutoffs, 0), rtol=1e-3, atol=1e-3)


def test_at_most_max_train_rows_are_fitted_and_the_draw_is_seeded(planted, monkeypatch):
    hidden, labels, label_cutoffs = planted
    fitted_rows = []
    original_fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, x, y: fitted_rows.append(len(x)) or original_fit(self, x, y))
    first, again = (logistic_scores(hidden, TRAIN, labels[TRAIN], label_cutoffs, SCORED, max_train_rows=150, seed=1) for _ in range(2))
    other = logistic_scores(hidden, TRAIN, labels[TRAIN], label_cutoffs, SCORED, max_train_rows=150, seed=2)
    assert set(fitted_rows) == {150}
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_single_class_training_dimension_is_nan_and_undefined(planted):
    hidden, labels, label_cutoffs = planted
    labels = labels.copy()
    labels[TRAIN, 3] = 1.0  # every training row positive: nothing to separate
    labels[TRAIN, 4] = 0.0  # no training positive: no label cut-off
    label_cutoffs = positive_label_cutoffs(labels[TRAIN])
    scores = logistic_scores(hidden, TRAIN, labels[TRAIN], label_cutoffs, SCORED)
    assert np.isnan(scores[:, 3]).all() and np.isnan(scores[:, 4]).all()
    assert not np.isnan(np.delete(scores, [3, 4], axis=1)).any()
    metrics, _, undefined = ranking_metrics(scores, labels[SCORED], label_cutoffs)
    assert metrics["auc_roll"] is None and metrics["ap_roll"] is None and "NaN" in undefined["roll"]
    assert metrics["auc_pitch"] is None and "no positive labels in the training split" in undefined["pitch"]


def test_comparison_uses_the_dimensions_both_define():
    model = {f"auc_{name}": 0.6 + 0.01 * i for i, name in enumerate(ACTION_DIMENSIONS)}
    logistic = {**{f"auc_{name}": 0.7 for name in ACTION_DIMENSIONS}, "auc_x": None}
    versus = model_vs_logistic(model, logistic)
    assert versus["dimensions"] == list(ACTION_DIMENSIONS[1:])
    assert versus["model_mean_auc"] == pytest.approx(np.mean([0.6 + 0.01 * i for i in range(1, NUM_DIMENSIONS)]))
    assert versus["logistic_mean_auc"] == pytest.approx(0.7)
    assert versus["margin"] == pytest.approx(versus["model_mean_auc"] - 0.7) and versus["beats_logistic"] is False
    assert model_vs_logistic({}, logistic)["beats_logistic"] is None


@pytest.fixture(scope="module")
def tiny(dataset_path, rollout_files):
    """The shared tiny dataset, its split rows and training label cut-offs, and its planting record."""
    dataset = load_dataset(dataset_path)
    rows = split_rows(dataset.rollout_id, plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0))
    return dataset, rows, positive_label_cutoffs(np.asarray(dataset.labels[rows["train"]])), rollout_files[2]


def test_shortcut_scorers_equal_hand_computed_aucs(tiny):
    dataset, rows, label_cutoffs, planting = tiny
    scores = baseline_scores(dataset, rows["train"], rows["test"], label_cutoffs, planting)
    report = baseline_report(scores, np.asarray(dataset.labels[rows["test"]]), label_cutoffs, {})
    assert set(report) == {"logistic", "step_index", "abs_action", "planted_direction", "model_vs_logistic"}
    test = rows["test"]
    steps = np.asarray(dataset.arrays["step_index"][test])
    actions = np.asarray(dataset.arrays["action"][test])
    for dim, name in enumerate(ACTION_DIMENSIONS):
        positive = np.asarray(dataset.labels[test][:, dim]) >= label_cutoffs[dim]
        assert report["step_index"][f"auc_{name}"] == pytest.approx(roc_auc_score(positive, steps))
        assert report["abs_action"][f"auc_{name}"] == pytest.approx(roc_auc_score(positive, np.abs(actions[:, dim])))


def test_evaluation_reports_the_baselines_and_says_when_the_model_loses(tiny):
    dataset, rows, _, planting = tiny
    split = plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0)
    constant = torch.nn.Linear(dataset.hidden_dim, NUM_DIMENSIONS)
    torch.nn.init.zeros_(constant.weight)
    lines = []
    zeros, ones = torch.zeros(dataset.hidden_dim), torch.ones(dataset.hidden_dim)
    source = Source("tiny", dataset, split, planting)
    report = evaluate(
        NormalizedRiskPredictor(constant, zeros, ones), source, source.label_cutoffs(0.5), torch.device("cpu"), log=lines.append
    )
    versus = report["baselines"]["model_vs_logistic"]
    assert versus["model_mean_auc"] == pytest.approx(0.5) and versus["beats_logistic"] is False
    assert "planted_direction" in report["baselines"] and "oracle" not in report
    beaten = [line for line in lines if "does NOT beat the logistic baseline" in line]
    assert len(beaten) == 1 and "NOT conformally valid" in " ".join(lines)  # a split without calibration rollouts


def test_repeats_are_found_across_block_boundaries(tiny, monkeypatch):
    dataset, rows, label_cutoffs, _ = tiny
    train = rows["train"]
    targets = binarize(np.asarray(dataset.labels[train]), label_cutoffs)
    states = np.asarray(dataset.hidden[train])
    expected = np.r_[False, np.all(states[1:] == states[:-1], axis=1) & np.all(targets[1:] == targets[:-1], axis=1)]
    assert 0 < expected.sum() < len(train)
    monkeypatch.setattr(baselines, "BLOCK_ROWS", 64)
    np.testing.assert_array_equal(baselines.repeats_previous(dataset.hidden, train, targets), expected)


def test_scores_do_not_depend_on_the_thread_count(planted):
    hidden, labels, label_cutoffs = planted
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = logistic_scores(hidden, TRAIN, labels[TRAIN], label_cutoffs, SCORED)
        torch.set_num_threads(4)
        side_by_side = logistic_scores(hidden, TRAIN, labels[TRAIN], label_cutoffs, SCORED)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(alone, side_by_side)
