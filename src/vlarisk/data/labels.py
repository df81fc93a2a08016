"""The heuristic per-dimension risk labels used when a rollout carries no ``per_dim_risk``.

Successful rollouts get zero risk. In a failed rollout of ``T`` steps, the last
``W = max(min_window, window_fraction * T)`` steps are the failure window: there a dimension's risk
is its action magnitude relative to the largest magnitude of that dimension inside the window;
before the window it is a tenth of the action magnitude. Everything is clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np

from vlarisk.core.constants import NUM_DIMENSIONS


def failure_window(num_steps: int, min_window: int = 10, window_fraction: float = 0.2) -> int:
    """Number of final steps of a failed rollout that count as the lead-up to the failure."""
    return int(max(min_window, window_fraction * num_steps))


def heuristic_risk_labels(
    actions: np.ndarray,
    success: bool,
    min_window: int = 10,
    window_fraction: float = 0.2,
) -> np.ndarray:
    """Per-step risk labels ``[T, 7]`` for one rollout from its actions ``[T, 7]`` and outcome."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != NUM_DIMENSIONS:
        raise ValueError(f"actions must have shape [T, {NUM_DIMENSIONS}], got {actions.shape}")
    num_steps = actions.shape[0]
    labels = np.zeros_like(actions)
    if success or num_steps == 0:
        return labels
    magnitude = np.abs(actions)
    window_start = max(0, num_steps - failure_window(num_steps, min_window, window_fraction))
    labels[:window_start] = 0.1 * magnitude[:window_start]
    window = magnitude[window_start:]
    peak = window.max(axis=0)
    labels[window_start:] = np.divide(window, peak, out=np.zeros_like(window), where=peak > 0)
    return np.clip(labels, 0.0, 1.0)
