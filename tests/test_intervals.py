"""Intervals of rollout-level detection: exact proportions, weighted resamples, coverage that holds.

References are independent: scipy's exact binomial test, scikit-learn on explicitly repeated
samples, plain loops, and Monte Carlo truth from a large fresh sample of the same simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.metrics import average_precision_score, roc_auc_score

from vlarisk.core.intervals import (
    clopper_pearson,
    percentile_interval,
    refitted_thresholds,
    resample_weights,
    roc_auc,
    weighted_auc,
    weighted_average_precision,
    weighted_rates,
)
from vlarisk.score.detection import deployed_operating_point, detection_report, group_rollouts


def test_clopper_pearson_matches_the_exact_binomial_interval():
    for hits, trials in ((0, 16), (3, 10), (16, 16), (7, 50)):
        reference = binomtest(hits, trials).proportion_ci(0.95, method="exact")
        assert clopper_pearson(hits, trials) == pytest.approx([reference.low, reference.high])
    low, high = clopper_pearson(0, 16)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 16))  # 0.206, not a zero-width interval
    assert clopper_pearson(0, 0) is None


def test_weighted_auc_and_ap_match_sklearn_on_the_repeated_sample():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, 30).astype(float)  # many ties
    positive = np.arange(30) < 12
    weights = rng.integers(0, 3, (20, 30))
    auc, ap = weighted_auc(scores, positive, weights), weighted_average_precision(scores, positive, weights)
    for row in range(20):
        repeated = np.repeat(np.arange(30), weights[row])
        assert auc[row] == pytest.approx(roc_auc_score(positive[repeated], scores[repeated]))
        assert ap[row] == pytest.approx(average_precision_score(positive[repeated], scores[repeated]))


def test_roc_auc_matches_sklearn_with_and_without_ties():
    """The validation AUC: scikit-learn's value, float32 scores, ties counting one half."""
    rng = np.random.default_rng(3)
    for scores in (rng.random(500).astype(np.float32), rng.integers(0, 4, 500).astype(np.float32)):
        positive = rng.random(500) < 0.1
        assert roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert roc_auc(np.array([0.2, 0.2, 0.9]), np.array([False, True, True])) == 0.75


def test_weighted_rates_and_refitted_thresholds_match_plain_loops():
    rng = np.random.default_rng(5)
    alarmed, failed = rng.random(12) < 0.5, np.arange(12) < 5
    weights = rng.integers(0, 3, (8, 12))
    weights[:, 0] += 1  # every resample holds a failure
    weights[:, 11] += 1  # and a success
    rates = weighted_rates(alarmed, failed, weights)
    calibration, cal_weights = rng.random(9), rng.integers(0, 3, (8, 9))
    cal_weights[:, 0] += 9  # at least 9 draws, so rank 9 exists
    thresholds = refitted_thresholds(calibration, cal_weights, rank=9)
    for b in range(8):
        drawn = [r for r in range(12) for _ in range(weights[b, r])]
        fails = [r for r in drawn if failed[r]]
        oks = [r for r in drawn if not failed[r]]
        assert rates["tpr"][b] == pytest.approx(sum(alarmed[r] for r in fails) / len(fails))
        assert rates["fpr"][b] == pytest.approx(sum(alarmed[r] for r in oks) / len(oks))
        expanded = sorted(calibration[j] for j in range(9) for _ in range(cal_weights[b, j]))
        assert thresholds[b] == expanded[8]


def test_resamples_cluster_by_task_with_three_tasks_and_keep_outcome_counts_otherwise():
    task = np.repeat([0, 1, 2], [4, 6, 10])
    failed = np.arange(20) % 3 == 0
    weights, unit = resample_weights(task, failed, 500, seed=0)
    assert unit == "task, then rollout"
    # a drawn task brings as many draws as it has rollouts: totals are sums of task sizes
    sums = {int(w) for w in weights.sum(axis=1)}
    possible = {a + b + c for a in (0, 4, 8, 12) for b in (0, 6, 12, 18) for c in (0, 10, 20, 30)}
    assert sums <= possible and len(sums) > 3
    assert (weights[:, task == 2].sum(axis=1) == 0).any()  # whole tasks go missing in some resamples
    weights, unit = resample_weights(np.zeros(20), failed, 200, seed=0)
    assert unit == "rollout within outcome"
    assert (weights[:, failed].sum(axis=1) == failed.sum()).all() and (weights[:, ~failed].sum(axis=1) == (~failed).sum()).all()


def test_percentile_interval_is_not_widened_to_its_point():
    assert percentile_interval(np.arange(1, 101, dtype=float), 150.0) == pytest.approx([3.475, 97.525])
    assert percentile_interval([np.nan, np.nan], 1.0) is None
    assert percentile_interval([0.1, 0.2], None) is None


def test_deployed_monitor_matches_a_plain_loop_on_full_episodes():
    rng = np.random.default_rng(7)
    rollouts = [(rng.random(int(n)) * (1.05 if k % 3 == 0 else 1.0), k % 3 == 0) for k, n in enumerate(rng.integers(5, 40, 40))]
    risk = np.concatenate([r for r, _ in rollouts])
    rollout_id = np.concatenate([np.full(len(r), k) for k, (r, _) in enumerate(rollouts)])
    step = np.concatenate([np.arange(len(r)) for r, _ in rollouts])
    success = np.concatenate([np.full(len(r), not f) for r, f in rollouts])
    shuffle = rng.permutation(len(risk))
    group = group_rollouts(rollout_id[shuffle], step[shuffle], success[shuffle])
    threshold = 0.98
    result = deployed_operating_point(risk[shuffle], group, threshold)
    first = []
    for values, _ in rollouts:  # first step whose running max exceeds the threshold, over the whole episode
        peak, alarm = -np.inf, -1
        for t, v in enumerate(values):
            peak = max(peak, v)
            if peak > threshold:
                alarm = t
                break
        first.append(alarm)
    fails = [k for k, (_, f) in enumerate(rollouts) if f]
    oks = [k for k, (_, f) in enumerate(rollouts) if not f]
    tpr = sum(first[k] >= 0 for k in fails) / len(fails)
    fpr = sum(first[k] >= 0 for k in oks) / len(oks)
    relative = [first[k] / len(rollouts[k][0]) if first[k] >= 0 else 1.0 for k in fails]
    leads = sorted(len(rollouts[k][0]) - first[k] for k in fails if first[k] >= 0)
    assert result["tpr"] == pytest.approx(tpr) and result["fpr"] == pytest.approx(fpr) and result["tnr"] == pytest.approx(1 - fpr)
    assert result["balanced_accuracy"] == pytest.approx((tpr + 1 - fpr) / 2)
    assert result["relative_detection_time_mean"] == pytest.approx(sum(relative) / len(relative))
    assert result["lead_time_steps_median"] == pytest.approx(np.median(leads))
    assert 0 < tpr < 1 and 0 < fpr < 1  # the case exercises both hits and misses
    assert result["ci95"]["fpr"] == pytest.approx(clopper_pearson(sum(first[k] >= 0 for k in oks), len(oks)))
    assert result["n_rollouts"] == {"failure": len(fails), "success": len(oks)}


# --- coverage ------------------------------------------------------------------------------------

STEPS = 8
SHIFT = 0.8  # a failure's rollout-level latent is shifted by this much


def simulate(rng, count: int, failed: bool) -> np.ndarray:
    """Per-step scores ``[count, STEPS]``: a rollout-level latent plus small step noise (steps of a rollout are correlated)."""
    latent = rng.normal(SHIFT if failed else 0.0, 1.0, (count, 1))
    return latent + 0.3 * rng.normal(size=(count, STEPS))


def as_steps(scores_by_outcome: list[tuple[np.ndarray, bool]]) -> dict:
    """Per-step detection inputs of simulated rollouts (one task, fixed length)."""
    risk, success, rid = [], [], []
    offset = 0
    for scores, failed in scores_by_outcome:
        risk.append(scores.reshape(-1, 1))
        success.append(np.full(scores.size, not failed))
        rid.append(offset + np.repeat(np.arange(len(scores)), STEPS))
        offset += len(scores)
    rid = np.concatenate(rid)
    return {
        "risk": np.concatenate(risk),
        "rollout_id": rid,
        "step_index": np.tile(np.arange(STEPS), offset),
        "success": np.concatenate(success),
        "task": np.zeros(len(rid), np.int64),
    }


def test_nominal_95_intervals_of_auc_and_fpr_cover_the_truth():
    """200 fresh test and calibration sets from one simulator: the AUC interval (bootstrap over
    rollouts) and the deployed FPR interval (exact, at the fitted threshold) each contain the truth
    at least 90% of the time. Truth: AUC and a threshold's FPR from 100,000 fresh rollouts per class."""
    truth_rng = np.random.default_rng(0)
    success_max = simulate(truth_rng, 100_000, False).max(axis=1)
    failure_max = simulate(truth_rng, 100_000, True).max(axis=1)
    below = np.searchsorted(np.sort(success_max), failure_max)  # successes scoring under each failure (continuous: no ties)
    true_auc = float(np.mean(below) / len(success_max))
    assert true_auc == pytest.approx(norm.cdf(SHIFT / np.sqrt(2)), abs=0.03)  # a sanity check of the simulator
    rng = np.random.default_rng(1)
    covered_auc = covered_fpr = 0
    draws = 200
    for draw in range(draws):
        test = as_steps([(simulate(rng, 30, True), True), (simulate(rng, 30, False), False)])
        calibration = as_steps([(simulate(rng, 40, False), False)])
        report = detection_report(test, calibration, alpha=0.2, alpha_grid=(), n_boot=200, seed=draw)
        low, high = report["ci95"]["rollout_auc"]
        covered_auc += low <= true_auc <= high
        deployed = report["deployed"]
        true_fpr = float(np.mean(success_max > deployed["threshold"]))
        low, high = deployed["ci95"]["fpr"]
        covered_fpr += low <= true_fpr <= high
    assert covered_auc / draws >= 0.90, covered_auc / draws
    assert covered_fpr / draws >= 0.90, covered_fpr / draws


def simulate_tasks(rng, count: int, per_outcome: int, spread: float) -> list[tuple[np.ndarray, bool, int]]:
    """Rollouts of ``count`` tasks: each task shifts both outcomes' scores and its failures' separation by ``N(0, spread)``."""
    rollouts = []
    for task in range(count):
        level, separation = rng.normal(0, spread), SHIFT + rng.normal(0, spread)
        for failed in (True, False):
            latent = rng.normal(level + (separation if failed else 0.0), 1.0, (per_outcome, 1))
            rollouts.append((latent + 0.3 * rng.normal(size=(per_outcome, STEPS)), failed, task))
    return rollouts


def task_steps(rollouts: list[tuple[np.ndarray, bool, int]]) -> dict:
    """Per-step detection inputs of :func:`simulate_tasks` rollouts."""
    steps = as_steps([(scores, failed) for scores, failed, _ in rollouts])
    steps["task"] = np.concatenate([np.full(scores.size, task) for scores, _, task in rollouts])
    return steps


def test_with_task_effects_the_auc_interval_covers_the_new_task_truth():
    """Tasks differ (difficulty and separation), so a claim about unseen tasks must resample
    tasks: over 200 test sets of 8 tasks the AUC interval covers the AUC over fresh tasks at least
    90% of the time. Resampling rollouts alone ignores the spread across tasks and covers less."""
    truth_rng = np.random.default_rng(0)
    population = simulate_tasks(truth_rng, 4000, 25, spread=0.5)
    failure_max = np.concatenate([s.max(axis=1) for s, failed, _ in population if failed])
    success_max = np.sort(np.concatenate([s.max(axis=1) for s, failed, _ in population if not failed]))
    true_auc = float(np.mean(np.searchsorted(success_max, failure_max)) / len(success_max))
    rng = np.random.default_rng(1)
    calibration = as_steps([(simulate(rng, 40, False), False)])
    covered, draws = 0, 200
    for draw in range(draws):
        report = detection_report(task_steps(simulate_tasks(rng, 8, 10, 0.5)), calibration, alpha=0.2, alpha_grid=(), n_boot=200, seed=draw)
        assert report["bootstrap"]["unit"] == "task, then rollout"
        low, high = report["ci95"]["rollout_auc"]
        covered += low <= true_auc <= high
    assert covered / draws >= 0.90, covered / draws
