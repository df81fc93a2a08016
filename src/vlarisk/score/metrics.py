"""Test metrics in the guide's keys: errors overall and per dimension, AUC-ROC and AP per dimension.

A dimension whose scored split holds a single class has no AUC or AP: it is reported as ``None``
(``null`` in JSON) with the reason under ``undefined``, never as 0.5 or 0. So is a dimension a
scorer gives no scores for (an all-NaN column: a baseline whose training targets held one class).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.data.documents import LABEL_CUTOFFS, TEST_METRICS
from vlarisk.data.label_cutoffs import binarize, label_cutoffs_by_dimension
from vlarisk.model.collapse import collapse_reasons


def regression_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``mse``, ``mae``, ``rmse`` overall and ``mse_<d>``, ``mae_<d>`` per dimension."""
    error = np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    squared, absolute = np.square(error), np.abs(error)
    metrics = {"mse": float(squared.mean()), "mae": float(absolute.mean()), "rmse": float(np.sqrt(squared.mean()))}
    for dim, name in enumerate(ACTION_DIMENSIONS):
        metrics[f"mse_{name}"] = float(squared[:, dim].mean())
        metrics[f"mae_{name}"] = float(absolute[:, dim].mean())
    return metrics


def ranking_metrics(scores: np.ndarray, target: np.ndarray, label_cutoffs: np.ndarray) -> tuple[dict, dict, dict]:
    """Per-dimension ``auc_<d>``/``ap_<d>``, positive counts, and reasons for undefined values."""
    positives = binarize(target, label_cutoffs)
    metrics, counts, undefined = {}, {}, {}
    for dim, name in enumerate(ACTION_DIMENSIONS):
        column = positives[:, dim]
        count = int(column.sum())
        counts[name] = count
        if np.isnan(label_cutoffs[dim]):
            reason = "no positive labels in the training split, so no label cut-off exists"
        elif count == 0:
            reason = "no positives in the scored split"
        elif count == len(column):
            reason = "no negatives in the scored split"
        elif np.isnan(scores[:, dim]).all():
            reason = "no scores (all NaN), as from a baseline whose training targets hold a single class"
        else:
            reason = None
        if reason:
            metrics[f"auc_{name}"] = metrics[f"ap_{name}"] = None
            undefined[name] = reason
        else:
            metrics[f"auc_{name}"] = float(roc_auc_score(column, scores[:, dim]))
            metrics[f"ap_{name}"] = float(average_precision_score(column, scores[:, dim]))
    return metrics, counts, undefined


def mean_defined(metrics: dict, prefix: str) -> float | None:
    """Mean of ``<prefix>_<d>`` over the dimensions where it is defined."""
    values = [metrics[f"{prefix}_{name}"] for name in ACTION_DIMENSIONS if metrics.get(f"{prefix}_{name}") is not None]
    return float(np.mean(values)) if values else None


def test_metrics(prediction: np.ndarray, target: np.ndarray, label_cutoffs: np.ndarray) -> dict:
    """Everything reported for one scored split (the guide's keys plus means, counts, reasons)."""
    ranking, counts, undefined = ranking_metrics(prediction, target, label_cutoffs)
    metrics = {**regression_metrics(prediction, target), **ranking}
    metrics["mean_auc"] = mean_defined(metrics, "auc")
    metrics["mean_ap"] = mean_defined(metrics, "ap")
    spread = np.asarray(prediction).std(axis=0) if len(prediction) else np.zeros(len(ACTION_DIMENSIONS))
    collapse = collapse_reasons(prediction, metrics["mean_auc"])
    return {
        TEST_METRICS: metrics,
        "positives": counts,
        "num_samples": int(len(target)),
        LABEL_CUTOFFS: label_cutoffs_by_dimension(label_cutoffs),
        "undefined": undefined,
        "mean_over": [name for name in ACTION_DIMENSIONS if metrics[f"auc_{name}"] is not None],
        "prediction_std": {name: float(s) for name, s in zip(ACTION_DIMENSIONS, spread, strict=True)},
        "collapsed": bool(collapse),
        "collapse": collapse,
    }


test_metrics.__test__ = False  # not a pytest test despite its name


def _ranking_or_reason(positive: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """AUC and AP of ``scores`` against a boolean target, or why they are undefined."""
    count = int(positive.sum())
    if count == 0 or count == len(positive):
        return None, None, "no positives in the scored split" if count == 0 else "no negatives in the scored split"
    return float(roc_auc_score(positive, scores)), float(average_precision_score(positive, scores)), None


def step_target_metrics(prediction: np.ndarray, labels: np.ndarray, fail_within_k: np.ndarray, label_cutoffs: np.ndarray) -> dict:
    """Per-step targets that do not hang on the largest training label.

    * ``fail_within_k``: the overall risk (largest of the dimensions) against "the rollout fails
      within the next k steps".
    * ``label_above_zero``: per dimension, any label above 0 is a positive, so the early part of a
      risk ramp counts as a hit; means over all 7 dimensions, ``None`` unless every one is defined.
    * ``ambiguous_steps``: per dimension, the steps with ``0 < label < cut-off``, which the
      guide's rule (``test_metrics``) counts as negatives.
    """
    prediction, labels = np.asarray(prediction, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    auc, ap, reason = _ranking_or_reason(np.asarray(fail_within_k).astype(bool), prediction.max(axis=1))
    above_zero, undefined = {}, {}
    for dim, name in enumerate(ACTION_DIMENSIONS):
        above_zero[f"auc_{name}"], above_zero[f"ap_{name}"], why = _ranking_or_reason(labels[:, dim] > 0, prediction[:, dim])
        if why:
            undefined[name] = why
    for prefix in ("auc", "ap"):
        above_zero[f"mean_{prefix}"] = None if undefined else mean_defined(above_zero, prefix)
    ambiguous = (labels > 0) & (labels < np.where(np.isnan(label_cutoffs), np.inf, label_cutoffs))
    return {
        "fail_within_k": {"auc": auc, "ap": ap, "positives": int(np.asarray(fail_within_k).astype(bool).sum()), "reason": reason},
        "label_above_zero": {**above_zero, "mean_over": list(ACTION_DIMENSIONS), "undefined": undefined},
        "ambiguous_steps": {name: int(ambiguous[:, dim].sum()) for dim, name in enumerate(ACTION_DIMENSIONS)},
    }
