"""Confidence intervals for rollout-level detection that hold at their nominal level.

* Proportions (TPR, FPR at a fitted threshold) get exact Clopper-Pearson intervals: a rate of
  0/n still has a real upper bound (about 3.7/n at 95%), never a zero-width interval.
* Everything else is bootstrapped over what is independent: tasks, then rollouts within a drawn
  task, when there are at least :data:`MIN_TASKS_TO_CLUSTER` tasks (rollouts of one task share it,
  so resampling rollouts alone would understate the spread across tasks); otherwise rollouts
  within each outcome. Steps are never resampled: the steps of one rollout are not independent.
* A resample is a vector of integer weights (how often each rollout was drawn), so that every
  metric of every resample is one vectorised, weighted computation.
* The conformal threshold is refitted inside each resample on a resample of the calibration
  successes, so threshold-dependent intervals cover calibration sampling as well as test sampling.
* Intervals are plain percentile intervals; they are never widened to contain their point.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
MIN_TASKS_TO_CLUSTER = 3


def clopper_pearson(hits: int, trials: int, level: float = LEVEL) -> list[float] | None:
    """Exact two-sided binomial interval of ``hits / trials``; ``None`` without trials."""
    if trials == 0:
        return None
    from scipy.stats import beta  # scipy.stats costs 0.8 s to import: only where an interval is computed

    tail = (1 - level) / 2
    low = 0.0 if hits == 0 else float(beta.ppf(tail, hits, trials - hits + 1))
    high = 1.0 if hits == trials else float(beta.ppf(1 - tail, hits + 1, trials - hits))
    return [low, high]


def bootstrap_unit(task) -> str:
    """What a resample draws: ``"task, then rollout"`` with enough tasks, else ``"rollout within outcome"``."""
    return "task, then rollout" if np.unique(task).size >= MIN_TASKS_TO_CLUSTER else "rollout within outcome"


def resample_weights(task, failed, n_boot: int, seed: int) -> tuple[np.ndarray, str]:
    """Integer weights ``[n_boot, R]`` (draws of each rollout per resample) and the resampling unit.

    With :data:`MIN_TASKS_TO_CLUSTER` tasks or more: as many tasks as there are, drawn with
    replacement, then each drawn task's rollouts drawn with replacement. Otherwise the failures and
    the successes are each drawn with replacement (their counts kept, so both classes stay present).
    """
    task, failed = np.asarray(task), np.asarray(failed, bool)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(failed)), dtype=np.int64)
    unit = bootstrap_unit(task)
    if unit == "task, then rollout":
        names = np.unique(task)
        copies = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_boot)
        groups = [np.flatnonzero(task == name) for name in names]
    else:
        copies = np.ones((n_boot, 2), dtype=np.int64)
        groups = [np.flatnonzero(failed), np.flatnonzero(~failed)]
    for column, members in enumerate(groups):
        if len(members):
            draws = copies[:, column] * len(members)
            weights[:, members] = rng.multinomial(draws, np.full(len(members), 1 / len(members)))
    return weights, unit


def calibration_weights(count: int, n_boot: int, seed: int) -> np.ndarray:
    """Integer weights ``[n_boot, count]``: calibration successes drawn with replacement, ``count`` per resample."""
    return np.random.default_rng(seed).multinomial(count, np.full(count, 1 / count), size=n_boot)


def refitted_thresholds(calibration_scores, weights: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank``-th smallest (1-based) score of each weighted resample ``[n_boot]`` of calibration
    scores: the conformal threshold refitted per resample; ``inf`` when ``rank`` exceeds the count."""
    order = np.argsort(np.asarray(calibration_scores, dtype=np.float64), kind="stable")
    ordered = np.asarray(calibration_scores, dtype=np.float64)[order]
    cumulative = np.cumsum(weights[:, order], axis=1)
    if rank > len(ordered):
        return np.full(len(weights), np.inf)
    return ordered[np.argmax(cumulative >= rank, axis=1)]


def _class_weights_by_level(scores, positive, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample, the weight of positives and of negatives at each distinct score (ascending) ``[n_boot, K]``.

    One ``bincount`` over (resample, level) pairs: linear in resamples x rollouts, however many distinct scores.
    """
    _, level = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    levels = int(level.max()) + 1
    cell = (np.arange(len(weights))[:, None] * levels + level[None, :]).ravel()
    positive = np.asarray(positive, bool)

    def tally(mask: np.ndarray) -> np.ndarray:
        return np.bincount(cell, (weights * mask).ravel(), len(weights) * levels).reshape(len(weights), levels)

    return tally(positive), tally(~positive)


def weighted_auc(scores, positive, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of each weighted resample ``[n_boot]`` (ties count one half); NaN where a class is absent."""
    pos, neg = _class_weights_by_level(scores, positive, weights)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return np.divide(wins, pairs, out=np.full(len(weights), np.nan), where=pairs > 0)


def roc_auc(scores, positive) -> float:
    """ROC AUC of one sample (ties count one half: scikit-learn's value); both classes must be present.
    Validation computes it every epoch: this takes about 1/30 of ``sklearn.metrics.roc_auc_score``'s time."""
    return float(weighted_auc(scores, positive, np.ones((1, len(positive))))[0])


def weighted_average_precision(scores, positive, weights: np.ndarray) -> np.ndarray:
    """Average precision of each weighted resample ``[n_boot]`` (sklearn's step definition, ties as one threshold)."""
    pos, neg = _class_weights_by_level(scores, positive, weights)
    pos, neg = pos[:, ::-1], neg[:, ::-1]
    true_positives, flagged = np.cumsum(pos, axis=1), np.cumsum(pos + neg, axis=1)
    precision = np.divide(true_positives, flagged, out=np.zeros_like(flagged), where=flagged > 0)
    total = pos.sum(axis=1)
    return np.divide((pos * precision).sum(axis=1), total, out=np.full(len(weights), np.nan), where=(total > 0) & (neg.sum(axis=1) > 0))


def weighted_rates(alarmed: np.ndarray, failed, weights: np.ndarray) -> dict[str, np.ndarray]:
    """TPR, FPR and balanced accuracy of each resample from alarms ``[n_boot, R]`` (or ``[R]``); NaN where a class is absent."""
    failed = np.asarray(failed, bool)
    alarmed = np.broadcast_to(alarmed, weights.shape)
    n_fail, n_ok = (weights * failed).sum(axis=1), (weights * ~failed).sum(axis=1)
    nan = np.full(len(weights), np.nan)
    tpr = np.divide((weights * (alarmed & failed)).sum(axis=1), n_fail, out=nan.copy(), where=n_fail > 0)
    fpr = np.divide((weights * (alarmed & ~failed)).sum(axis=1), n_ok, out=nan.copy(), where=n_ok > 0)
    return {"tpr": tpr, "fpr": fpr, "balanced_accuracy": (tpr + 1.0 - fpr) / 2.0}


def percentile_interval(samples, point: float | None, level: float = LEVEL) -> list[float] | None:
    """Percentile interval of the defined resamples; ``None`` when the point or every resample is undefined.

    Not widened to contain ``point``: a point outside its interval says the statistic is skewed.
    """
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if point is None or samples.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]
