"""Scoring a trained predictor on its test split and writing ``results.json``."""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import vlarisk
from vlarisk.baselines import baseline_report
from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.dataset import RiskDataset
from vlarisk.device import describe
from vlarisk.inference import predict_rows
from vlarisk.metrics import test_metrics
from vlarisk.splits import split_rows
from vlarisk.thresholds import positive_thresholds


def code_fingerprint() -> str:
    """Hash of the package's source files: which code produced a result, even outside git."""
    digest = hashlib.sha256()
    for path in sorted(Path(vlarisk.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class ScoredSplit:
    """Predictions on one subset of a split, with the labels and training-split thresholds they are scored by."""

    split_rows: dict[str, np.ndarray]
    subset: str
    prediction: np.ndarray
    labels: np.ndarray
    thresholds: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """The scored rows."""
        return self.split_rows[self.subset]


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
    return ScoredSplit(rows, subset, prediction, np.asarray(dataset.labels[rows[subset]]), thresholds)


def split_report(scored: ScoredSplit, dataset: RiskDataset, planting_path: str | None = None, log: Callable[[str], None] = print) -> dict:
    """:func:`~vlarisk.metrics.test_metrics` of a scored split, with the baselines scored the same way.

    Logs a line when the model's mean AUC does not beat the logistic baseline's.
    """
    report = test_metrics(scored.prediction, scored.labels, scored.thresholds)
    report["baselines"] = baseline_report(dataset, scored.split_rows, scored.subset, scored.thresholds, report["test_metrics"], planting_path)
    versus = report["baselines"]["model_vs_logistic"]
    if versus["beats_logistic"] is False:
        log(
            f"{dataset.path}: the model does NOT beat the logistic baseline: mean {scored.subset} AUC {versus['model_mean_auc']:.4f} "
            f"vs {versus['logistic_mean_auc']:.4f} over {', '.join(versus['dimensions'])}"
        )
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
    log: Callable[[str], None] = print,
) -> dict:
    """Metrics of ``model`` and its baselines on one split of ``dataset``, thresholds fixed from its training split."""
    started = time.perf_counter()
    scored = score_split(model, mean, std, dataset, split, device, fraction_of_max, subset)
    report = split_report(scored, dataset, planting_path, log)
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
