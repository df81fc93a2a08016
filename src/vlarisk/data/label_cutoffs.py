"""Turning continuous risk labels into positives for AUC/AP, with label cut-offs fixed on training data.

A step is a positive for dimension ``d`` when its label reaches ``fraction_of_max`` times the
largest training label of ``d``. The cut-off never looks at the split being scored, so
validation and test positives mean the same thing. Training saves them in the checkpoint
(:func:`label_cutoffs_by_dimension`), evaluation reads them from there.
"""

from __future__ import annotations

import numpy as np

from vlarisk.core.constants import ACTION_DIMENSIONS


def positive_label_cutoffs(train_labels: np.ndarray, fraction_of_max: float = 0.5) -> np.ndarray:
    """Per-dimension label cut-offs ``[7]``; NaN where the training split has no risk at all."""
    peak = np.asarray(train_labels, dtype=np.float64).max(axis=0)
    return np.where(peak > 0, fraction_of_max * peak, np.nan)


def binarize(labels: np.ndarray, label_cutoffs: np.ndarray) -> np.ndarray:
    """Boolean positives ``[N, 7]``; a dimension with a NaN cut-off has no positives."""
    with np.errstate(invalid="ignore"):
        return np.asarray(labels) >= np.where(np.isnan(label_cutoffs), np.inf, label_cutoffs)


def label_cutoffs_by_dimension(label_cutoffs: np.ndarray) -> dict[str, float | None]:
    """``{dimension: cut-off}``, ``None`` where undefined: the form saved in results and checkpoints."""
    return {name: (None if np.isnan(t) else float(t)) for name, t in zip(ACTION_DIMENSIONS, label_cutoffs, strict=True)}


def label_cutoffs_from_dimensions(saved: dict[str, float | None]) -> np.ndarray:
    """The ``[7]`` array of a :func:`label_cutoffs_by_dimension` dict (NaN where ``None``)."""
    return np.array([np.nan if saved[name] is None else saved[name] for name in ACTION_DIMENSIONS], dtype=np.float64)
