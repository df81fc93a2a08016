"""Per-dimension deviation labels of a physics rollout (no simulator needed: plain arrays).

A step's deviation in one arm dimension is |policy action - expert action at the true state|.
It counts as risky when above that dimension's 95th percentile over the successful rollouts of
the same task, and only inside ``[t* - window, t*]`` of a failed rollout, where the label ramps
linearly from ``1 / (window + 1)`` to 1 at ``t*`` (so early warning is learnable and graded).
Successful rollouts and steps outside the window are 0; the arm's absent rotation dimensions are
always 0 and named in the rollout's ``absent_dimensions`` (their metrics are undefined, not 0).
"""

from __future__ import annotations

import numpy as np

from vlarisk.core.errors import InputError
from vlarisk.physics.env import ARM_DIMENSIONS

DEVIATION_QUANTILE = 0.95


def deviation(actions: np.ndarray, expert_actions: np.ndarray) -> np.ndarray:
    """``[T, 4]`` absolute differences between the policy's and the expert's arm actions."""
    return np.abs(np.asarray(actions, dtype=np.float64) - np.asarray(expert_actions, dtype=np.float64))


def deviation_thresholds(success_deviations: list[np.ndarray]) -> np.ndarray:
    """Each arm dimension's deviation quantile over every step of the given successful rollouts."""
    if not success_deviations:
        raise InputError("no episode succeeded, so the deviation labels have no thresholds: collect more episodes or a milder --mix")
    return np.quantile(np.concatenate(success_deviations), DEVIATION_QUANTILE, axis=0)


def deviation_labels(deviations: np.ndarray, thresholds: np.ndarray, t_star: int | None, window: int) -> np.ndarray:
    """``[T, 7]`` labels of one rollout (``t_star`` None: a success, all zero)."""
    labels = np.zeros((len(deviations), 7), dtype=np.float32)
    if t_star is None:
        return labels
    for step in range(max(0, t_star - window), min(t_star + 1, len(deviations))):
        ramp = (step - (t_star - window) + 1) / (window + 1)
        above = deviations[step] > thresholds
        labels[step, list(ARM_DIMENSIONS)] = np.where(above, ramp, 0.0)
    return labels
