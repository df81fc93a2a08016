"""Rollout-level failure detection against independent references.

Expected values are worked out by hand in the comments or come from plain scikit-learn on
per-rollout maxima built here with Python loops; none comes from the module's own helpers.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vlarisk.score.detection import (
    alarm_rates,
    alarm_steps,
    attribution,
    band_shape,
    calibration_horizons,
    calibration_table,
    conformal_rank,
    conformal_threshold,
    detection_report,
    detection_scores,
    group_rollouts,
    lead_time_distribution,
    rollout_horizons,
    rollout_ranking,
    running_max_scores,
    shortest_rollout_horizons,
    standardised_risk,
)


def steps_of(rollouts: list[dict]) -> dict:
    """Per-step arrays from per-rollout dicts ``{risk [L, D], success, task, labels?, targets?}``."""
    columns = {key: [] for key in ("risk", "rollout_id", "step_index", "success", "task")}
    extra = {key: [] for key in ("labels", "targets") if all(key in r for r in rollouts)}
    for rid, rollout in enumerate(rollouts):
        length = len(rollout["risk"])
        columns["risk"].append(np.asarray(rollout["risk"], dtype=np.float64))
        columns["rollout_id"].append(np.full(length, rid))
        columns["step_index"].append(np.arange(length))
        columns["success"].append(np.full(length, int(rollout["success"])))
        columns["task"].append(np.full(length, rollout.get("task", 0)))
        for key in extra:
            extra[key].append(np.asarray(rollout[key]))
    return {key: np.concatenate(values) for key, values in {**columns, **extra}.items()}


def constant_risk(values, dims: int = 7) -> np.ndarray:
    """``[L, dims]`` risk whose every dimension follows ``values``."""
    return np.repeat(np.asarray(values, dtype=np.float64)[:, None], dims, axis=1)


def random_rollouts(rng, count: int, fail_rate: float = 0.5, tasks: int = 3, signal: float = 0.3) -> list[dict]:
    """Rollouts of varying length whose failures carry a rising risk of size ``signal``."""
    out = []
    for _ in range(count):
        failed = rng.random() < fail_rate
        length = int(rng.integers(12, 40))
        risk = 0.6 * rng.random((length, 7)) + (signal * np.linspace(0, 1, length)[:, None] if failed else 0.0)
        out.append({"risk": np.clip(risk, 0, 1), "success": not failed, "task": int(rng.integers(tasks))})
    return out


# results.json's detection block, key by key, as the contract names them
CONTRACT = {
    "horizon",
    "alpha",
    "threshold",
    "rollout_auc",
    "rollout_ap",
    "tpr",
    "fpr",
    "balanced_accuracy",
    "lead_time_steps_median",
    "ci95",
    "n_rollouts",
    "deployed",
}
DEPLOYED = {
    "threshold",
    "tpr",
    "tnr",
    "fpr",
    "balanced_accuracy",
    "relative_detection_time_mean",
    "lead_time_steps_median",
    "ci95",
    "n_rollouts",
}


# --- running maximum and horizons -------------------------------------------------------------


def test_running_max_is_per_rollout_and_in_input_order():
    # Rollout 7: steps 0..2; rollout 3: steps 0..1; rows shuffled.
    risk = np.array([[0.2, 0.1], [0.1, 0.6], [0.5, 0.0], [0.3, 0.2], [0.4, 0.1]])
    rollout_id = np.array([7, 3, 7, 7, 3])
    step_index = np.array([2, 1, 0, 1, 0])
    overall, per_dim = running_max_scores(risk, rollout_id, step_index)
    # Rollout 7 in step order: [0.5,0.0], [0.3,0.2], [0.2,0.1] -> running max [0.5,0.0], [0.5,0.2], [0.5,0.2].
    # Rollout 3: [0.4,0.1], [0.1,0.6] -> [0.4,0.1], [0.4,0.6].
    expected = np.array([[0.5, 0.2], [0.4, 0.6], [0.5, 0.0], [0.5, 0.2], [0.4, 0.1]])
    np.testing.assert_allclose(per_dim, expected)
    np.testing.assert_allclose(overall, [0.5, 0.6, 0.5, 0.5, 0.4])


def test_detection_score_stops_at_min_of_horizon_and_length():
    arrays = steps_of(
        [
            {"risk": constant_risk([0.1, 0.5, 0.2]), "success": True, "task": 0},
            {"risk": constant_risk([0.1, 0.2, 0.3, 0.9, 0.9]), "success": False, "task": 0},
            {"risk": constant_risk([0.7, 0.1, 0.1, 0.1]), "success": False, "task": 1},
        ]
    )
    rollouts = group_rollouts(arrays["rollout_id"], arrays["step_index"], arrays["success"], arrays["task"])
    overall = arrays["risk"].max(axis=1)
    # Task 0's shortest rollout has 3 steps, task 1's has 4: scores max(steps 0..2) and max(steps 0..3).
    assert shortest_rollout_horizons(rollouts) == {0: 3, 1: 4}
    np.testing.assert_allclose(detection_scores(overall, rollouts, rollout_horizons(rollouts)), [0.5, 0.3, 0.7])
    # Fixed horizon 4: min(4, 3) = 3 steps for the first rollout, 4 for the second (reaches 0.9).
    np.testing.assert_allclose(detection_scores(overall, rollouts, rollout_horizons(rollouts, 4)), [0.5, 0.9, 0.7])
    np.testing.assert_allclose(detection_scores(overall, rollouts, rollout_horizons(rollouts, math.inf)), [0.5, 0.9, 0.7])
    # A mapping (e.g. from calibration) is used as given and must name every task.
    np.testing.assert_allclose(detection_scores(overall, rollouts, rollout_horizons(rollouts, {0: 1, 1: 1})), [0.1, 0.1, 0.7])
    with pytest.raises(ValueError, match="no horizon"):
        rollout_horizons(rollouts, {0: 3})


def test_group_rollouts_rejects_inconsistent_rows():
    with pytest.raises(ValueError, match="constant"):
        group_rollouts([0, 0], [0, 1], success=[1, 0])
    with pytest.raises(ValueError, match="twice"):
        group_rollouts([0, 0], [1, 1])


# --- rollout AUC / AP ----------------------------------------------------------------------------


def test_rollout_auc_and_ap_match_sklearn_on_hand_built_maxima():
    rng = np.random.default_rng(3)
    rollouts = random_rollouts(rng, 60, signal=0.15)
    calibration_rollouts = [r for r in random_rollouts(np.random.default_rng(4), 40) if r["success"]]
    # Reference: per task, the shortest length of the calibration rollouts (they hold every test
    # task); per rollout, the max risk over dims and steps < it.
    shortest = {}
    for r in calibration_rollouts:
        shortest[r["task"]] = min(shortest.get(r["task"], 10**9), len(r["risk"]))
    assert {r["task"] for r in rollouts} <= set(shortest)
    maxima = np.array([max(max(row) for row in r["risk"][: shortest[r["task"]]]) for r in rollouts])
    per_dim = np.array(
        [[max(r["risk"][t][d] for t in range(min(shortest[r["task"]], len(r["risk"])))) for d in range(7)] for r in rollouts]
    )
    failed = np.array([not r["success"] for r in rollouts])
    arrays = steps_of(rollouts)
    report = detection_report(arrays, steps_of(calibration_rollouts), n_boot=50)
    assert report["rollout_auc"] == pytest.approx(roc_auc_score(failed, maxima))
    assert report["rollout_ap"] == pytest.approx(average_precision_score(failed, maxima))
    for d, name in enumerate(("x", "y", "z", "roll", "pitch", "yaw", "gripper")):
        assert report["per_dimension"][name]["rollout_auc"] == pytest.approx(roc_auc_score(failed, per_dim[:, d]))
        assert report["per_dimension"][name]["rollout_ap"] == pytest.approx(average_precision_score(failed, per_dim[:, d]))
    final = np.array([r["risk"].max() for r in rollouts])
    assert report["by_final_end"]["rollout_auc"] == pytest.approx(roc_auc_score(failed, final))


def test_single_class_gives_none_with_reason():
    result = rollout_ranking([0.2, 0.9, 0.4], [False, False, False])
    assert result == {"rollout_auc": None, "rollout_ap": None, "reason": "no failed rollouts"}
    assert rollout_ranking([0.2, 0.9], [True, True])["reason"] == "no successful rollouts"


def test_shuffled_outcomes_give_auc_near_half():
    rng = np.random.default_rng(11)
    rollouts = random_rollouts(rng, 800, signal=0.5)
    arrays = steps_of(rollouts)
    group = group_rollouts(arrays["rollout_id"], arrays["step_index"], arrays["success"], arrays["task"])
    scores = detection_scores(arrays["risk"].max(axis=1), group, rollout_horizons(group))
    informative = rollout_ranking(scores, group.failed)["rollout_auc"]
    shuffled = rng.permutation(group.failed)
    auc = rollout_ranking(scores, shuffled)["rollout_auc"]
    n1, n0 = int(shuffled.sum()), int((~shuffled).sum())
    se = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))  # SE of AUC under no signal (Hanley-McNeil, Mann-Whitney)
    assert informative > 0.9
    assert abs(auc - 0.5) < 4 * se


def test_episode_length_alone_is_chance_under_the_horizon_but_perfect_by_final_end():
    rng = np.random.default_rng(5)
    rollouts = []
    for task in range(4):
        for k in range(20):  # balanced outcomes within each task
            failed = k % 2 == 0
            length = 60 if failed else int(rng.integers(20, 51))
            rollouts.append({"risk": constant_risk(np.arange(length)), "success": not failed, "task": task})
    arrays = steps_of(rollouts)
    calibration = steps_of([r for r in rollouts if r["success"]])
    report = detection_report(arrays, calibration, n_boot=50)
    # Cut at each task's shortest (calibration) rollout, every rollout of a task scores (shortest - 1): all tied.
    assert report["rollout_auc"] == pytest.approx(0.5)
    assert report["by_final_end"]["rollout_auc"] == pytest.approx(1.0)  # 59 > every success's final step
    assert report["calibration"]["ece"] is None  # no training targets given


# --- conformal threshold -------------------------------------------------------------------------


def test_unseen_task_horizon_comes_from_calibration_never_from_test_lengths():
    """Calibration on tasks 0-1, test on tasks 5-6 (disjoint): both are cut at the shortest
    calibration rollout (12 steps), however long or short the unseen test rollouts are."""
    rng = np.random.default_rng(11)
    calibration = [{"risk": rng.random((n, 7)), "success": True, "task": t} for t, n in ((0, 12), (0, 30), (1, 17), (1, 40))]

    def unseen(shortest):
        return [{"risk": rng.random((n, 7)), "success": n % 2 == 0, "task": 5 + n % 2} for n in range(shortest, shortest + 6)]

    for shortest in (20, 50):
        report = detection_report(steps_of(unseen(shortest)), steps_of(calibration), n_boot=5, alpha=0.5)
        assert report["horizon"]["rule"] == "shortest_calibration_rollout"
        assert report["horizon"]["per_task"] == {"5": 12, "6": 12}
        assert report["threshold_fit"]["horizon"] == {"0": 12, "1": 12}  # calibration cut alike
    test_group, cal_group = (
        group_rollouts(a["rollout_id"], a["step_index"], a["success"], a["task"]) for a in map(steps_of, (unseen(20), calibration))
    )
    assert calibration_horizons(test_group, cal_group) == (12, "shortest_calibration_rollout")
    seen = group_rollouts(*(steps_of(calibration)[k] for k in ("rollout_id", "step_index", "success", "task")))
    assert calibration_horizons(seen, cal_group) == ({0: 12, 1: 17}, "shortest_calibration_rollout_per_task")


def test_conformal_threshold_index_on_hand_cases():
    scores = np.array([5.0, 3, 9, 1, 7, 2, 8, 4, 6, 0])  # n = 10, sorted: 0..9
    assert conformal_rank(10, 0.2) == 9  # ceil(11 * 0.8) = ceil(8.8)
    assert conformal_threshold(scores, 0.2) == 8.0  # 9th smallest
    assert conformal_rank(10, 0.1) == 10  # ceil(9.9)
    assert conformal_threshold(scores, 0.1) == 9.0
    assert conformal_rank(19, 0.1) == 18  # ceil(20 * 0.9) = 18 exactly, not 19
    assert conformal_rank(89, 0.3) == 63  # 90 * 0.7 is 62.99999999999999 in floats
    assert conformal_rank(9, 0.7) == 3  # 10 * (1 - 0.7) is 3.0000000000000004 in floats: still rank 3
    assert conformal_rank(99, 0.45) == 55  # 100 * 0.55 is 55.00000000000001 in floats
    assert conformal_threshold(scores, 0.05) == math.inf  # ceil(10.45) = 11 > 10
    assert conformal_threshold(scores[:8], 0.1) == math.inf  # ceil(8.1) = 9 > 8
    columns = np.column_stack([scores, -scores])
    np.testing.assert_array_equal(conformal_threshold(columns, 0.2), [8.0, -1.0])  # 9th smallest of -9..0


def test_fpr_on_fresh_exchangeable_successes_is_at_most_alpha():
    rng = np.random.default_rng(21)
    alpha, n_cal, n_test, draws = 0.1, 49, 50, 300

    def successes(count):
        lengths = rng.integers(10, 25, count)
        return steps_of([{"risk": rng.random((n, 7)), "success": True} for n in lengths])

    fprs = []
    for _ in range(draws):
        cal, test = successes(n_cal), successes(n_test)
        cal_group = group_rollouts(cal["rollout_id"], cal["step_index"], cal["success"])
        test_group = group_rollouts(test["rollout_id"], test["step_index"], test["success"])
        horizon = 15  # fixed, so calibration and test scores are exchangeable
        threshold = conformal_threshold(detection_scores(cal["risk"].max(axis=1), cal_group, rollout_horizons(cal_group, horizon)), alpha)
        alarm = alarm_steps(test["risk"].max(axis=1), test_group, rollout_horizons(test_group, horizon), threshold)
        fprs.append(alarm_rates(alarm, test_group.failed)["fpr"])
    mean, se = np.mean(fprs), np.std(fprs) / math.sqrt(draws)
    # Continuous scores: E[FPR] = 1 - 45/50 = 0.1 exactly (rank 45 of n = 49).
    assert mean <= alpha + 3 * se
    assert mean >= alpha - 4 * se  # and not trivially conservative


def test_default_horizon_cuts_test_and_calibration_alike_so_fpr_stays_at_alpha():
    """A small test set's shortest rollout is longer than a large calibration set's: cut at their
    own shortest, test successes would be scored over more steps than calibration ones and raise
    false alarms above alpha. The default cuts both at the calibration set's shortest."""
    rng = np.random.default_rng(5)
    alpha, draws = 0.1, 200

    def rollouts(count, success=True):
        return [{"risk": rng.random((n, 7)), "success": success} for n in rng.integers(10, 60, count)]

    fprs = []
    for _ in range(draws):
        calibration = steps_of(rollouts(99))
        test = steps_of(rollouts(8) + rollouts(2, success=False))
        fprs.append(detection_report(test, calibration, n_boot=1, alpha_grid=())["fpr"])
    mean, se = np.mean(fprs), np.std(fprs) / math.sqrt(draws)
    assert mean <= alpha + 3 * se, mean


def test_tied_scores_do_not_break_the_false_alarm_bound():
    # A third of successes saturate at 1.0 (as a float32 sigmoid does): the threshold lands on 1.0,
    # and only a strict alarm (> threshold) keeps the false-alarm rate within alpha.
    rng = np.random.default_rng(8)

    def successes(count):
        levels = np.where(rng.random(count) < 0.3, 1.0, 0.5 * rng.random(count))
        return steps_of([{"risk": constant_risk(np.full(10, v)), "success": True} for v in levels])

    cal, test = successes(49), successes(400)
    cal_group = group_rollouts(cal["rollout_id"], cal["step_index"], cal["success"])
    test_group = group_rollouts(test["rollout_id"], test["step_index"], test["success"])
    threshold = conformal_threshold(detection_scores(cal["risk"].max(axis=1), cal_group, rollout_horizons(cal_group, 10)), 0.1)
    assert threshold == 1.0
    alarm = alarm_steps(test["risk"].max(axis=1), test_group, rollout_horizons(test_group, 10), threshold)
    assert alarm_rates(alarm, test_group.failed)["fpr"] <= 0.1


# --- alarms and lead time ------------------------------------------------------------------------


def test_lead_time_and_rates_on_a_hand_case():
    threshold = 0.5
    arrays = steps_of(
        [
            # Failure of 10 steps crossing at step 6: lead 10 - 6 = 4 steps, 0.4 of the episode.
            {"risk": constant_risk([0.1] * 6 + [0.8] * 4), "success": False},
            # Failure of 20 steps crossing at step 5: lead 15 steps, 0.75.
            {"risk": constant_risk([0.1] * 5 + [0.9] * 15), "success": False},
            # Failure that only touches the threshold (not above it): no alarm.
            {"risk": constant_risk([0.5] * 12), "success": False},
            # Failure crossing at step 14, after the horizon (12): no alarm.
            {"risk": constant_risk([0.1] * 14 + [0.9] * 6), "success": False},
            # Successes: one false alarm at step 2, one quiet.
            {"risk": constant_risk([0.1, 0.2, 0.7, 0.1]), "success": True},
            {"risk": constant_risk([0.3] * 8), "success": True},
        ]
    )
    group = group_rollouts(arrays["rollout_id"], arrays["step_index"], arrays["success"])
    alarm = alarm_steps(arrays["risk"].max(axis=1), group, rollout_horizons(group, 12), threshold)
    np.testing.assert_array_equal(alarm, [6, 5, -1, -1, 2, -1])
    rates = alarm_rates(alarm, group.failed)
    assert rates == {"tpr": 0.5, "fpr": 0.5, "balanced_accuracy": 0.5}  # (0.5 + 1 - 0.5) / 2
    lead = lead_time_distribution(alarm, group)
    assert lead["steps"]["values"] == [4, 15] and lead["steps"]["median"] == 9.5
    assert lead["fraction"]["values"] == pytest.approx([0.4, 0.75])
    assert lead["n_detected"] == 2 and lead["n_failures"] == 4


# --- intervals are tested in test_intervals.py --------------------------------------------------


# --- attribution and calibration ---------------------------------------------------------------


def test_attribution_hit_rate_on_a_hand_case():
    length = 12  # failure window = max(10, 0.2 * 12) = 10 last steps: steps 2..11
    base = np.full((length, 7), 0.1)

    def failure(alarm_dim, later_dim, culprits, early_label_dim=None):
        risk = base.copy()
        risk[5:8, alarm_dim] = 0.9  # the alarm (threshold 0.5) fires at step 5 on this dimension
        risk[8:, later_dim] = 1.0  # after the alarm another dimension is riskiest: must not count
        labels = np.zeros((length, 7))
        labels[6, culprits] = 0.8
        if early_label_dim is not None:
            labels[0, early_label_dim] = 1.0  # outside the window: must not count
        return {"risk": risk, "labels": labels, "success": False}

    quiet = {"risk": base.copy(), "labels": np.ones((length, 7)), "success": False}  # never alarms
    success = {"risk": base.copy(), "labels": np.zeros((length, 7)), "success": True}
    arrays = steps_of(
        [
            failure(alarm_dim=1, later_dim=0, culprits=[1], early_label_dim=0),  # culprit y, predicted y: hit
            failure(alarm_dim=2, later_dim=1, culprits=[0, 2]),  # culprits x, z; predicted z: hit
            failure(alarm_dim=0, later_dim=6, culprits=[6]),  # culprit gripper, predicted x: miss
            quiet,
            success,
        ]
    )
    group = group_rollouts(arrays["rollout_id"], arrays["step_index"], arrays["success"])
    alarm = alarm_steps(arrays["risk"].max(axis=1), group, rollout_horizons(group), 0.5)
    result = attribution(arrays["risk"], arrays["labels"], alarm, group)
    assert result["n_rollouts"] == 3 and result["n_labelled_failures"] == 4 and result["n_hits"] == 2
    assert result["hit_rate"] == pytest.approx(2 / 3)
    assert result["chance_rate"] == pytest.approx((1 / 7 + 2 / 7 + 1 / 7) / 3)


def test_ece_and_reliability_on_a_hand_case():
    risk = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    target = np.array([0, 0, 1, 1, 1])
    result = calibration_table(risk, target, bins=10)
    # bin 0: mean 0.05, target 0 -> 0.05 x 1; bin 1: mean 0.15, target 0.5 -> 0.35 x 2;
    # bin 9 (closed, holds 1.0): mean 0.975, target 1 -> 0.025 x 2. ECE = (0.05 + 0.7 + 0.05) / 5 = 0.16
    assert result["ece"] == pytest.approx(0.16)
    table = result["reliability"]
    assert [row["count"] for row in table] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table[1]["mean_risk"] == pytest.approx(0.15) and table[1]["mean_target"] == 0.5
    assert table[2]["mean_risk"] is None and table[9]["mean_target"] == 1.0


def test_ece_is_per_dimension_against_the_soft_label_the_model_was_trained_on():
    # Predicting the soft label exactly is perfectly calibrated; predicting half of it is off by
    # half the mean label in every bin, so ECE = mean(risk) per dimension.
    rng = np.random.default_rng(3)
    rollouts = random_rollouts(rng, 30, signal=0.3)
    for r in rollouts:
        r["targets"] = np.clip(r["risk"] + 0.0, 0, 1)
    exact = detection_report(steps_of(rollouts), steps_of(random_rollouts(rng, 30, 0.0)), n_boot=10)["calibration"]
    assert exact["ece"] == pytest.approx(0.0, abs=1e-12)
    assert set(exact["per_dimension"]) == {"x", "y", "z", "roll", "pitch", "yaw", "gripper"}
    for r in rollouts:
        r["risk"] = r["targets"] / 2
    halved = detection_report(steps_of(rollouts), steps_of(random_rollouts(rng, 30, 0.0)), n_boot=10)["calibration"]
    expected = [np.mean(np.concatenate([r["risk"][:, d] for r in rollouts])) for d in range(7)]
    assert list(halved["per_dimension"].values()) == pytest.approx(expected)
    assert halved["ece"] == pytest.approx(np.mean(expected))


# --- the report ----------------------------------------------------------------------------------


def test_report_shape_is_strict_json():
    rng = np.random.default_rng(9)
    rollouts = random_rollouts(rng, 40, signal=0.3)
    for r in rollouts:
        r["targets"] = np.zeros((len(r["risk"]), 7)) if r["success"] else np.tile(np.linspace(0, 1, len(r["risk"]))[:, None], (1, 7))
        r["labels"] = np.zeros((len(r["risk"]), 7)) if r["success"] else np.tile(rng.random(7), (len(r["risk"]), 1))
    calibration_rollouts = random_rollouts(rng, 30, 0.2)
    report = detection_report(steps_of(rollouts), steps_of(calibration_rollouts), n_boot=100)
    json.dumps(report, allow_nan=False)
    assert CONTRACT <= set(report)
    assert {"per_dimension", "lead_time", "attribution", "calibration", "alpha_grid"} <= set(report)
    assert report["n_rollouts"] == {"success": sum(r["success"] for r in rollouts), "failure": sum(not r["success"] for r in rollouts)}
    assert report["threshold_fit"]["n_calibration_failures_left_out"] == sum(not r["success"] for r in calibration_rollouts)
    assert report["horizon"]["rule"] == "shortest_calibration_rollout_per_task"
    assert [row["alpha"] for row in report["alpha_grid"]] == [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]
    assert DEPLOYED <= set(report["deployed"]) and DEPLOYED <= set(report["alpha_grid"][2]["deployed"])
    assert set(report["deployed"]["ci95"]) == {"tpr", "fpr", "balanced_accuracy"}
    assert report["attribution"]["reason"] is None and report["calibration"]["ece"] is not None


def test_too_few_calibration_successes_give_no_threshold():
    rng = np.random.default_rng(4)
    test = steps_of(random_rollouts(rng, 20))
    calibration = steps_of([r for r in random_rollouts(rng, 8, 0.0)])  # n = 8 < rank 9 at alpha 0.1
    with pytest.warns(UserWarning, match="8 calibration successes are too few for alpha 0.1: at least 9"):
        report = detection_report(test, calibration, n_boot=20, horizon=10)
    assert report["threshold"] is None and "threshold" in report["undefined"]
    assert report["tpr"] is None and report["fpr"] is None and report["ci95"]["tpr"] is None
    assert report["rollout_auc"] is not None  # ranking needs no threshold
    assert report["horizon"] == {"rule": "fixed", "steps": 10, "per_task": {"0": 10, "1": 10, "2": 10}}
    json.dumps(report, allow_nan=False)


# --- functional band -----------------------------------------------------------------------------


def test_band_shape_is_the_per_step_mean_and_sd_of_successes_up_to_well_supported_steps():
    rng = np.random.default_rng(6)
    rollouts = [rng.random((n, 7)) for n in (3, 5, 5, 6, 6, 8)]
    steps = np.concatenate([np.arange(len(r)) for r in rollouts])
    band = band_shape(np.concatenate(rollouts), steps, min_rollouts=3)
    assert len(band["mean"]) == 6  # steps 0..5 are reached by >= 3 rollouts, step 6 by 2
    for t in range(6):
        values = [r[t].max() for r in rollouts if len(r) > t]
        assert band["mean"][t] == pytest.approx(sum(values) / len(values))
        assert band["sd"][t] == pytest.approx(max(np.std(values), 1e-3))
    standard = standardised_risk(np.array([[0.9] * 7, [0.9] * 7]), np.array([2, 40]), band)
    assert standard == pytest.approx([(0.9 - band["mean"][2]) / band["sd"][2], (0.9 - band["mean"][5]) / band["sd"][5]])


def test_band_monitor_keeps_false_alarms_at_alpha_and_catches_an_early_bump_a_constant_misses():
    """Success risk rises over an episode; a failure shows a bump early on, below the late
    success risk. A constant threshold must sit above the late risk and misses it; the band, whose
    level follows the successes over time, detects it, with false alarms still at most alpha."""
    rng = np.random.default_rng(12)
    alpha, draws = 0.2, 60

    def success(n=30):
        return {"risk": constant_risk(np.clip(np.linspace(0.1, 0.8, n) + 0.02 * rng.normal(size=n), 0, 1)), "success": True}

    def failure(n=30):
        risk = np.clip(np.linspace(0.1, 0.8, n) + 0.02 * rng.normal(size=n), 0, 1)
        risk[3:6] += 0.3  # about 0.45: far above a success at step 3-5, below one at the end
        return {"risk": constant_risk(risk), "success": False}

    training = steps_of([success() for _ in range(40)])
    band = band_shape(training["risk"], training["step_index"])
    fprs, tprs_band, tprs_constant = [], [], []
    for _ in range(draws):
        test = steps_of([success() for _ in range(20)] + [failure() for _ in range(10)])
        calibration = steps_of([success() for _ in range(29)])
        banded = detection_report(test, calibration, alpha=alpha, alpha_grid=(), n_boot=5, band=band)["deployed"]
        constant = detection_report(test, calibration, alpha=alpha, alpha_grid=(), n_boot=5)["deployed"]
        assert banded["threshold_kind"] == "band" and constant["threshold_kind"] == "constant"
        fprs.append(banded["fpr"])
        tprs_band.append(banded["tpr"])
        tprs_constant.append(constant["tpr"])
    assert np.mean(fprs) <= alpha + 3 * np.std(fprs) / np.sqrt(draws)
    assert np.mean(tprs_band) > 0.9 and np.mean(tprs_constant) < 0.5
