"""A trained model's predictions on its test split, saved for curves and failure-rate analysis.

The file (``.npz``, no pickles) holds per test step the predicted risk, the label, the positives
used for AUC/AP (thresholds fixed on the training split exactly as in :mod:`vlarisk.evaluation`),
``fail_within_k``, the outcome and the rollout id, plus a JSON record of the checkpoint, dataset
and split it came from, so each curve and correlation traces back to one trained model.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from vlarisk.dataset import load_dataset
from vlarisk.inference import predict_rows
from vlarisk.io_utils import atomic_path, file_sha256
from vlarisk.model import predictor_from_checkpoint, read_checkpoint
from vlarisk.splits import split_rows, validate_split
from vlarisk.thresholds import binarize, positive_thresholds


def predict_test_split(checkpoint_path: str, dataset_path: str, split: dict, fraction_of_max: float = 0.5, device: torch.device | None = None) -> dict:
    """Arrays of the test split's steps and the model's predictions for them."""
    dataset = load_dataset(dataset_path)
    validate_split(split, dataset.metadata["rollouts"], "split")
    rows = split_rows(dataset.rollout_id, split)
    thresholds = positive_thresholds(np.asarray(dataset.labels[rows["train"]]), fraction_of_max)
    device = device or torch.device("cpu")
    model = predictor_from_checkpoint(read_checkpoint(checkpoint_path), checkpoint_path).to(device)
    test = rows["test"]
    label = np.asarray(dataset.labels[test], dtype=np.float32)
    provenance = {"checkpoint": str(checkpoint_path), "checkpoint_sha256": file_sha256(checkpoint_path), "dataset": str(dataset_path), "dataset_sha256": dataset.content_hash, "positive_fraction_of_max": fraction_of_max}
    return {
        "prediction": predict_rows(model.predictor, dataset.hidden, test, model.mean, model.std, device),
        "label": label,
        "positive": binarize(label, thresholds),
        "thresholds": thresholds,
        "fail_within_k": np.asarray(dataset.arrays["fail_within_k"][test], dtype=np.uint8),
        "success": np.asarray(dataset.arrays["success"][test], dtype=np.uint8),
        "rollout_id": np.asarray(dataset.rollout_id[test], dtype=np.int32),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    }


def save_predictions(path: str | os.PathLike, arrays: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_predictions(path: str | os.PathLike) -> dict:
    """Arrays of a predictions file, ``provenance`` decoded to a dict."""
    with np.load(path, allow_pickle=False) as record:
        arrays = {name: record[name] for name in record.files}
    arrays["provenance"] = json.loads(str(arrays["provenance"]))
    return arrays


def failure_relation(risk: np.ndarray, label: np.ndarray, fail_within_k: np.ndarray, bins: int = 5) -> dict:
    """How one dimension's predicted risk tracks failures.

    ``spearman_fail``: rank correlation with ``fail_within_k`` (does higher risk mean a failure is
    near?); ``pearson_label``: linear correlation with the dimension's risk label;
    ``fail_rate_by_bin``: the share of steps with a failure within the window in each of ``bins``
    equal-count bins of predicted risk, lowest risk first (ties are split in step order).
    """
    risk = np.asarray(risk, dtype=np.float64)
    fail = np.asarray(fail_within_k, dtype=np.float64)
    order = np.argsort(risk, kind="stable")
    return {
        "spearman_fail": _correlation(spearmanr, risk, fail),
        "pearson_label": _correlation(pearsonr, risk, np.asarray(label, dtype=np.float64)),
        "fail_rate_by_bin": [float(fail[part].mean()) if len(part) else None for part in np.array_split(order, bins)],
    }


def _correlation(method, x: np.ndarray, y: np.ndarray) -> float | None:
    """Correlation coefficient, ``None`` where either side is constant (it is undefined there)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(method(x, y)[0])
