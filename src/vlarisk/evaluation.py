"""Scoring a trained predictor on its test split and writing ``results.json``."""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import vlarisk
from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.dataset import RiskDataset
from vlarisk.device import describe
from vlarisk.inference import predict_rows
from vlarisk.metrics import ranking_metrics, mean_defined, test_metrics
from vlarisk.splits import split_rows
from vlarisk.synthetic import load_planting, oracle_scores
from vlarisk.thresholds import positive_thresholds


def code_fingerprint() -> str:
    """Hash of the package's source files: which code produced a result, even outside git."""
    digest = hashlib.sha256()
    for path in sorted(Path(vlarisk.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def oracle_report(dataset: RiskDataset, rows: np.ndarray, thresholds: np.ndarray, planting_path: str) -> dict:
    """AUC/AP of the planting-aware scorer on the same rows and positives as the model."""
    planting = load_planting(planting_path)
    heuristic = not np.asarray(dataset.arrays["has_provided_label"][rows]).any()
    scores = oracle_scores(dataset.hidden[rows], planting["directions"], heuristic)
    metrics, _, _ = ranking_metrics(scores, np.asarray(dataset.labels[rows]), thresholds)
    metrics["mean_auc"] = mean_defined(metrics, "auc")
    metrics["mean_ap"] = mean_defined(metrics, "ap")
    return metrics


@dataclass
class ScoredSplit:
    """Predictions on one split's rows, with the labels and training-split thresholds they are scored by."""

    rows: np.ndarray
    prediction: np.ndarray
    labels: np.ndarray
    thresholds: np.ndarray


def score_split(
    model: torch.nn.Module,
    mean: torch.Tensor,
    std: torch.Tensor,
    dataset: RiskDataset,
    split: dict,
    device: torch.device,
    fraction_of_max: float = 0.5,
    subset: str = "test",
) -> ScoredSplit:
    """Predict one split of ``dataset``; positive thresholds come from its training split."""
    rows = split_rows(dataset.rollout_id, split)
    thresholds = positive_thresholds(np.asarray(dataset.labels[rows["train"]]), fraction_of_max)
    prediction = predict_rows(model, dataset.hidden, rows[subset], mean, std, device)
    return ScoredSplit(rows[subset], prediction, np.asarray(dataset.labels[rows[subset]]), thresholds)


def split_report(scored: ScoredSplit, dataset: RiskDataset, planting_path: str | None = None) -> dict:
    """:func:`~vlarisk.metrics.test_metrics` of a scored split, plus the oracle's when a planting is given."""
    report = test_metrics(scored.prediction, scored.labels, scored.thresholds)
    if planting_path:
        report["oracle"] = oracle_report(dataset, scored.rows, scored.thresholds, planting_path)
    return report


def run_provenance(device: torch.device, started: float) -> dict:
    """Which code, libraries and device produced a result, and the seconds since ``started``."""
    return {
        "code_version": f"vlarisk {vlarisk.__version__} ({code_fingerprint()})",
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "device": describe(device),
        "evaluation_seconds": time.perf_counter() - started,
    }


def evaluate(
    model: torch.nn.Module,
    mean: torch.Tensor,
    std: torch.Tensor,
    dataset: RiskDataset,
    split: dict,
    device: torch.device,
    fraction_of_max: float = 0.5,
    planting_path: str | None = None,
    subset: str = "test",
) -> dict:
    """Metrics of ``model`` on one split of ``dataset``, thresholds fixed from its training split."""
    started = time.perf_counter()
    scored = score_split(model, mean, std, dataset, split, device, fraction_of_max, subset)
    report = split_report(scored, dataset, planting_path)
    report["provenance"] = {"dataset": dataset.path, "dataset_sha256": dataset.content_hash, **run_provenance(device, started)}
    return report


def results_document(model_name: str, report: dict, history: dict, config: dict, training_seconds: float | None = None) -> dict:
    """The ``results.json`` payload: the guide's keys first, then everything added here.

    ``training_seconds`` defaults to the sum of the history's epoch times (none for a history without them).
    """
    document = {"model_name": model_name, **report, "history": history, "config": config}
    if training_seconds is None and history.get("epoch_seconds"):
        training_seconds = float(sum(history["epoch_seconds"]))
    document["provenance"]["training_seconds"] = training_seconds
    document["dimensions"] = list(ACTION_DIMENSIONS)
    return document
