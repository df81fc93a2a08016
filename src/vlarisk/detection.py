"""Rollout-level failure detection: does a per-step risk score raise an alarm before a rollout fails?

The evaluation follows the protocol of SAFE (NeurIPS 2025), written here in numpy and scikit-learn
only (no torch):

* A rollout's score at step ``t`` is the running maximum of its risk (overall: the maximum over the
  dimensions; per dimension: that dimension alone).
* Its *detection score* is that running maximum at the rollout's horizon: the largest score among
  the steps ``t < min(horizon, length)``. By default the horizon is, per task, the length of the
  shortest rollout of that task (among the test and calibration rollouts together, so that both
  are cut alike), so that episode length cannot separate failures (which run to the step limit)
  from successes. "By final end" (no cut) is reported beside it as a leak diagnostic.
* Rollout AUC-ROC and AP rank detection scores with failure as the positive class.
* A split-conformal threshold, fitted on the detection scores of successful calibration rollouts,
  bounds the false-alarm rate of a new exchangeable success by ``alpha``.
* An alarm fires at the first step ``t < min(horizon, length)`` whose running maximum is strictly
  greater than the threshold. Strict, because the conformal guarantee is
  ``P(new score <= threshold) >= 1 - alpha``: with tied scores (saturated risks, chunked policies
  that repeat a hidden state) ``>=`` can raise false alarms well above ``alpha``.

Every undefined number (a missing class, no valid threshold, no detected failure) is ``None`` with
a reason, never 0 or 0.5, and a report holds no NaN or infinity, so it can be written as strict JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.labels import failure_window

DEFAULT_ALPHA = 0.1
DEFAULT_ALPHA_GRID = (0.01, 0.05, 0.1, 0.2, 0.3)
HEADLINE_METRICS = ("rollout_auc", "rollout_ap", "tpr", "fpr", "balanced_accuracy", "lead_time_steps_median")
NO_THRESHOLD = "too few calibration successes for this alpha: rank ceil((n+1)(1-alpha)) exceeds n, so no finite threshold is valid"


@dataclass(frozen=True)
class StepArrays:
    """One set of scored rows (a test or a calibration set), one row per step.

    ``risk [N, D]``, ``rollout_id``, ``step_index``, ``success`` (constant within a rollout) and
    ``task`` are required; ``labels [N, D]`` (provided labels, NaN rows for unlabelled steps),
    ``fail_within_k [N]`` and ``episode_length [N]`` (a rollout's full length, when rows were
    dropped from its end) are optional.
    """

    risk: np.ndarray
    rollout_id: np.ndarray
    step_index: np.ndarray
    success: np.ndarray
    task: np.ndarray
    labels: np.ndarray | None = None
    fail_within_k: np.ndarray | None = None
    episode_length: np.ndarray | None = None

    @classmethod
    def of(cls, source: StepArrays | Mapping) -> StepArrays:
        """``source`` itself, or the arrays of a mapping with the field names as keys."""
        if isinstance(source, cls):
            return source
        return cls(**{f.name: source.get(f.name) for f in fields(cls) if f.name in source or f.default is None})


@dataclass(frozen=True)
class Rollouts:
    """Per-rollout view of per-step rows, so that every rollout quantity is one vectorised reduction.

    ``order`` sorts the rows by (rollout, step); ``starts`` are the first sorted row of each
    rollout; ``steps`` the sorted step indices. Per rollout: ``rollout_id``, ``task``, ``failed``
    and ``length`` (steps in the episode: ``max(step_index) + 1`` unless given).
    """

    order: np.ndarray
    starts: np.ndarray
    steps: np.ndarray
    rollout_id: np.ndarray
    task: np.ndarray
    failed: np.ndarray
    length: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Scored rows per rollout."""
        return np.diff(np.append(self.starts, len(self.order)))

    def per_row(self, values: np.ndarray) -> np.ndarray:
        """A per-rollout array repeated onto the sorted rows."""
        return np.repeat(values, self.counts, axis=0)


def _per_rollout(values, order: np.ndarray, starts: np.ndarray, counts: np.ndarray, name: str) -> np.ndarray:
    """Each rollout's value of a per-step array that must be constant within a rollout."""
    ordered = np.asarray(values)[order]
    first = ordered[starts]
    if not np.array_equal(np.repeat(first, counts), ordered):
        raise ValueError(f"{name} must be constant within each rollout")
    return first


def group_rollouts(rollout_id, step_index, success=None, task=None, episode_length=None) -> Rollouts:
    """Group per-step rows into rollouts; rows may come in any order but a step may occur only once.

    Missing ``success`` counts every rollout as successful and missing ``task`` puts all in one task.
    """
    ids = np.asarray(rollout_id)
    steps = np.asarray(step_index)
    if ids.ndim != 1 or steps.shape != ids.shape or ids.size == 0:
        raise ValueError(f"rollout_id and step_index must be equal, non-empty 1-D arrays, got {ids.shape} and {steps.shape}")
    if not np.issubdtype(steps.dtype, np.integer) or (steps < 0).any():
        raise ValueError("step_index must hold non-negative integers")
    order = np.lexsort((steps, ids))
    ids_sorted, steps_sorted = ids[order], steps[order].astype(np.int64)
    new = np.r_[True, ids_sorted[1:] != ids_sorted[:-1]]
    if ((~new[1:]) & (steps_sorted[1:] == steps_sorted[:-1])).any():
        raise ValueError("a rollout holds the same step_index twice")
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(order)))
    length = np.maximum.reduceat(steps_sorted, starts) + 1
    if episode_length is not None:
        given = _per_rollout(episode_length, order, starts, counts, "episode_length").astype(np.int64)
        if (given < length).any():
            raise ValueError("episode_length is shorter than a rollout's largest step_index + 1")
        length = given
    success = np.ones(len(ids), bool) if success is None else np.asarray(success).astype(bool)
    task = np.zeros(len(ids), np.int64) if task is None else np.asarray(task)
    return Rollouts(
        order=order,
        starts=starts,
        steps=steps_sorted,
        rollout_id=ids_sorted[starts],
        task=_per_rollout(task, order, starts, counts, "task"),
        failed=~_per_rollout(success, order, starts, counts, "success"),
        length=length,
    )


def running_max_scores(risk, rollout_id, step_index) -> tuple[np.ndarray, np.ndarray]:
    """Each row's running maximum of risk within its rollout: overall ``[N]`` and per dimension ``[N, D]``.

    The overall score at ``t`` is the largest risk of any dimension at any step ``<= t``, the score
    an alarm is raised on. Rows come back in their input order.
    """
    risk = np.asarray(risk, dtype=np.float64)
    if risk.ndim != 2:
        raise ValueError(f"risk must be [N, D], got shape {risk.shape}")
    rollouts = group_rollouts(rollout_id, step_index)
    ordered = risk[rollouts.order]
    per_dim_sorted = np.concatenate([np.maximum.accumulate(part, axis=0) for part in np.split(ordered, rollouts.starts[1:])])
    per_dim = np.empty_like(per_dim_sorted)
    per_dim[rollouts.order] = per_dim_sorted
    return per_dim.max(axis=1), per_dim


def shortest_rollout_horizons(rollouts: Rollouts, include: np.ndarray | None = None) -> dict:
    """Per task, the length of its shortest rollout (among ``include``): the cut that hides episode length."""
    keep = np.ones(len(rollouts.length), bool) if include is None else np.asarray(include, bool)
    return {task: int(rollouts.length[keep & (rollouts.task == task)].min()) for task in np.unique(rollouts.task[keep])}


def rollout_horizons(rollouts: Rollouts, horizon=None, include: np.ndarray | None = None) -> np.ndarray:
    """Each rollout's horizon ``[R]``: per-task shortest (``None``), a fixed int, a task mapping, or ``inf``.

    ``None`` takes the shortest rollout of each task among ``include`` (the rollouts given, by
    default); a mapping (e.g. from calibration rollouts) must name every task; ``math.inf`` scores
    "by final end", which lets episode length leak into the scores.
    """
    if horizon is None:
        horizon = shortest_rollout_horizons(rollouts, include)
    if isinstance(horizon, Mapping):
        missing = sorted({str(t) for t in np.unique(rollouts.task)} - {str(t) for t in horizon})
        if missing:
            raise ValueError(f"no horizon for task(s) {missing}")
        by_name = {str(t): h for t, h in horizon.items()}
        values = np.array([by_name[str(t)] for t in rollouts.task], dtype=np.float64)
    else:
        values = np.full(len(rollouts.length), float(horizon))
    if (values < 1).any():
        raise ValueError("a horizon must be at least one step")
    return values


def _inside_horizon(rollouts: Rollouts, horizons: np.ndarray) -> np.ndarray:
    """Sorted rows whose step lies before ``min(horizon, length)`` of their rollout."""
    return rollouts.steps < rollouts.per_row(np.minimum(horizons, rollouts.length))


def detection_scores(step_scores, rollouts: Rollouts, horizons: np.ndarray) -> np.ndarray:
    """Each rollout's running-max score at its horizon: the max of ``step_scores`` over steps ``t < min(horizon, length)``.

    ``step_scores`` are raw per-step scores ``[N]`` or ``[N, D]`` in input row order (their
    running maximum is taken here); returns ``[R]`` or ``[R, D]``.
    """
    scores = np.asarray(step_scores, dtype=np.float64)[rollouts.order]
    inside = _inside_horizon(rollouts, horizons)
    masked = np.where(inside if scores.ndim == 1 else inside[:, None], scores, -np.inf)
    out = np.maximum.reduceat(masked, rollouts.starts, axis=0)
    if not np.isfinite(out).all():
        raise ValueError("a rollout has no finite score before its horizon (NaN scores, or no scored step inside it)")
    return out


def rollout_ranking(scores, failed) -> dict:
    """Rollout AUC-ROC and AP of detection scores ``[R]``, failure positive; ``None`` with a reason if a class is missing."""
    failed = np.asarray(failed, bool)
    if failed.all() or not failed.any():
        reason = "no successful rollouts" if failed.all() else "no failed rollouts"
        return {"rollout_auc": None, "rollout_ap": None, "reason": reason}
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "rollout_auc": float(roc_auc_score(failed, scores)),
        "rollout_ap": float(average_precision_score(failed, scores)),
        "reason": None,
    }


def conformal_rank(n: int, alpha: float) -> int:
    """The split-conformal order statistic ``ceil((n+1)(1-alpha))`` (1-based), robust to float noise.

    ``(n+1)(1-alpha)`` is computed in floats (``20 * (1 - 0.05)`` need not be exactly 19), so a
    value within 1e-9 of an integer counts as that integer.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return math.ceil((n + 1) * (1 - alpha) - 1e-9)


def conformal_threshold(calibration_scores, alpha: float = DEFAULT_ALPHA):
    """Split-conformal alarm threshold: the ``ceil((n+1)(1-alpha))``-th smallest of n successes' detection scores.

    Works along axis 0 (a column per dimension). ``+inf`` when that rank exceeds n: too few
    calibration rollouts for any finite threshold to keep the false-alarm rate at most ``alpha``.
    """
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64), axis=0)
    rank = conformal_rank(scores.shape[0], alpha)
    if rank > scores.shape[0]:
        return np.inf if scores.ndim == 1 else np.full(scores.shape[1:], np.inf)
    value = scores[rank - 1]
    return float(value) if scores.ndim == 1 else value


def alarm_steps(step_scores, rollouts: Rollouts, horizons: np.ndarray, threshold: float) -> np.ndarray:
    """Each rollout's alarm step ``[R]``: the first ``t < min(horizon, length)`` whose running max exceeds ``threshold``; -1 if none.

    The running max first exceeds the threshold exactly where a raw score first does, so raw
    scores ``[N]`` are compared. Strict ``>``: the conformal bound covers ``score <= threshold``.
    """
    scores = np.asarray(step_scores, dtype=np.float64)[rollouts.order]
    fire = _inside_horizon(rollouts, horizons) & (scores > threshold)
    never = np.iinfo(np.int64).max
    first = np.minimum.reduceat(np.where(fire, rollouts.steps, never), rollouts.starts)
    return np.where(first == never, -1, first)


def alarm_rates(alarm, failed) -> dict:
    """TPR (failures alarmed), FPR (successes alarmed) and balanced accuracy; ``None`` where a class is missing."""
    alarmed, failed = np.asarray(alarm) >= 0, np.asarray(failed, bool)
    tpr = float(alarmed[failed].mean()) if failed.any() else None
    fpr = float(alarmed[~failed].mean()) if (~failed).any() else None
    balanced = None if tpr is None or fpr is None else (tpr + 1.0 - fpr) / 2.0
    return {"tpr": tpr, "fpr": fpr, "balanced_accuracy": balanced}


def lead_times(alarm, rollouts: Rollouts) -> tuple[np.ndarray, np.ndarray]:
    """Per rollout, steps from alarm to episode end (``length - alarm``) and that as a fraction of the length; NaN if not a detected failure."""
    alarm = np.asarray(alarm)
    detected = rollouts.failed & (alarm >= 0)
    steps = np.where(detected, rollouts.length - alarm, np.nan)
    return steps, steps / rollouts.length


def _quartiles(values: np.ndarray) -> dict:
    """Median and quartiles of the finite values (``None`` when there are none)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"median": None, "q25": None, "q75": None}
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


def lead_time_distribution(alarm, rollouts: Rollouts) -> dict:
    """Lead times of detected failures in steps and as a fraction of the episode: median, quartiles and raw values."""
    steps, fraction = lead_times(alarm, rollouts)
    detected = np.isfinite(steps)
    return {
        "n_detected": int(detected.sum()),
        "n_failures": int(rollouts.failed.sum()),
        "steps": {**_quartiles(steps), "values": [int(v) for v in steps[detected]]},
        "fraction": {**_quartiles(fraction), "values": [float(v) for v in fraction[detected]]},
    }


def _auc_rows(scores: np.ndarray, positive_count: int) -> np.ndarray:
    """AUC of each row of ``scores [B, n]`` whose first ``positive_count`` columns are positives (Mann-Whitney, mid-ranks)."""
    negatives = scores.shape[1] - positive_count
    ranks = rankdata(scores, axis=1)
    return (ranks[:, :positive_count].sum(axis=1) - positive_count * (positive_count + 1) / 2) / (positive_count * negatives)


def _average_precision_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Average precision of each row of ``scores [B, n]`` against ``positive [B, n]``, ties grouped as in scikit-learn.

    AP is the sum over thresholds of (recall gain) x precision; each positive adds 1/P times the
    precision at the lowest-ranked row of its tie group.
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    hits = np.take_along_axis(positive, order, axis=1)
    true_positives = np.cumsum(hits, axis=1)
    n = scores.shape[1]
    group_end = np.ones(ranked.shape, bool)
    group_end[:, :-1] = ranked[:, 1:] != ranked[:, :-1]
    end_at = np.where(group_end, np.arange(n), n)
    end = np.minimum.accumulate(end_at[:, ::-1], axis=1)[:, ::-1]
    precision = np.take_along_axis(true_positives, end, axis=1) / (end + 1)
    return (precision * hits).sum(axis=1) / hits.sum(axis=1)


def bootstrap_samples(detection_score, alarm, lead_steps, failed, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap distributions ``[n_boot]`` of the headline metrics, resampling rollouts within each outcome.

    Stratified: every resample keeps the numbers of failures and successes, so AUC and rates stay
    defined. The threshold and horizons are held fixed (the intervals cover test-set sampling).
    Metrics that need a missing class are absent from the result.
    """
    failed = np.asarray(failed, bool)
    rng = np.random.default_rng(seed)
    fail_idx, ok_idx = np.flatnonzero(failed), np.flatnonzero(~failed)
    fail_draw = fail_idx[rng.integers(0, len(fail_idx), (n_boot, len(fail_idx)))] if len(fail_idx) else None
    ok_draw = ok_idx[rng.integers(0, len(ok_idx), (n_boot, len(ok_idx)))] if len(ok_idx) else None
    alarmed, score = np.asarray(alarm) >= 0, np.asarray(detection_score, dtype=np.float64)
    samples = {}
    if fail_draw is not None:
        samples["tpr"] = alarmed[fail_draw].mean(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # resamples without a detected failure
            samples["lead_time_steps_median"] = np.nanmedian(np.asarray(lead_steps, dtype=np.float64)[fail_draw], axis=1)
    if ok_draw is not None:
        samples["fpr"] = alarmed[ok_draw].mean(axis=1)
    if fail_draw is not None and ok_draw is not None:
        both = np.concatenate([score[fail_draw], score[ok_draw]], axis=1)
        samples["rollout_auc"] = _auc_rows(both, len(fail_idx))
        positive = np.zeros(both.shape, bool)
        positive[:, : len(fail_idx)] = True
        samples["rollout_ap"] = _average_precision_rows(both, positive)
        samples["balanced_accuracy"] = (samples["tpr"] + 1.0 - samples["fpr"]) / 2.0
    return samples


def percentile_interval(samples, point: float | None, level: float = 0.95) -> tuple[list[float] | None, bool]:
    """Percentile bootstrap interval, widened to include ``point`` if skew puts it outside; ``(interval, widened)``.

    Undefined resamples (NaN) are left out; no interval when the point or every resample is undefined.
    """
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if point is None or samples.size == 0:
        return None, False
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    widened = bool(point < low or point > high)
    return [float(min(low, point)), float(max(high, point))], widened


def culprit_dimensions(labels, rollouts: Rollouts, window: int | None = None) -> list[np.ndarray | None]:
    """Per rollout, the dimension(s) whose provided label peaks highest in the failure window; ``None`` if unlabelled.

    The window is the last ``window`` steps (default :func:`vlarisk.labels.failure_window` of the
    length). Dimensions within 1e-6 of the peak all count, so a rollout may have several culprits.
    A rollout with no finite label in its window, or a zero peak, has none.
    """
    ordered = np.asarray(labels, dtype=np.float64)[rollouts.order]
    widths = np.array([window or failure_window(int(n)) for n in rollouts.length])
    in_window = rollouts.steps >= rollouts.per_row(rollouts.length - widths)
    culprits = []
    for rows, inside in zip(np.split(ordered, rollouts.starts[1:]), np.split(in_window, rollouts.starts[1:]), strict=True):
        part = rows[inside]
        if part.size == 0 or not np.isfinite(part).any():
            culprits.append(None)
            continue
        peak = np.nanmax(part, axis=0)
        top = np.nanmax(peak)
        culprits.append(np.flatnonzero(peak >= top - 1e-6) if top > 0 else None)
    return culprits


def attribution(risk, labels, alarm, rollouts: Rollouts, window: int | None = None) -> dict:
    """How often the riskiest predicted dimension at the alarm step is a labelled culprit, among detected labelled failures.

    Chance is the hit rate of a uniformly random dimension: the mean of ``#culprits / D``. The
    riskiest dimension is the argmax of the raw risk at the alarm step (first dimension on ties).
    """
    risk = np.asarray(risk, dtype=np.float64)
    if np.shape(labels) != risk.shape:
        raise ValueError(f"labels {np.shape(labels)} and risk {risk.shape} must have the same shape")
    culprits = culprit_dimensions(labels, rollouts, window)
    alarm = np.asarray(alarm)
    labelled = [r for r in np.flatnonzero(rollouts.failed) if culprits[r] is not None]
    considered = [r for r in labelled if alarm[r] >= 0]
    ordered, steps = risk[rollouts.order], rollouts.steps
    hits, chance = [], []
    for r in considered:
        row = rollouts.starts[r] + np.searchsorted(steps[rollouts.starts[r] : rollouts.starts[r] + rollouts.counts[r]], alarm[r])
        hits.append(int(np.argmax(ordered[row])) in culprits[r])
        chance.append(len(culprits[r]) / risk.shape[1])
    result = {"n_labelled_failures": len(labelled), "n_rollouts": len(considered), "n_hits": int(sum(hits))}
    if not considered:
        reason = "no failed rollout with provided labels" if not labelled else "no labelled failure raised an alarm"
        return {**result, "hit_rate": None, "chance_rate": None, "reason": reason}
    return {**result, "hit_rate": float(np.mean(hits)), "chance_rate": float(np.mean(chance)), "reason": None}


def calibration_table(risk, fail_within_k, bins: int = 10) -> dict:
    """Expected calibration error and reliability table of per-step overall risk against ``fail_within_k``.

    Overall risk is the maximum over dimensions; bins are equal-width on [0, 1] (the last one
    closed). ECE is the count-weighted mean |bin mean risk - observed rate| over non-empty bins.
    """
    risk = np.asarray(risk, dtype=np.float64)
    overall = risk.max(axis=1) if risk.ndim == 2 else risk
    observed = np.asarray(fail_within_k, dtype=np.float64)
    if overall.shape != observed.shape or overall.size == 0:
        raise ValueError("risk and fail_within_k must describe the same, non-empty rows")
    if (overall < 0).any() or (overall > 1).any() or not np.isfinite(overall).all():
        raise ValueError("overall risk must lie in [0, 1] to be compared with an observed rate")
    which = np.minimum((overall * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_risk = np.bincount(which, overall, bins) / np.maximum(count, 1)
    rate = np.bincount(which, observed, bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(mean_risk - rate)) / overall.size)
    table = [
        {
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "mean_risk": float(mean_risk[b]) if count[b] else None,
            "observed_rate": float(rate[b]) if count[b] else None,
            "count": int(count[b]),
        }
        for b in range(bins)
    ]
    return {"ece": ece, "bins": bins, "reliability": table}


def _finite_or_none(value) -> float | None:
    """A JSON-safe number: ``None`` for infinity."""
    return float(value) if np.isfinite(value) else None


def _dimension_names(count: int) -> tuple[str, ...]:
    """Action-dimension names for 7 columns, ``d0``... otherwise."""
    return ACTION_DIMENSIONS if count == len(ACTION_DIMENSIONS) else tuple(f"d{i}" for i in range(count))


def _rates_at(threshold: float, step_scores, rollouts: Rollouts, horizons: np.ndarray) -> tuple[np.ndarray, dict]:
    """Alarm steps and rates at a threshold; rates ``None`` when no finite threshold exists."""
    alarm = alarm_steps(step_scores, rollouts, horizons, threshold)
    rates = alarm_rates(alarm, rollouts.failed)
    if not np.isfinite(threshold):
        rates = {key: None for key in rates}
    return alarm, rates


def _horizon_block(horizon, rollouts: Rollouts, horizons: np.ndarray) -> dict:
    """How the horizon was chosen and its value per task."""
    rule = (
        "shortest_rollout_per_task_of_test_and_calibration"
        if horizon is None
        else "given_per_task"
        if isinstance(horizon, Mapping)
        else "fixed"
    )
    per_task = {str(t): int(horizons[np.flatnonzero(rollouts.task == t)[0]]) for t in np.unique(rollouts.task)}
    return {"rule": rule, "steps": int(horizon) if rule == "fixed" else None, "per_task": per_task}


def _per_task_auc(scores: np.ndarray, rollouts: Rollouts) -> dict:
    """Rollout AUC within each task and its mean over the tasks where it is defined."""
    per_task = {
        str(t): rollout_ranking(scores[rollouts.task == t], rollouts.failed[rollouts.task == t])["rollout_auc"]
        for t in np.unique(rollouts.task)
    }
    defined = [v for v in per_task.values() if v is not None]
    return {"mean": float(np.mean(defined)) if defined else None, "per_task": per_task}


def _calibration_block(steps: StepArrays, bins: int) -> dict:
    """Calibration of per-step risk against ``fail_within_k``, or why it cannot be computed."""
    if steps.fail_within_k is None:
        return {"ece": None, "reason": "no fail_within_k given"}
    overall = np.asarray(steps.risk, dtype=np.float64).max(axis=1)
    if (overall < 0).any() or (overall > 1).any():
        return {"ece": None, "reason": "risk outside [0, 1] is not a probability"}
    return {**calibration_table(overall, steps.fail_within_k, bins), "reason": None}


def _group(steps: StepArrays) -> Rollouts:
    """Rollouts of a set of rows, after checking the risk array."""
    risk = np.asarray(steps.risk, dtype=np.float64)
    if risk.ndim != 2 or risk.shape[0] != np.asarray(steps.rollout_id).shape[0]:
        raise ValueError(f"risk must be [N, D] over the same rows as rollout_id, got {risk.shape}")
    if not np.isfinite(risk).all():
        raise ValueError("risk holds NaN or infinite values")
    return group_rollouts(steps.rollout_id, steps.step_index, steps.success, steps.task, steps.episode_length)


def _shared_horizons(test: StepArrays, calibration: StepArrays) -> dict:
    """Per task, the shortest rollout among the test and calibration rollouts together.

    Both sets are cut at the same step for a task, so that a test success's score and the
    calibration scores are maxima over equally many steps: the exchangeability the conformal bound
    rests on. (Cut each at its own shortest, a small test set would be cut later than a large
    calibration set and raise false alarms above alpha.)
    """
    per_set = [shortest_rollout_horizons(_group(steps)) for steps in (test, calibration)]
    tasks = set(per_set[0]) | set(per_set[1])
    return {task: min(h.get(task, math.inf) for h in per_set) for task in tasks}


def _successes_only(steps: StepArrays) -> tuple[StepArrays, int]:
    """The rows of successful rollouts (the only ones a conformal threshold is fitted on) and the number of failed rollouts left out."""
    ok = np.asarray(steps.success).astype(bool)
    if not ok.any():
        raise ValueError("the calibration set holds no successful rollout")
    left_out = int(np.unique(np.asarray(steps.rollout_id)[~ok]).size)
    kept = {f.name: (None if getattr(steps, f.name) is None else np.asarray(getattr(steps, f.name))[ok]) for f in fields(steps)}
    return StepArrays(**kept), left_out


@dataclass(frozen=True)
class _ScoredSet:
    """A set's rollouts, horizons, per-step scores ``[N, 1 + D]`` (overall first) and detection scores ``[R, 1 + D]``."""

    rollouts: Rollouts
    horizons: np.ndarray
    step_scores: np.ndarray
    scores: np.ndarray


def _score_set(steps: StepArrays, horizon) -> _ScoredSet:
    """Group a set's rows, resolve its horizons and score every rollout overall and per dimension."""
    rollouts = _group(steps)
    horizons = rollout_horizons(rollouts, horizon)
    risk = np.asarray(steps.risk, dtype=np.float64)
    step_scores = np.column_stack([risk.max(axis=1), risk])
    return _ScoredSet(rollouts, horizons, step_scores, detection_scores(step_scores, rollouts, horizons))


def _intervals(point: dict, samples: dict) -> tuple[dict, list[str]]:
    """95% interval of every headline metric and the metrics whose interval was widened to its point."""
    ci, widened = {}, []
    for metric in HEADLINE_METRICS:
        ci[metric], was_widened = percentile_interval(samples.get(metric, []), point[metric])
        if was_widened:
            widened.append(metric)
    return ci, widened


def _per_dimension_block(test: _ScoredSet, thresholds: np.ndarray, names: tuple[str, ...]) -> dict:
    """Rollout AUC/AP, conformal threshold and alarm rates of each dimension on its own."""
    block = {}
    for j, name in enumerate(names, start=1):
        ranking = rollout_ranking(test.scores[:, j], test.rollouts.failed)
        _, rates = _rates_at(thresholds[j], test.step_scores[:, j], test.rollouts, test.horizons)
        block[name] = {
            "rollout_auc": ranking["rollout_auc"],
            "rollout_ap": ranking["rollout_ap"],
            "threshold": _finite_or_none(thresholds[j]),
            "tpr": rates["tpr"],
            "fpr": rates["fpr"],
        }
    return block


def _alpha_grid_block(test: _ScoredSet, calibration_scores: np.ndarray, alpha_grid) -> list[dict]:
    """Overall threshold, TPR, FPR and balanced accuracy at each alpha of the grid."""
    rows = []
    for level in alpha_grid:
        threshold = conformal_threshold(calibration_scores, level)
        rates = _rates_at(threshold, test.step_scores[:, 0], test.rollouts, test.horizons)[1]
        rows.append({"alpha": float(level), "threshold": _finite_or_none(threshold), **rates})
    return rows


def _undefined_reasons(ranking: dict, threshold: float, lead_median: float | None) -> dict:
    """Why each undefined headline number is undefined."""
    undefined = {}
    if ranking["reason"]:
        undefined["rollout_auc"] = undefined["rollout_ap"] = ranking["reason"]
    if not np.isfinite(threshold):
        undefined["threshold"] = NO_THRESHOLD
    elif lead_median is None:
        undefined["lead_time_steps_median"] = "no failure was detected"
    return undefined


def detection_report(
    test: StepArrays | Mapping,
    calibration: StepArrays | Mapping,
    *,
    alpha: float = DEFAULT_ALPHA,
    alpha_grid=DEFAULT_ALPHA_GRID,
    horizon=None,
    n_boot: int = 1000,
    seed: int = 0,
    culprit_window: int | None = None,
    bins: int = 10,
) -> dict:
    """The detection block of one test set, with the threshold fitted on the calibration set's successes.

    ``horizon``: ``None`` cuts both sets at each task's shortest rollout among the test rollouts and
    the calibration successes together; an int is a fixed horizon; a task mapping is used for both sets. Failed rollouts in
    the calibration set are left out of the fit and counted. JSON-safe: undefined values are ``None``.
    """
    test_steps = StepArrays.of(test)
    calibration_steps, left_out = _successes_only(StepArrays.of(calibration))
    shared = _shared_horizons(test_steps, calibration_steps) if horizon is None else horizon
    scored, cal = _score_set(test_steps, shared), _score_set(calibration_steps, shared)
    if cal.scores.shape[1] != scored.scores.shape[1]:
        raise ValueError("test and calibration risks have different numbers of dimensions")
    rollouts, failed = scored.rollouts, scored.rollouts.failed
    thresholds = conformal_threshold(cal.scores, alpha)

    ranking = rollout_ranking(scored.scores[:, 0], failed)
    alarm, rates = _rates_at(thresholds[0], scored.step_scores[:, 0], rollouts, scored.horizons)
    lead = lead_time_distribution(alarm, rollouts)
    lead_median = lead["steps"]["median"] if np.isfinite(thresholds[0]) else None
    point = {"rollout_auc": ranking["rollout_auc"], "rollout_ap": ranking["rollout_ap"], **rates, "lead_time_steps_median": lead_median}
    ci, widened = _intervals(point, bootstrap_samples(scored.scores[:, 0], alarm, lead_times(alarm, rollouts)[0], failed, n_boot, seed))

    final_end = rollout_ranking(detection_scores(scored.step_scores[:, 0], rollouts, np.full(len(failed), np.inf)), failed)
    if test_steps.labels is None:
        attributed = {"hit_rate": None, "chance_rate": None, "n_rollouts": 0, "reason": "no provided labels given"}
    else:
        attributed = attribution(test_steps.risk, test_steps.labels, alarm, rollouts, culprit_window)
    return {
        "horizon": _horizon_block(horizon, rollouts, scored.horizons),
        "alpha": float(alpha),
        "threshold": _finite_or_none(thresholds[0]),
        **point,
        "ci95": ci,
        "n_rollouts": {"success": int((~failed).sum()), "failure": int(failed.sum())},
        "per_dimension": _per_dimension_block(scored, thresholds, _dimension_names(scored.scores.shape[1] - 1)),
        "lead_time": lead,
        "attribution": attributed,
        "calibration": _calibration_block(test_steps, bins),
        "alpha_grid": _alpha_grid_block(scored, cal.scores[:, 0], alpha_grid),
        "by_final_end": {"rollout_auc": final_end["rollout_auc"], "rollout_ap": final_end["rollout_ap"]},
        "per_task_auc": _per_task_auc(scored.scores[:, 0], rollouts),
        "threshold_fit": {
            "n_calibration_successes": int(cal.scores.shape[0]),
            "n_calibration_failures_left_out": left_out,
            "rank": conformal_rank(int(cal.scores.shape[0]), alpha),
            "horizon": _horizon_block(horizon, cal.rollouts, cal.horizons)["per_task"],
        },
        "bootstrap": {
            "n_boot": int(n_boot),
            "seed": int(seed),
            "stratified_by": "outcome",
            "method": "percentile",
            "widened_to_include_point": widened,
        },
        "undefined": _undefined_reasons(ranking, thresholds[0], lead_median),
    }


def detection_reports(test_sets: Mapping, calibration: StepArrays | Mapping, **options) -> dict:
    """One :func:`detection_report` per named test set (e.g. ``val_seen``, ``val_unseen``), one calibration set for all."""
    return {name: detection_report(steps, calibration, **options) for name, steps in test_sets.items()}
