"""Per-feature normalisation statistics, computed from the training rows only, in chunks."""

from __future__ import annotations

import numpy as np

from vlarisk.data.dataset import StepStates

MIN_STD = 1e-6


def feature_statistics(
    hidden: np.ndarray, rows: np.ndarray, chunk_rows: int = 16384, block_rows: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``hidden[rows]`` per feature, accumulated in float64.

    Reads ``block_rows`` rows at a time into one reused float64 buffer (about 70 MB at 4096-D), so
    a memory-mapped dataset is never copied whole. Within each ``chunk_rows`` chunk the rows are
    summed one after another and the chunk sums are added to the totals, so the result does not
    depend on ``block_rows`` (it is bit-for-bit that of summing each chunk at once). A feature whose
    std is below ``MIN_STD`` (constant in training) gets std 1: it is centred, not blown up.

    For a per-step :class:`~vlarisk.data.dataset.StepStates` view each distinct state among the rows
    is read once and counted as many times as it has steps there, so the result is still the
    per-step statistics of ``rows`` (to float64 rounding; bit for bit when no state repeats).
    """
    rows = np.asarray(rows)
    if len(rows) == 0:
        raise ValueError("cannot compute normalisation statistics from zero training rows")
    weights = None
    if isinstance(hidden, StepStates):
        rows, counts = np.unique(np.asarray(hidden.index[rows], dtype=np.int64), return_counts=True)
        hidden, num_steps = hidden.states, int(counts.sum())
        weights = None if num_steps == len(rows) else counts.astype(np.float64)[:, None]
    else:
        num_steps = len(rows)
    dim = hidden.shape[1]
    block_rows = max(1, min(block_rows, chunk_rows, len(rows)))
    # Row 0 of each buffer carries the running sum of the chunk, rows 1.. hold the next block:
    # numpy sums a C-contiguous array over axis 0 row by row, so this continues the same sequence.
    values = np.empty((block_rows + 1, dim), dtype=np.float64)
    squares = np.empty_like(values)
    total = np.zeros(dim, dtype=np.float64)
    total_sq = np.zeros(dim, dtype=np.float64)
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        chunk_sum = chunk_sq = None
        for offset in range(0, len(chunk), block_rows):
            index = chunk[offset : offset + block_rows]
            n = len(index)
            values[1 : n + 1] = _gather(hidden, index)
            np.square(values[1 : n + 1], out=squares[1 : n + 1])
            if weights is not None:  # a state of k steps adds k x and k x^2
                block_weights = weights[start + offset : start + offset + n]
                values[1 : n + 1] *= block_weights
                squares[1 : n + 1] *= block_weights
            if chunk_sum is None:
                chunk_sum, chunk_sq = values[1 : n + 1].sum(axis=0), squares[1 : n + 1].sum(axis=0)
            else:
                values[0], squares[0] = chunk_sum, chunk_sq
                chunk_sum, chunk_sq = values[: n + 1].sum(axis=0), squares[: n + 1].sum(axis=0)
        total += chunk_sum
        total_sq += chunk_sq
    mean = total / num_steps
    variance = np.maximum(total_sq / num_steps - np.square(mean), 0.0)
    std = np.sqrt(variance)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _gather(hidden: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``hidden[index]``, as a view (no copy) when the rows are one contiguous run."""
    if len(index) and index[-1] - index[0] == len(index) - 1 and (len(index) < 3 or bool(np.all(np.diff(index) == 1))):
        return hidden[int(index[0]) : int(index[-1]) + 1]
    return hidden[index]


def identity_statistics(hidden_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Statistics that leave inputs unchanged (``--no-normalize``)."""
    return np.zeros(hidden_dim, dtype=np.float32), np.ones(hidden_dim, dtype=np.float32)
