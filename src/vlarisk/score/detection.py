"""Rollout-level failure detection: does a per-step risk score raise an alarm before a rollout fails?

The evaluation follows the protocol of SAFE (NeurIPS 2025), written here in numpy and scipy only
(no torch):

* A rollout's score at step ``t`` is the running maximum of its risk (overall: the maximum over the
  dimensions; per dimension: that dimension alone).
* Its *detection score* is that running maximum at the rollout's horizon: the largest score among
  the steps ``t < min(horizon, length)``. By default the horizon comes from the calibration
  successes only (what a deployed monitor could know; :func:`calibration_horizons`): per task its
  shortest calibration rollout, or, for tasks the calibration set does not hold (unseen tasks), the
  shortest calibration rollout overall, test and calibration cut alike, so that episode length
  cannot separate failures (which run to the step limit) from successes. "By final end" (no cut)
  is reported beside it as a leak diagnostic.
* Rollout AUC-ROC and AP of detection scores, failure positive, are SAFE's *earliest-stop*
  metrics, reported for comparison with published numbers.
* ``deployed`` evaluates the monitor a user runs: the whole-episode threshold (the one stored in
  a checkpoint) on full test episodes, with TPR, TNR, FPR, balanced accuracy, relative detection
  time and lead time (:func:`deployed_operating_point`).
* A split-conformal threshold, fitted on the detection scores of successful calibration rollouts,
  bounds the false-alarm rate of a new exchangeable success by ``alpha``.
* An alarm fires at the first step ``t < min(horizon, length)`` whose running maximum is strictly
  greater than the threshold. Strict, because the conformal guarantee is
  ``P(new score <= threshold) >= 1 - alpha``: with tied scores (saturated risks, chunked policies
  that repeat a hidden state) ``>=`` can raise false alarms well above ``alpha``.

Intervals follow :mod:`vlarisk.core.intervals` (exact for proportions, a bootstrap by task then
rollout with the threshold refitted per resample otherwise). Every undefined number (a missing class, no valid threshold, no detected failure) is ``None`` with
a reason, never 0 or 0.5, and a report holds no NaN or infinity, so it can be written as strict JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.intervals import (
    calibration_weights,
    clopper_pearson,
    percentile_interval,
    refitted_thresholds,
    resample_weights,
    weighted_auc,
    weighted_average_precision,
    weighted_rates,
)
from vlarisk.core.settings import DetectionSettings
from vlarisk.data.calibration_counts import min_calibration_successes
from vlarisk.data.labels import failure_window

DEFAULT_ALPHA = DetectionSettings.alpha
DEFAULT_ALPHA_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
HEADLINE_METRICS = ("rollout_auc", "rollout_ap", "tpr", "fpr", "balanced_accuracy", "lead_time_steps_median")
BAND_MIN_ROLLOUTS = 5
BAND_MIN_SD = 1e-3
NO_THRESHOLD = "too few calibration successes for this alpha: rank ceil((n+1)(1-alpha)) exceeds n, so no finite threshold is valid"


@dataclass(frozen=True)
class StepArrays:
    """One set of scored rows (a test or a calibration set), one row per step.

    ``risk [N, D]``, ``rollout_id``, ``step_index``, ``success`` (constant within a rollout) and
    ``task`` are required; ``labels [N, D]`` (provided labels, NaN rows for unlabelled steps),
    ``targets [N, D]`` (the soft labels the model was trained to predict) and ``episode_length [N]``
    (a rollout's full length, when rows were dropped from its end) are optional.
    """

    risk: np.ndarray
    rollout_id: np.ndarray
    step_index: np.ndarray
    success: np.ndarray
    task: np.ndarray
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
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
    once = np.ones((1, len(failed)), dtype=np.int64)
    return {
        "rollout_auc": float(weighted_auc(scores, failed, once)[0]),
        "rollout_ap": float(weighted_average_precision(scores, failed, once)[0]),
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


def culprit_dimensions(labels, rollouts: Rollouts, window: int | None = None) -> list[np.ndarray | None]:
    """Per rollout, the dimension(s) whose provided label peaks highest in the failure window; ``None`` if unlabelled.

    The window is the last ``window`` steps (default :func:`vlarisk.data.labels.failure_window` of the
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


def calibration_table(risk, target, bins: int = 10) -> dict:
    """Expected calibration error and reliability table of per-step risk ``[N]`` against the target it was trained on ``[N]``.

    Bins are equal-width on [0, 1] (the last one closed). ECE is the count-weighted mean
    |bin mean risk - bin mean target| over non-empty bins; a soft target makes this the calibration
    of a regression onto that target, which is what the model was fitted to.
    """
    risk, target = np.asarray(risk, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if risk.shape != target.shape or risk.ndim != 1 or risk.size == 0:
        raise ValueError(f"risk and target must be equal, non-empty 1-D arrays, got {risk.shape} and {target.shape}")
    if (risk < 0).any() or (risk > 1).any() or not np.isfinite(risk).all():
        raise ValueError("risk must lie in [0, 1] to be compared with its target")
    which = np.minimum((risk * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_risk = np.bincount(which, risk, bins) / np.maximum(count, 1)
    mean_target = np.bincount(which, target, bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(mean_risk - mean_target)) / risk.size)
    table = [
        {
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "mean_risk": float(mean_risk[b]) if count[b] else None,
            "mean_target": float(mean_target[b]) if count[b] else None,
            "count": int(count[b]),
        }
        for b in range(bins)
    ]
    return {"ece": ece, "bins": bins, "reliability": table}


def _finite_or_none(value) -> float | None:
    """A JSON-safe number: ``None`` for infinity or NaN."""
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


def _per_task_auc(scores: np.ndarray, rollouts: Rollouts) -> dict:
    """Rollout AUC within each task and its mean over the tasks where it is defined."""
    per_task = {
        str(t): rollout_ranking(scores[rollouts.task == t], rollouts.failed[rollouts.task == t])["rollout_auc"]
        for t in np.unique(rollouts.task)
    }
    defined = [v for v in per_task.values() if v is not None]
    return {"mean": float(np.mean(defined)) if defined else None, "per_task": per_task}


def _calibration_block(steps: StepArrays, bins: int) -> dict:
    """Per-dimension calibration of risk against its training target (the soft label), or why there is none."""
    if steps.targets is None:
        return {"ece": None, "reason": "no training targets given"}
    risk, targets = np.asarray(steps.risk, dtype=np.float64), np.asarray(steps.targets, dtype=np.float64)
    if risk.shape != targets.shape:
        return {"ece": None, "reason": f"targets {targets.shape} do not match risk {risk.shape}"}
    if (risk < 0).any() or (risk > 1).any():
        return {"ece": None, "reason": "risk outside [0, 1] is not on the scale of its target"}
    names = _dimension_names(risk.shape[1])
    defined = np.isfinite(targets)
    per_dimension = {
        name: calibration_table(risk[defined[:, j], j], targets[defined[:, j], j], bins)["ece"] if defined[:, j].any() else None
        for j, name in enumerate(names)
    }
    pooled = calibration_table(risk[defined], targets[defined], bins)
    values = [v for v in per_dimension.values() if v is not None]
    return {
        "ece": float(np.mean(values)) if values else None,
        "target": "each dimension's soft risk label (what the model was trained to predict)",
        "per_dimension": per_dimension,
        "bins": bins,
        "reliability": pooled["reliability"],
        "reason": None,
    }


def _group(steps: StepArrays) -> Rollouts:
    """Rollouts of a set of rows, after checking the risk array."""
    risk = np.asarray(steps.risk, dtype=np.float64)
    if risk.ndim != 2 or risk.shape[0] != np.asarray(steps.rollout_id).shape[0]:
        raise ValueError(f"risk must be [N, D] over the same rows as rollout_id, got {risk.shape}")
    if not np.isfinite(risk).all():
        raise ValueError("risk holds NaN or infinite values")
    return group_rollouts(steps.rollout_id, steps.step_index, steps.success, steps.task, steps.episode_length)


def calibration_horizons(test: Rollouts, calibration: Rollouts) -> tuple[dict | int, str]:
    """The horizon a deployed monitor could know, from the calibration successes alone, and its rule's name.

    When the calibration set holds every test task: per task, its shortest calibration rollout.
    Otherwise (unseen tasks, or calibration tasks held out of training): one horizon for every task
    and both sets, the shortest calibration rollout overall. Test lengths are never read, and test
    and calibration rollouts of a task are cut at the same step (the exchangeability the conformal
    bound rests on).
    """
    per_task = shortest_rollout_horizons(calibration)
    known = {str(t) for t in per_task}
    if {str(t) for t in np.unique(test.task)} <= known:
        return per_task, "shortest_calibration_rollout_per_task"
    return min(per_task.values()), "shortest_calibration_rollout"


def _horizon_block(rule: str, rollouts: Rollouts, horizons: np.ndarray) -> dict:
    """How the horizon was chosen and its value per task."""
    per_task = {str(t): int(horizons[np.flatnonzero(rollouts.task == t)[0]]) for t in np.unique(rollouts.task)}
    steps = int(horizons[0]) if rule in ("fixed", "shortest_calibration_rollout") else None
    return {"rule": rule, "steps": steps, "per_task": per_task}


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


def _score_set(steps: StepArrays, rollouts: Rollouts, horizon) -> _ScoredSet:
    """Resolve a set's horizons and score every rollout overall and per dimension."""
    horizons = rollout_horizons(rollouts, horizon)
    risk = np.asarray(steps.risk, dtype=np.float64)
    step_scores = np.column_stack([risk.max(axis=1), risk])
    return _ScoredSet(rollouts, horizons, step_scores, detection_scores(step_scores, rollouts, horizons))


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


def band_shape(risk, step_index, min_rollouts: int = BAND_MIN_ROLLOUTS) -> dict:
    """The shape of a functional alarm band from successful training rollouts: per step, the mean and
    standard deviation of the overall risk (max over dimensions) ``[T]``.

    ``T`` is the last step reached by at least ``min_rollouts`` successes (later steps reuse step
    ``T - 1``, estimated from too few rollouts otherwise); a standard deviation is at least
    ``BAND_MIN_SD``, so a step where every success agrees does not turn tiny differences into alarms.
    """
    risk = np.asarray(risk, dtype=np.float64)
    overall = risk.max(axis=1) if risk.ndim == 2 else risk
    steps = np.asarray(step_index, dtype=np.int64)
    count = np.bincount(steps)
    supported = np.flatnonzero(count >= min_rollouts)
    if supported.size == 0:
        raise ValueError(f"no step is reached by {min_rollouts} successful training rollouts: too few to shape a band")
    length = int(supported[-1]) + 1
    count = count[:length]
    inside = steps < length
    mean = np.bincount(steps[inside], overall[inside], length) / np.maximum(count, 1)
    square = np.bincount(steps[inside], overall[inside] ** 2, length) / np.maximum(count, 1)
    sd = np.sqrt(np.maximum(square - mean**2, 0.0))
    return {"mean": mean.tolist(), "sd": np.maximum(sd, BAND_MIN_SD).tolist()}


def standardised_risk(risk, step_index, band: dict) -> np.ndarray:
    """Per-step overall risk ``[N]`` standardised by a band: ``(risk_t - mean_t) / sd_t``, steps past the band's end at its last step.

    A band monitor alarms when this exceeds its conformal quantile ``q``, i.e. when the risk
    leaves ``mean_t + q * sd_t``.
    """
    risk = np.asarray(risk, dtype=np.float64)
    overall = risk.max(axis=1) if risk.ndim == 2 else risk
    mean, sd = np.asarray(band["mean"], dtype=np.float64), np.asarray(band["sd"], dtype=np.float64)
    at = np.minimum(np.asarray(step_index, dtype=np.int64), len(mean) - 1)
    return (overall - mean[at]) / sd[at]


def too_few_calibration_successes(n_calibration: int, alpha: float) -> str | None:
    """A warning when ``n_calibration`` successes cannot carry a finite threshold at ``alpha`` (fewer than ``ceil((1-alpha)/alpha)``)."""
    needed = min_calibration_successes(alpha)
    if n_calibration >= needed:
        return None
    return f"{n_calibration} calibration successes are too few for alpha {alpha}: at least {needed} are needed for a finite threshold"


def _proportion_intervals(alarmed: np.ndarray, failed: np.ndarray) -> dict:
    """Exact Clopper-Pearson 95% intervals of TPR and FPR at a fixed threshold."""
    return {
        "tpr": clopper_pearson(int(alarmed[failed].sum()), int(failed.sum())),
        "fpr": clopper_pearson(int(alarmed[~failed].sum()), int((~failed).sum())),
    }


def deployed_operating_point(step_scores, rollouts: Rollouts, threshold: float) -> dict:
    """A running monitor on full episodes at ``threshold``: rates, detection times and exact intervals.

    Per rollout the first step whose score exceeds the threshold (the running max first exceeds it
    there). Relative detection time is that step over the episode length, averaged over failures,
    a missed failure counting 1.0 (SAFE's convention). Lead time (steps from alarm to episode end)
    is the median over detected failures only, so it stands beside the TPR it is conditional on.
    """
    failed = rollouts.failed
    alarm = alarm_steps(step_scores, rollouts, np.full(len(failed), np.inf), threshold)
    rates = alarm_rates(alarm, failed)
    defined = np.isfinite(threshold)
    relative = np.where(alarm >= 0, alarm / rollouts.length, 1.0)[failed]
    lead = (rollouts.length - alarm)[failed & (alarm >= 0)]
    fpr = rates["fpr"] if defined else None
    return {
        "threshold": _finite_or_none(threshold),
        "tpr": rates["tpr"] if defined else None,
        "tnr": None if fpr is None else 1.0 - fpr,
        "fpr": fpr,
        "balanced_accuracy": rates["balanced_accuracy"] if defined else None,
        "relative_detection_time_mean": float(relative.mean()) if defined and relative.size else None,
        "lead_time_steps_median": float(np.median(lead)) if defined and lead.size else None,
        "ci95": _proportion_intervals(alarm >= 0, failed) if defined else {"tpr": None, "fpr": None},
        "n_rollouts": {"failure": int(failed.sum()), "success": int((~failed).sum())},
    }


@dataclass(frozen=True)
class _Resamples:
    """Bootstrap weights of the test rollouts ``[B, R]`` and of the calibration successes ``[B, C]``, and what was drawn."""

    test: np.ndarray
    calibration: np.ndarray
    unit: str


def _resamples(test: Rollouts, n_calibration: int, n_boot: int, seed: int) -> _Resamples:
    """Independent resamples of the test rollouts (clustered by task when there are enough) and of the calibration successes."""
    weights, unit = resample_weights(test.task, test.failed, n_boot, seed)
    return _Resamples(weights, calibration_weights(n_calibration, n_boot, seed + 1), unit)


def _refitted_balanced_accuracy(test_scores, calibration_scores, failed, resamples: _Resamples, alpha: float) -> np.ndarray:
    """Balanced accuracy per resample, the threshold refitted on each resample of the calibration scores."""
    thresholds = refitted_thresholds(calibration_scores, resamples.calibration, conformal_rank(len(calibration_scores), alpha))
    alarmed = np.asarray(test_scores)[None, :] > thresholds[:, None]
    return weighted_rates(alarmed, failed, resamples.test)["balanced_accuracy"]


@dataclass(frozen=True)
class _Monitor:
    """What a deployed monitor compares with its threshold: per-step test scores ``[N]`` and the
    calibration successes' whole-episode maxima ``[C]``, with the kind of threshold it is."""

    test_steps: np.ndarray
    whole_calibration: np.ndarray
    kind: str


def _monitor(scored: _ScoredSet, cal: _ScoredSet, test: StepArrays, calibration: StepArrays, band: dict | None) -> _Monitor:
    """The constant monitor (overall risk), or the band monitor (overall risk standardised by the band) when a band is given."""
    if band is None:
        test_steps, cal_steps, kind = scored.step_scores[:, 0], cal.step_scores[:, 0], "constant"
    else:
        test_steps = standardised_risk(test.risk, test.step_index, band)
        cal_steps, kind = standardised_risk(calibration.risk, calibration.step_index, band), "band"
    whole = detection_scores(cal_steps, cal.rollouts, np.full(len(cal.rollouts.failed), np.inf))
    return _Monitor(np.asarray(test_steps, dtype=np.float64), whole, kind)


def _deployed_block(rollouts: Rollouts, monitor: _Monitor, alpha: float, resamples: _Resamples) -> dict:
    """The deployed monitor at ``alpha`` on full test episodes, with a refitted-threshold bootstrap interval for balanced accuracy."""
    threshold = conformal_threshold(monitor.whole_calibration, alpha)
    point = deployed_operating_point(monitor.test_steps, rollouts, threshold)
    whole_test = detection_scores(monitor.test_steps, rollouts, np.full(len(rollouts.failed), np.inf))
    samples = _refitted_balanced_accuracy(whole_test, monitor.whole_calibration, rollouts.failed, resamples, alpha)
    point["ci95"]["balanced_accuracy"] = percentile_interval(samples, point["balanced_accuracy"])
    point["n_calibration"] = len(monitor.whole_calibration)
    point["threshold_kind"] = monitor.kind
    return point


def _alpha_grid_block(test: _ScoredSet, calibration_scores: np.ndarray, monitor: _Monitor, alpha_grid) -> list[dict]:
    """At each alpha of the grid: the threshold and rates up to the horizon, and the deployed monitor on full episodes."""
    rows = []
    for level in alpha_grid:
        threshold = conformal_threshold(calibration_scores, level)
        rates = _rates_at(threshold, test.step_scores[:, 0], test.rollouts, test.horizons)[1]
        deployed = deployed_operating_point(monitor.test_steps, test.rollouts, conformal_threshold(monitor.whole_calibration, level))
        rows.append({"alpha": float(level), "threshold": _finite_or_none(threshold), **rates, "deployed": deployed})
    return rows


def _ranking_intervals(scores: np.ndarray, failed: np.ndarray, resamples: _Resamples, point: dict) -> dict:
    """Bootstrap percentile intervals of rollout AUC and AP."""
    return {
        "rollout_auc": percentile_interval(weighted_auc(scores, failed, resamples.test), point["rollout_auc"]),
        "rollout_ap": percentile_interval(weighted_average_precision(scores, failed, resamples.test), point["rollout_ap"]),
    }


def _undefined_reasons(ranking: dict, threshold: float, lead_median: float | None, warning: str | None) -> dict:
    """Why each undefined headline number is undefined."""
    undefined = {}
    if ranking["reason"]:
        undefined["rollout_auc"] = undefined["rollout_ap"] = ranking["reason"]
    if not np.isfinite(threshold):
        undefined["threshold"] = warning or NO_THRESHOLD
    elif lead_median is None:
        undefined["lead_time_steps_median"] = "no failure was detected"
    return undefined


def detection_report(
    test: StepArrays | Mapping,
    calibration: StepArrays | Mapping,
    *,
    alpha: float = DEFAULT_ALPHA,
    alpha_grid=DEFAULT_ALPHA_GRID,
    horizon=DetectionSettings.horizon,
    n_boot: int = DetectionSettings.n_boot,
    seed: int = DetectionSettings.seed,
    culprit_window: int | None = None,
    bins: int = 10,
    band: dict | None = None,
) -> dict:
    """The detection block of one test set, with the thresholds fitted on the calibration set's successes.

    ``horizon``: ``None`` derives it from the calibration successes (:func:`calibration_horizons`);
    an int is a fixed horizon; a task mapping is used for both sets. Failed rollouts in the
    calibration set are left out of the fit and counted. ``deployed`` is the running monitor on full
    episodes with the whole-episode threshold (the one a checkpoint stores): constant, or, with a
    ``band`` (:func:`band_shape`), the functional band. JSON-safe: undefined values are ``None``.
    """
    test_steps = StepArrays.of(test)
    calibration_steps, left_out = _successes_only(StepArrays.of(calibration))
    test_rollouts, calibration_rollouts = _group(test_steps), _group(calibration_steps)
    if horizon is None:
        horizon, rule = calibration_horizons(test_rollouts, calibration_rollouts)
    else:
        rule = "given_per_task" if isinstance(horizon, Mapping) else "fixed"
    scored, cal = _score_set(test_steps, test_rollouts, horizon), _score_set(calibration_steps, calibration_rollouts, horizon)
    if cal.scores.shape[1] != scored.scores.shape[1]:
        raise ValueError("test and calibration risks have different numbers of dimensions")
    rollouts, failed = scored.rollouts, scored.rollouts.failed
    n_calibration = int(cal.scores.shape[0])
    warning = too_few_calibration_successes(n_calibration, alpha)
    if warning:
        warnings.warn(warning, stacklevel=2)
    thresholds = conformal_threshold(cal.scores, alpha)
    monitor = _monitor(scored, cal, test_steps, calibration_steps, band)
    resamples = _resamples(rollouts, n_calibration, n_boot, seed)

    ranking = rollout_ranking(scored.scores[:, 0], failed)
    alarm, rates = _rates_at(thresholds[0], scored.step_scores[:, 0], rollouts, scored.horizons)
    lead = lead_time_distribution(alarm, rollouts)
    lead_median = lead["steps"]["median"] if np.isfinite(thresholds[0]) else None
    point = {"rollout_auc": ranking["rollout_auc"], "rollout_ap": ranking["rollout_ap"], **rates, "lead_time_steps_median": lead_median}
    ci = _ranking_intervals(scored.scores[:, 0], failed, resamples, point)
    if np.isfinite(thresholds[0]):
        ci.update(_proportion_intervals(alarm >= 0, failed))
        samples = _refitted_balanced_accuracy(scored.scores[:, 0], cal.scores[:, 0], failed, resamples, alpha)
        ci["balanced_accuracy"] = percentile_interval(samples, point["balanced_accuracy"])
    else:
        ci.update({"tpr": None, "fpr": None, "balanced_accuracy": None})

    final_end = rollout_ranking(detection_scores(scored.step_scores[:, 0], rollouts, np.full(len(failed), np.inf)), failed)
    if test_steps.labels is None:
        attributed = {"hit_rate": None, "chance_rate": None, "n_rollouts": 0, "reason": "no provided labels given"}
    else:
        attributed = attribution(test_steps.risk, test_steps.labels, alarm, rollouts, culprit_window)
    return {
        "horizon": _horizon_block(rule, rollouts, scored.horizons),
        "alpha": float(alpha),
        "threshold": _finite_or_none(thresholds[0]),
        **point,
        "ci95": ci,
        "n_rollouts": {"success": int((~failed).sum()), "failure": int(failed.sum())},
        "deployed": _deployed_block(rollouts, monitor, alpha, resamples),
        "per_dimension": _per_dimension_block(scored, thresholds, _dimension_names(scored.scores.shape[1] - 1)),
        "lead_time": lead,
        "attribution": attributed,
        "calibration": _calibration_block(test_steps, bins),
        "alpha_grid": _alpha_grid_block(scored, cal.scores[:, 0], monitor, alpha_grid),
        "by_final_end": {"rollout_auc": final_end["rollout_auc"], "rollout_ap": final_end["rollout_ap"]},
        "per_task_auc": _per_task_auc(scored.scores[:, 0], rollouts),
        "threshold_fit": {
            "n_calibration": n_calibration,
            "n_calibration_failures_left_out": left_out,
            "rank": conformal_rank(n_calibration, alpha),
            "horizon": _horizon_block(rule, cal.rollouts, cal.horizons)["per_task"],
            "warning": warning,
        },
        "bootstrap": {
            "n_boot": int(n_boot),
            "seed": int(seed),
            "unit": resamples.unit,
            "method": "percentile, never widened to contain the point",
            "threshold": "refitted in every resample on a resample of the calibration successes (balanced accuracy)",
            "proportions": "exact Clopper-Pearson at the fitted threshold (TPR, FPR)",
        },
        "undefined": _undefined_reasons(ranking, thresholds[0], lead_median, warning),
    }
