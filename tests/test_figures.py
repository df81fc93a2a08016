"""Paper figures: each kind is written as a PNG, the same inputs give the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlarisk.core.constants import ACTION_DIMENSIONS, NUM_DIMENSIONS
from vlarisk.report.figures import ablation_figure, accuracy_vs_detection_time, roc_pr_figure, save_figure, training_figure
from vlarisk.score.predictions import save_predictions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def predictions(tmp_path) -> str:
    """Predictions of 200 steps; gripper has no positives (drawn as n/a)."""
    rng = np.random.default_rng(0)
    positive = rng.random((200, NUM_DIMENSIONS)) < 0.2
    positive[:, -1] = False
    prediction = (0.3 * positive + 0.7 * rng.random(positive.shape)).astype(np.float32)
    path = tmp_path / "test_predictions.npz"
    save_predictions(
        path,
        {
            "prediction": prediction,
            "label": positive.astype(np.float32),
            "positive": positive,
            "label_cutoffs": np.full(NUM_DIMENSIONS, 0.5),
            "fail_within_k": positive.any(axis=1).astype(np.uint8),
            "success": np.zeros(200, dtype=np.uint8),
            "rollout_id": np.arange(200, dtype=np.int32) // 20,
            "provenance": np.array(json.dumps({"checkpoint": "best_model.pt"})),
        },
    )
    return str(path)


def results_file(path: Path, mean_auc: float) -> str:
    """A results.json with a three-epoch history (the first epoch without a defined AUC)."""
    history = {
        "train_loss": [0.3, 0.2, 0.1],
        "val_loss": [0.3, 0.25, 0.26],
        "val_metrics": [{"mean_auc": None}, {"mean_auc": 0.7}, {"mean_auc": 0.68}],
    }
    test_metrics = {"mean_auc": mean_auc, "mean_ap": mean_auc / 3, **{f"auc_{d}": mean_auc for d in ACTION_DIMENSIONS}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"history": history, "best_epoch": 2, "config": {"loss_type": "mse"}, "test_metrics": test_metrics}))
    return str(path)


@pytest.fixture
def figures(predictions, tmp_path):
    """Factories of one figure of each kind."""
    runs = [
        ("src", value, results_file(tmp_path / value / f"seed-{seed}.json", auc))
        for value, aucs in (("mse (default)", (0.7, 0.75)), ("bce", (0.65, 0.66)))
        for seed, auc in enumerate(aucs)
    ]
    return {
        "roc_pr": lambda: roc_pr_figure(predictions, "src: test split"),
        "training": lambda: training_figure(runs[0][2], "src: training"),
        "ablation": lambda: ablation_figure("loss_type", runs),
    }


@pytest.mark.parametrize("kind", ["roc_pr", "training", "ablation"])
def test_figure_is_a_deterministic_png(figures, kind, tmp_path):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    save_figure(figures[kind](), first)
    save_figure(figures[kind](), second)
    data = first.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert b"Software" not in data and b"matplotlib" not in data
    assert data == second.read_bytes()


def test_accuracy_vs_detection_time_has_a_curve_per_scorer_over_the_alpha_grid():
    def grid(points):
        return [{"alpha": a, "deployed": {"relative_detection_time_mean": t, "balanced_accuracy": b}} for a, t, b in points]

    block = {
        "alpha_grid": grid([(0.1, 0.8, 0.6), (0.5, 0.4, 0.7), (0.9, None, None)]),
        "baselines": {"knn": {"alpha_grid": grid([(0.1, 0.9, 0.55)])}, "episode_length": {"reason": "no scores"}},
    }
    curves = accuracy_vs_detection_time(block)
    assert curves == {"model": [(0.8, 0.6, 0.1), (0.4, 0.7, 0.5)], "knn": [(0.9, 0.55, 0.1)]}
