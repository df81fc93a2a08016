"""Turning continuous risk labels into positives for AUC/AP, with thresholds fixed on training data.

A step is a positive for dimension ``d`` when its label reaches ``fraction_of_max`` times the
largest training label of ``d``. The threshold never looks at the split being scored, so
validation and test positives mean the same thing. Training saves them in the checkpoint
(:func:`thresholds_by_dimension`), evaluation reads them from there.
"""

from __future__ import annotations

import numpy as np

from vlarisk.core.constants import ACTION_DIMENSIONS


def positive_thresholds(train_labels: np.ndarray, fraction_of_max: float = 0.5) -> np.ndarray:
    """Per-dimension thresholds ``[7]``; NaN where the training split has no risk at all."""
    peak = np.asarray(train_labels, dtype=np.float64).max(axis=0)
    return np.where(peak > 0, fraction_of_max * peak, np.nan)


def binarize(labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean positives ``[N, 7]``; a dimension with a NaN threshold has no positives."""
    with np.errstate(invalid="ignore"):
        return np.asarray(labels) >= np.where(np.isnan(thresholds), np.inf, thresholds)


def thresholds_by_dimension(thresholds: np.ndarray) -> dict[str, float | None]:
    """``{dimension: threshold}``, ``None`` where undefined: the form saved in results and checkpoints."""
    return {name: (None if np.isnan(t) else float(t)) for name, t in zip(ACTION_DIMENSIONS, thresholds, strict=True)}


def thresholds_from_dimensions(saved: dict[str, float | None]) -> np.ndarray:
    """The ``[7]`` array of a :func:`thresholds_by_dimension` dict (NaN where ``None``)."""
    return np.array([np.nan if saved[name] is None else saved[name] for name in ACTION_DIMENSIONS], dtype=np.float64)
