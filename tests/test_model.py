"""Training a small predictor, rebuilding it from its checkpoint as the guide does, loading it in one call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vlarisk import RiskPredictor, load_predictor
from vlarisk.data.dataset import load_dataset
from vlarisk.data.label_cutoffs import label_cutoffs_from_dimensions, positive_label_cutoffs
from vlarisk.data.splits import split_rollouts, split_rows
from vlarisk.train.normalization import feature_statistics

REPO = Path(__file__).resolve().parents[1]
GUIDE_CHECKPOINT_KEYS = {"epoch", "model_state_dict", "optimizer_state_dict", "val_loss", "val_metrics", "model_config", "normalization"}


def test_default_architecture_matches_the_reference():
    model = RiskPredictor()
    assert sum(p.numel() for p in model.parameters()) == 2_230_791
    assert {k.split(".")[1] for k in model.state_dict()} == {"0", "3", "6"}


@pytest.fixture(scope="module")
def trained(dataset_path, rollout_files, tmp_path_factory):
    output = tmp_path_factory.mktemp("model")
    command = [
        sys.executable,
        str(REPO / "workflow_scripts/train_risk_predictor.py"),
        "--data",
        str(dataset_path),
        "--output-dir",
        str(output),
        "--epochs",
        "3",
        "--hidden-dims",
        "32",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--planting",
        str(rollout_files[2]),
        "--model-name",
        "tiny",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return output, result.stdout


def test_training_writes_the_guides_three_files(trained):
    output, log = trained
    assert {"best_model.pt", "latest.pt", "results.json"} <= {p.name for p in output.iterdir()}
    assert "epoch   3/3" in log and "val_mean_auc" in log
    results = json.loads((output / "results.json").read_text())
    assert {"test_metrics", "history", "config", "model_name"} <= set(results)
    assert {"mse", "mae", "rmse", "mse_x", "mae_gripper", "auc_y", "ap_pitch"} <= set(results["test_metrics"])
    assert len(results["history"]["train_loss"]) == 3 and "planted_direction" in results["baselines"]


def test_checkpoint_rebuilds_the_model_as_in_the_guide(trained, dataset_path):
    output, _ = trained
    checkpoint = torch.load(output / "best_model.pt", weights_only=True)
    assert GUIDE_CHECKPOINT_KEYS <= set(checkpoint)
    assert checkpoint["model_config"]["activation"] == "relu"
    model = RiskPredictor(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()
    dataset = load_dataset(dataset_path)
    split = checkpoint["split"]
    train_rows = split_rows(dataset.rollout_id, split)["train"]
    mean, std = feature_statistics(dataset.hidden, train_rows)
    np.testing.assert_allclose(checkpoint["normalization"]["mean"], mean, rtol=1e-6)
    expected_cutoffs = positive_label_cutoffs(
        np.asarray(dataset.labels[train_rows]), checkpoint["training_config"]["positive_fraction_of_max"]
    )
    np.testing.assert_array_equal(label_cutoffs_from_dimensions(checkpoint["label_cutoffs"]), expected_cutoffs)
    hidden = torch.from_numpy(np.array(dataset.hidden[:5]))
    with torch.no_grad():
        expected = model((hidden - torch.tensor(checkpoint["normalization"]["mean"])) / torch.tensor(checkpoint["normalization"]["std"]))
    loaded = load_predictor(output / "best_model.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(hidden), expected)
    assert expected.shape == (5, 7) and float(expected.min()) >= 0 and float(expected.max()) <= 1


def test_split_is_by_rollout_in_the_checkpoint(trained, dataset_path):
    output, _ = trained
    checkpoint = torch.load(output / "latest.pt", weights_only=True)
    rollouts = load_dataset(dataset_path).metadata["rollouts"]
    # the guide's command without --split: the project's default split (a calibration share; tasks held out when >= 5)
    assert checkpoint["split"] == split_rollouts(rollouts, 0.2, 0.1, 0, "auto", calibration_fraction=0.15)
    assert set(checkpoint["split"]) == {"train", "val", "calibration", "test"}  # the tiny data has 4 tasks: none held out
    assert checkpoint["epoch"] == 3 and len(checkpoint["history"]["val_loss"]) == 3


def test_reference_checkpoint_without_output_activation_keeps_its_relu_head(tmp_path):
    reference_config = {"input_dim": 8, "hidden_dims": [4], "output_dim": 7, "dropout": 0.1}
    model = RiskPredictor(**reference_config, output_activation="identity")
    with torch.no_grad():
        model.mlp[-1].bias.fill_(-5.0)  # raw outputs below zero: a ReLU head clamps them to 0
    torch.save({"model_config": reference_config, "model_state_dict": model.state_dict(), "normalization": None}, tmp_path / "ref.pt")
    loaded = load_predictor(tmp_path / "ref.pt")
    with torch.no_grad():
        assert float(loaded(torch.zeros(2, 8)).abs().max()) == 0.0
