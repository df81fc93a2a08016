"""Reference scorers a risk predictor must beat, scored on the model's rows with the model's label cut-offs.

* ``logistic``: per dimension, a class-balanced logistic regression on the z-scored hidden state.
  A predictor that does not beat it has learned nothing a linear read-out would not.
* ``step_index`` and ``abs_action``: shortcuts that read no hidden state (how far into its rollout
  a step is; how large each action component is). Scoring well with them means the labels can be
  predicted without looking at the model's state.
* ``planted_direction`` (synthetic data only): the projection on the directions the simulator
  planted the risk along. A reference point, not a ceiling: a learned model may score above it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from vlarisk.core.constants import ACTION_DIMENSIONS, NUM_DIMENSIONS
from vlarisk.data.dataset import RiskDataset
from vlarisk.data.label_cutoffs import binarize
from vlarisk.data.synthetic import load_planting, planted_direction_scores
from vlarisk.model.inference import gather_rows
from vlarisk.score.metrics import mean_defined, ranking_metrics
from vlarisk.train.normalization import feature_statistics

# lbfgs stops once the mean-loss gradient is below this: test AUCs agree with sklearn's default
# 1e-4 to within 0.003 (measured at 20k x 4096), at half the iterations or fewer.
LOGISTIC_TOLERANCE = 1e-3
LOGISTIC_MAX_ITER = 300
BLOCK_ROWS = 2048


def logistic_scores(
    hidden: np.ndarray,
    train_rows: np.ndarray,
    train_labels: np.ndarray,
    label_cutoffs: np.ndarray,
    scored_rows: np.ndarray,
    C: float = 0.05,
    max_train_rows: int = 20000,
    seed: int = 0,
) -> np.ndarray:
    """Decision values ``[len(scored_rows), 7]`` of one logistic regression per action dimension.

    Parameters
    ----------
    hidden : array [N, D]
        Hidden states, possibly memory-mapped; read ``BLOCK_ROWS`` rows at a time.
    train_rows, train_labels : arrays [M], [M, 7]
        Training rows (sorted, as :func:`~vlarisk.data.splits.split_rows` gives them) and their labels.
    label_cutoffs : array [7]
        Training-split label cut-offs; ``binarize(train_labels, label_cutoffs)`` are the targets.
    scored_rows : array [K]
        Rows to score.
    C : float
        Inverse L2 strength of :class:`~sklearn.linear_model.LogisticRegression`.
    max_train_rows, seed : int
        At most this many distinct training rows are fitted, drawn with ``seed``.

    Returns
    -------
    array [K, 7]
        Scores (only their ranking matters); a NaN column where the fitted targets hold one class.
    """
    train_rows = np.asarray(train_rows)
    targets = binarize(train_labels, label_cutoffs)
    chosen = fitting_positions(hidden, train_rows, targets, max_train_rows, seed)
    features = gather_rows(hidden, train_rows[chosen], np.empty((len(chosen), hidden.shape[1]), dtype=np.float32))
    mean, std = feature_statistics(features, np.arange(len(features)))
    features -= mean
    features /= std
    weights, bias = fit_dimensions(features, targets[chosen], C)
    return decision_values(hidden, np.asarray(scored_rows), mean, std, weights, bias)


def fitting_positions(hidden: np.ndarray, rows: np.ndarray, targets: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Sorted positions in ``rows`` to fit on: no repeated rows, at most ``max_rows``, seeded draw."""
    distinct = np.flatnonzero(~repeats_previous(hidden, rows, targets))
    if len(distinct) <= max_rows:
        return distinct
    return np.sort(np.random.default_rng(seed).choice(distinct, size=max_rows, replace=False))


def repeats_previous(hidden: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mask of rows whose hidden state and targets equal the previous row's.

    A VLA repeats one hidden state over the steps of an action chunk: such a row adds weight to a
    state already fitted, not information.
    """
    repeat = np.zeros(len(rows), dtype=bool)
    repeat[1:] = np.all(targets[1:] == targets[:-1], axis=1)
    buffer = np.empty((min(BLOCK_ROWS, len(rows)) + 1, hidden.shape[1]), dtype=np.float32)
    for start in range(1, len(rows), BLOCK_ROWS):
        block = gather_rows(hidden, rows[start - 1 : start + BLOCK_ROWS], buffer)
        repeat[start : start + len(block) - 1] &= np.all(block[1:] == block[:-1], axis=1)
    return repeat


def fit_dimensions(features: np.ndarray, targets: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``[D, 7]`` and biases ``[7]`` of each dimension's fit; NaN where its targets hold one class.

    Dimensions are fitted side by side on ``torch.get_num_threads()`` threads (``--threads``), each
    with single-threaded BLAS: on 2 cores about half the time of one fit after another with
    two-threaded BLAS, and the result does not depend on the thread count.
    """
    weights = np.full((features.shape[1], NUM_DIMENSIONS), np.nan, dtype=np.float32)
    bias = np.full(NUM_DIMENSIONS, np.nan, dtype=np.float32)
    fittable = [dim for dim in range(NUM_DIMENSIONS) if 0 < targets[:, dim].sum() < len(targets)]

    def fit(dim: int) -> LogisticRegression:
        model = LogisticRegression(C=C, class_weight="balanced", tol=LOGISTIC_TOLERANCE, max_iter=LOGISTIC_MAX_ITER)
        return model.fit(features, targets[:, dim])

    with threadpool_limits(1), ThreadPoolExecutor(max(1, min(len(fittable), torch.get_num_threads()))) as pool:
        for dim, model in zip(fittable, pool.map(fit, fittable), strict=True):
            weights[:, dim], bias[dim] = model.coef_[0], model.intercept_[0]
    return weights, bias


def decision_values(
    hidden: np.ndarray, rows: np.ndarray, mean: np.ndarray, std: np.ndarray, weights: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """``((hidden[rows] - mean) / std) @ weights + bias``, one block of rows at a time."""
    scores = np.empty((len(rows), weights.shape[1]), dtype=np.float32)
    buffer = np.empty((min(BLOCK_ROWS, len(rows)), hidden.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), BLOCK_ROWS):
        block = gather_rows(hidden, rows[start : start + BLOCK_ROWS], buffer)
        block -= mean
        block /= std
        scores[start : start + len(block)] = block @ weights + bias
    return scores


def shortcut_scores(dataset: RiskDataset, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Scorers ``[len(rows), 7]`` that read no hidden state: ``step_index`` and ``abs_action``."""
    steps = np.asarray(dataset.arrays["step_index"][rows], dtype=np.float64)
    return {
        "step_index": np.repeat(steps[:, None], NUM_DIMENSIONS, axis=1),
        "abs_action": np.abs(np.asarray(dataset.arrays["action"][rows], dtype=np.float64)),
    }


def planted_direction_scores_of(dataset: RiskDataset, rows: np.ndarray, planting_path: str) -> np.ndarray:
    """The planted-direction scorer on ``rows``; heuristic labels when no scored row carries its own."""
    planting = load_planting(planting_path)
    heuristic = not np.asarray(dataset.arrays["has_provided_label"][rows]).any()
    nonlinear = planting["spec"].get("nonlinear_dimensions", [])
    return planted_direction_scores(dataset.hidden[rows], planting["directions"], heuristic, nonlinear)


def scorer_metrics(scores: np.ndarray, labels: np.ndarray, label_cutoffs: np.ndarray) -> dict:
    """Per-dimension ``auc_<d>``/``ap_<d>``, their means, and why any is undefined."""
    metrics, _, undefined = ranking_metrics(scores, labels, label_cutoffs)
    metrics["mean_auc"] = mean_defined(metrics, "auc")
    metrics["mean_ap"] = mean_defined(metrics, "ap")
    metrics["undefined"] = undefined
    return metrics


def model_vs_logistic(model_metrics: dict, logistic_metrics: dict) -> dict:
    """Mean AUC of model and logistic baseline over the dimensions where both are defined."""
    shared = [
        name
        for name in ACTION_DIMENSIONS
        if model_metrics.get(f"auc_{name}") is not None and logistic_metrics.get(f"auc_{name}") is not None
    ]
    model = mean_defined({f"auc_{name}": model_metrics[f"auc_{name}"] for name in shared}, "auc")
    logistic = mean_defined({f"auc_{name}": logistic_metrics[f"auc_{name}"] for name in shared}, "auc")
    margin = None if model is None else model - logistic
    return {
        "dimensions": shared,
        "model_mean_auc": model,
        "logistic_mean_auc": logistic,
        "margin": margin,
        "beats_logistic": None if margin is None else bool(margin > 0),
    }


def baseline_scores(
    dataset: RiskDataset, train_rows: np.ndarray, scored_rows: np.ndarray, label_cutoffs: np.ndarray, planting_path: str | None = None
) -> dict[str, np.ndarray]:
    """Every baseline's scores ``[len(scored_rows), 7]``.

    Parameters
    ----------
    dataset : RiskDataset
        The dataset the model was scored on.
    train_rows : array
        The training split's rows: the logistic regression is fitted on them.
    scored_rows : array
        The rows to score (e.g. the test split's, followed by the calibration split's).
    label_cutoffs : array [7]
        The training-split label cut-offs the model was scored with (the logistic fit's targets).
    planting_path : str, optional
        Planting record of synthetic data: adds the ``planted_direction`` scorer.
    """
    train_labels = np.asarray(dataset.labels[train_rows])
    scores = {
        "logistic": logistic_scores(dataset.hidden, train_rows, train_labels, label_cutoffs, scored_rows),
        **shortcut_scores(dataset, scored_rows),
    }
    if planting_path:
        scores["planted_direction"] = planted_direction_scores_of(dataset, scored_rows, planting_path)
    return scores


def baseline_metrics(scores: dict[str, np.ndarray], labels: np.ndarray, label_cutoffs: np.ndarray) -> dict:
    """Every baseline's :func:`scorer_metrics` (:func:`baseline_scores` on the scored rows, whose ``labels`` are given)."""
    return {name: scorer_metrics(values, labels, label_cutoffs) for name, values in scores.items()}


def baseline_report(scores: dict[str, np.ndarray], labels: np.ndarray, label_cutoffs: np.ndarray, model_metrics: dict) -> dict:
    """Every baseline's metrics (:func:`baseline_metrics`), and the model's mean AUC (``model_metrics``,
    its ``test_metrics``) against the logistic one."""
    return with_model_comparison(baseline_metrics(scores, labels, label_cutoffs), model_metrics)


def with_model_comparison(metrics: dict, model_metrics: dict) -> dict:
    """``results.json``'s ``baselines``: the baselines' ``metrics`` and ``model_vs_logistic``."""
    return {**metrics, "model_vs_logistic": model_vs_logistic(model_metrics, metrics["logistic"])}
