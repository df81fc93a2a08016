"""The collapse detector: it fires on collapsed scores and forced collapses, never on a healthy run."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import load_dataset
from vlarisk.data.splits import plain_split
from vlarisk.model.collapse import collapse_reasons
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture()
def labels():
    rng = np.random.default_rng(0)
    return (rng.random((2000, 7)) < 0.02).astype(float)


def test_healthy_scores_raise_nothing(labels):
    """Scores that follow the labels, however confident on negatives, are not a collapse."""
    rng = np.random.default_rng(1)
    logits = -6.0 + 4.0 * labels + rng.standard_normal(labels.shape)
    risk = sigmoid(logits)
    auc = np.mean([roc_auc_score(labels[:, d], risk[:, d]) for d in range(7)])
    assert auc > 0.9
    assert collapse_reasons(risk, auc) == []


def test_constant_output_is_a_collapse():
    assert any("no spread" in reason for reason in collapse_reasons(np.full((500, 7), 0.007), 0.5))


def test_tiny_spread_at_chance_is_a_collapse(labels):
    """The case an absolute test missed: spread 1.2e-4 around the prior, ranking at chance."""
    rng = np.random.default_rng(2)
    risk = 0.003 + 1.2e-4 * rng.standard_normal(labels.shape)
    auc = np.mean([roc_auc_score(labels[:, d], risk[:, d]) for d in range(7)])
    assert risk.std(axis=0).min() > 1e-6  # an absolute threshold of 1e-6 would let it pass
    assert any("chance" in reason for reason in collapse_reasons(risk, auc))


def test_saturated_outputs_are_a_collapse():
    rng = np.random.default_rng(3)
    risk = sigmoid(-25.0 + 3.0 * rng.standard_normal((500, 7)))
    assert any("saturated" in reason for reason in collapse_reasons(risk, None))


def _train(dataset_path, tmp_path, **settings):
    dataset = load_dataset(dataset_path)
    split = plain_split(dataset.metadata["rollouts"], 0.2, 0.1, 0)
    config = TrainingConfig(device="cpu", batch_size=64, **settings)
    return Trainer([Source("tiny", dataset, split)], config, tmp_path, "tiny", log=lambda message: None).fit()


def test_forced_collapse_is_flagged_and_a_healthy_run_is_not(dataset_path, tmp_path):
    """A learning rate far too large saturates every output; the default recipe does not."""
    broken = _train(dataset_path, tmp_path / "broken", epochs=3, lr=300.0, hidden_dims=[64])
    assert all(metrics["collapse"] for metrics in broken.history["val_metrics"])
    healthy = _train(dataset_path, tmp_path / "healthy", epochs=3, hidden_dims=[64])
    assert not any(metrics["collapse"] for metrics in healthy.history["val_metrics"])


def test_a_collapsed_epoch_is_never_chosen_over_a_healthy_one(dataset_path, tmp_path, monkeypatch):
    """Epoch 1 has the best AUC but is marked collapsed: the best epoch must be a healthy one."""
    import vlarisk.train.training as training

    real, epochs = training.validation_metrics, []

    def first_epoch_collapsed(*args):
        metrics = real(*args)
        epochs.append(len(epochs) + 1)
        collapsed = epochs[-1] == 1
        metrics.update(mean_auc=0.99 if collapsed else 0.6 + 0.01 * epochs[-1], collapse=["planted"] if collapsed else [])
        return metrics

    monkeypatch.setattr(training, "validation_metrics", first_epoch_collapsed)
    outcome = _train(dataset_path, tmp_path, epochs=3, hidden_dims=[64])
    assert outcome.best_epoch == 3
