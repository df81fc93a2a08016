"""Metrics against scikit-learn, label cut-offs from training labels, undefined AUC reported as such."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, mean_absolute_error, mean_squared_error, roc_auc_score

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.data.label_cutoffs import binarize, positive_label_cutoffs
from vlarisk.score.metrics import test_metrics as compute_test_metrics


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    target = rng.random((500, 7)).astype(np.float32) ** 3
    prediction = np.clip(target + 0.2 * rng.standard_normal(target.shape), 0, 1).astype(np.float32)
    label_cutoffs = positive_label_cutoffs(target)
    report = compute_test_metrics(prediction, target, label_cutoffs)
    metrics = report["test_metrics"]
    assert np.isclose(metrics["mse"], mean_squared_error(target, prediction))
    assert np.isclose(metrics["mae"], mean_absolute_error(target, prediction))
    assert np.isclose(metrics["rmse"], np.sqrt(mean_squared_error(target, prediction)))
    positives = binarize(target, label_cutoffs)
    for dim, name in enumerate(ACTION_DIMENSIONS):
        assert np.isclose(metrics[f"mse_{name}"], mean_squared_error(target[:, dim], prediction[:, dim]))
        assert np.isclose(metrics[f"auc_{name}"], roc_auc_score(positives[:, dim], prediction[:, dim]))
        assert np.isclose(metrics[f"ap_{name}"], average_precision_score(positives[:, dim], prediction[:, dim]))
        assert report["positives"][name] == positives[:, dim].sum()
    assert np.isclose(metrics["mean_auc"], np.mean([metrics[f"auc_{n}"] for n in ACTION_DIMENSIONS]))


def test_single_class_dimension_is_undefined_not_half():
    rng = np.random.default_rng(1)
    train = rng.random((100, 7))
    test_target = rng.random((40, 7))
    test_target[:, 2] = 0.0  # no positives for z in the scored split
    train[:, 5] = 0.0  # yaw never risky in training: no label cut-off at all
    report = compute_test_metrics(rng.random((40, 7)), test_target, positive_label_cutoffs(train))
    assert report["test_metrics"]["auc_z"] is None and report["test_metrics"]["ap_z"] is None
    assert report["undefined"]["z"] == "no positives in the scored split"
    assert report["test_metrics"]["auc_yaw"] is None and "training split" in report["undefined"]["yaw"]
    assert report["label_cutoffs"]["yaw"] is None
    assert report["test_metrics"]["auc_x"] is not None


def test_cutoff_comes_from_training_labels_not_the_scored_split():
    train = np.full((10, 7), 0.2)
    train[0] = 0.8
    label_cutoffs = positive_label_cutoffs(train, fraction_of_max=0.5)
    np.testing.assert_allclose(label_cutoffs, 0.4)
    scored = np.full((4, 7), 0.3)  # below the training cut-off everywhere
    assert not binarize(scored, label_cutoffs).any()


def test_constant_predictions_are_flagged():
    target = np.random.default_rng(2).random((50, 7))
    report = compute_test_metrics(np.full((50, 7), 0.1), target, positive_label_cutoffs(target))
    assert report["collapsed"] is True and report["collapse"]
    assert report["test_metrics"]["auc_x"] == 0.5  # a constant really does rank at chance; it is flagged above
