"""Per-feature normalisation statistics, computed from the training rows only, in chunks."""

from __future__ import annotations

import numpy as np

MIN_STD = 1e-6


def feature_statistics(hidden: np.ndarray, rows: np.ndarray, chunk_rows: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``hidden[rows]`` per feature, accumulated in float64.

    Reads ``chunk_rows`` rows at a time so a memory-mapped dataset is never copied whole. A feature
    whose std is below ``MIN_STD`` (constant in training) gets std 1: it is centred, not blown up
    (the reference divided by 1e-8).
    """
    if len(rows) == 0:
        raise ValueError("cannot compute normalisation statistics from zero training rows")
    total = np.zeros(hidden.shape[1], dtype=np.float64)
    total_sq = np.zeros(hidden.shape[1], dtype=np.float64)
    for start in range(0, len(rows), chunk_rows):
        block = np.asarray(hidden[rows[start : start + chunk_rows]], dtype=np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    mean = total / len(rows)
    variance = np.maximum(total_sq / len(rows) - np.square(mean), 0.0)
    std = np.sqrt(variance)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def identity_statistics(hidden_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Statistics that leave inputs unchanged (``--no-normalize``)."""
    return np.zeros(hidden_dim, dtype=np.float32), np.ones(hidden_dim, dtype=np.float32)
