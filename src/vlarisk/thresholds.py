"""Turning continuous risk labels into positives for AUC/AP, with thresholds fixed on training data.

A step is a positive for dimension ``d`` when its label reaches ``fraction_of_max`` times the
largest training label of ``d``. The threshold never looks at the split being scored (the
reference's did), so validation and test positives mean the same thing.
"""

from __future__ import annotations

import numpy as np


def positive_thresholds(train_labels: np.ndarray, fraction_of_max: float = 0.5) -> np.ndarray:
    """Per-dimension thresholds ``[7]``; NaN where the training split has no risk at all."""
    peak = np.asarray(train_labels, dtype=np.float64).max(axis=0)
    return np.where(peak > 0, fraction_of_max * peak, np.nan)


def binarize(labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean positives ``[N, 7]``; a dimension with a NaN threshold has no positives."""
    with np.errstate(invalid="ignore"):
        return np.asarray(labels) >= np.where(np.isnan(thresholds), np.inf, thresholds)
