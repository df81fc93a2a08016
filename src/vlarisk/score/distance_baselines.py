"""Training-free failure detectors on the model's own hidden states: the field's strongest baselines (SAFE's).

* ``knn``: the mean cosine distance of a state to its ``k`` nearest training-success states minus
  that to its ``k`` nearest training-failure states. Higher is more failure-like.
* ``mahalanobis``: the Mahalanobis distance of a state to the training-success states, with a
  Ledoit-Wolf shrinkage covariance (a 4096-D covariance from a few thousand states is singular
  without shrinkage), through its Cholesky factor (a triangular solve per block, no ``D x D``
  inverse). Higher is further from success.

Both are fitted on training rollouts only: at most ``max_states`` distinct states per outcome
(a state repeated over an action chunk counts once), drawn with a seed, z-scored with the
statistics of the drawn training states. A state repeated over an action chunk is scored once,
``BLOCK_ROWS`` states at a time, so a 4096-D dataset of 100k steps is never held in memory at once.

Memory at 4096-D stays near the drawn states themselves (float32, z-scored and scaled in place):
the pooled statistics are summed in float64 a block at a time, and the covariance is one
``D x D`` float32 matrix, shrunk and factored in place (the shrinkage keeps it well conditioned:
the float32 factor gives the float64 one's distances to 4e-7 at 4096-D).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.linalg.blas import ssyrk

from vlarisk.core.constants import NUM_DIMENSIONS
from vlarisk.data.dataset import StepStates
from vlarisk.model.inference import gather_rows
from vlarisk.score.baselines import BLOCK_ROWS, repeats_previous

KNN_NEIGHBOURS = 5
MAX_REFERENCE_STATES = 5000
COVARIANCE_RIDGE = 1e-6  # on z-scored features (unit variance): negligible beside any real spread
STATISTICS_ROWS = 256  # rows per float64 block of the pooled statistics (8 MiB at 4096-D)


def reference_states(hidden: np.ndarray, rows: np.ndarray, max_states: int, seed: int) -> np.ndarray:
    """``float32 [n, D]`` distinct states among ``rows`` (sorted), at most ``max_states`` drawn with ``seed``."""
    rows = np.asarray(rows)
    distinct = rows[~repeats_previous(hidden, rows, np.zeros((len(rows), 1)))]
    if len(distinct) > max_states:
        distinct = np.sort(np.random.default_rng(seed).choice(distinct, size=max_states, replace=False))
    return gather_rows(hidden, distinct, np.empty((len(distinct), hidden.shape[1]), dtype=np.float32))


def _standardiser(*states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (1 where constant) of the training states pooled, summed in float64, returned in float32."""
    count = sum(len(part) for part in states)
    mean = sum(part.sum(axis=0, dtype=np.float64) for part in states) / count
    squares = np.zeros_like(mean)
    for part in states:
        for start in range(0, len(part), STATISTICS_ROWS):
            squares += np.square(part[start : start + STATISTICS_ROWS] - mean).sum(axis=0)
    std = np.sqrt(squares / count)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _to_unit_rows(states: np.ndarray) -> np.ndarray:
    """``states`` with each row scaled to unit length in place (a zero row stays zero)."""
    norms = np.linalg.norm(states, axis=1, keepdims=True)
    states /= np.where(norms > 0, norms, 1.0)
    return states


def _mean_nearest_distance(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance of each unit query row to its ``k`` nearest unit reference rows."""
    k = min(k, len(reference))
    similarity = queries @ reference.T
    similarity.partition(len(reference) - k, axis=1)  # the k largest last, without a copy
    return 1.0 - similarity[:, -k:].mean(axis=1)


def _covariance_factor(states: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor (float32) of the Ledoit-Wolf covariance of z-scored ``states`` (at least
    two) around their mean ``centre``, with a ridge of ``COVARIANCE_RIDGE`` so identical states still
    give a positive-definite matrix.

    The same estimate as scikit-learn's ``ledoit_wolf`` (float32 products as it takes them), from one
    Gram matrix where it forms three: its shrinkage's sum over the squared states' Gram matrix is the
    sum of the squared rows' norms squared, and its sum of squared covariances is read off the
    covariance. The lower triangle alone is formed (``syrk``), a block of rows at a time.
    """
    count, width = states.shape
    gram = np.zeros((width, width), dtype=np.float32, order="F")
    squared_norms = np.empty(count)
    for start in range(0, count, BLOCK_ROWS):
        centred = states[start : start + BLOCK_ROWS] - centre
        squared_norms[start : start + len(centred)] = np.einsum("ij,ij->i", centred, centred)
        gram = ssyrk(1.0, centred.T, beta=1.0, c=gram, lower=1, overwrite_c=1)  # gram += centred.T @ centred
    covariance = gram  # the lower triangle; the upper stays zero
    covariance /= count
    diagonal = np.diag_indices_from(covariance)
    trace = covariance[diagonal].sum(dtype=np.float64)
    mu = trace / width
    squared_sum = 2.0 * _squared_sum(covariance) - np.square(covariance[diagonal], dtype=np.float64).sum()  # both triangles
    beta = (np.square(squared_norms).sum() / count - squared_sum) / (width * count)
    delta = (squared_sum - 2.0 * mu * trace + width * mu**2) / width
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    covariance *= 1.0 - shrinkage
    covariance[diagonal] += shrinkage * mu + COVARIANCE_RIDGE
    return cholesky(covariance, lower=True, overwrite_a=True, check_finite=False)


def _squared_sum(matrix: np.ndarray, columns: int = 256) -> float:
    """Sum of the squared entries of a float32 matrix, in float64, a block of columns at a time."""
    return sum(float(np.square(matrix[:, start : start + columns], dtype=np.float64).sum()) for start in range(0, matrix.shape[1], columns))


def _blocks(hidden: np.ndarray, rows: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """``(start, z-scored block)`` of ``hidden[rows]``, ``BLOCK_ROWS`` rows at a time."""
    buffer = np.empty((min(BLOCK_ROWS, len(rows)), hidden.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), BLOCK_ROWS):
        block = gather_rows(hidden, rows[start : start + BLOCK_ROWS], buffer)
        block -= mean
        block /= std
        yield start, block


def distance_scores(
    hidden: np.ndarray,
    train_rows: np.ndarray,
    train_success: np.ndarray,
    scored_rows: np.ndarray,
    k: int = KNN_NEIGHBOURS,
    max_states: int = MAX_REFERENCE_STATES,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``knn`` and ``mahalanobis`` scores ``[len(scored_rows), 7]`` (one score repeated per dimension, as a
    rollout-level detector gives one number); ``knn`` is NaN when the training split lacks an outcome,
    ``mahalanobis`` when it has fewer than two distinct success states."""
    train_rows, train_success = np.asarray(train_rows), np.asarray(train_success, bool)
    successes = reference_states(hidden, train_rows[train_success], max_states, seed)
    failures = reference_states(hidden, train_rows[~train_success], max_states, seed + 1)
    mean, std = _standardiser(successes, failures)
    for states in (successes, failures):
        states -= mean
        states /= std
    centre = successes.mean(axis=0)
    factor = _covariance_factor(successes, centre) if len(successes) >= 2 else None
    success_unit, failure_unit = _to_unit_rows(successes), _to_unit_rows(failures)
    scored_rows = np.asarray(scored_rows)
    if isinstance(hidden, StepStates):  # each distinct state once
        hidden, scored_rows = hidden.states, hidden.index[scored_rows]
    scored_rows, per_row = np.unique(scored_rows, return_inverse=True)
    knn = np.full(len(scored_rows), np.nan)
    mahalanobis = np.empty(len(scored_rows))
    for start, block in _blocks(hidden, scored_rows, mean, std):
        stop = start + len(block)
        if factor is None:
            mahalanobis[start:stop] = np.nan
        else:
            whitened = solve_triangular(factor, (block - centre).T, lower=True, overwrite_b=True, check_finite=False)
            mahalanobis[start:stop] = np.sqrt(np.einsum("ij,ij->j", whitened, whitened))
        if len(failure_unit) and len(success_unit):
            unit = _to_unit_rows(block)
            knn[start:stop] = _mean_nearest_distance(unit, success_unit, k) - _mean_nearest_distance(unit, failure_unit, k)
    return {name: np.repeat(values[per_row, None], NUM_DIMENSIONS, axis=1) for name, values in (("knn", knn), ("mahalanobis", mahalanobis))}
