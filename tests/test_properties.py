"""Property tests (hypothesis): labels, splits, normalisation and metrics on random inputs.

* heuristic labels: shape, range [0, 1], zero for successes, the failure window's length, and
  monotone in |action| inside the window (the largest |action| of a dimension gets risk 1);
* the split: disjoint, complete, stratified (each split holds both outcomes whenever the fractions
  allow it, and the split is refused exactly when they do not), deterministic for a seed, held-out
  tasks only in the test split;
* normalisation: ``feature_statistics`` equals numpy's mean/std of the chosen rows for any chunk
  size; constant features get std 1;
* metrics: equal to scikit-learn's MSE, MAE, ROC AUC and AP on random inputs full of ties, and
  ``None`` exactly when a dimension has a single class.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score, mean_absolute_error, mean_squared_error, roc_auc_score

from vlarisk.core.constants import ACTION_DIMENSIONS, NUM_DIMENSIONS
from vlarisk.core.errors import InputError
from vlarisk.data.label_cutoffs import binarize, positive_label_cutoffs
from vlarisk.data.labels import failure_window, heuristic_risk_labels
from vlarisk.data.splits import SPLIT_NAMES, plain_split, split_rollouts
from vlarisk.score.metrics import ranking_metrics, regression_metrics
from vlarisk.train.normalization import MIN_STD, feature_statistics

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------------- labels
action_values = st.one_of(
    st.floats(-3, 3, width=32, allow_subnormal=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5]),  # exact ties and zeros
)


@st.composite
def action_arrays(draw):
    steps = draw(st.integers(1, 70))
    return draw(hnp.arrays(np.float32, (steps, NUM_DIMENSIONS), elements=action_values))


@PROPERTY_SETTINGS
@given(actions=action_arrays(), success=st.booleans())
def test_heuristic_labels(actions, success):
    labels = heuristic_risk_labels(actions, success)
    steps = len(actions)
    assert labels.shape == (steps, NUM_DIMENSIONS) and labels.dtype == np.float32
    assert np.all((labels >= 0) & (labels <= 1))
    if success:
        assert not labels.any()
        return
    window = min(steps, failure_window(steps))
    assert failure_window(steps) == max(10, int(0.2 * steps))
    start = steps - window
    magnitude = np.abs(actions)
    np.testing.assert_allclose(labels[:start], np.clip(0.1 * magnitude[:start], 0, 1), rtol=1e-6)
    inside, size = labels[start:], magnitude[start:]
    for dim in range(NUM_DIMENSIONS):
        order = np.argsort(size[:, dim], kind="stable")
        assert np.all(np.diff(inside[order, dim]) >= 0), "risk must not fall as |action| grows"
        peak = size[:, dim].max()
        if peak > 0:
            assert inside[np.argmax(size[:, dim]), dim] == pytest.approx(1.0)
            np.testing.assert_allclose(inside[:, dim], size[:, dim] / peak, rtol=1e-6)
        else:
            assert not inside[:, dim].any()


# ----------------------------------------------------------------------------------- splits
@st.composite
def rollout_tables(draw):
    successes, failures = draw(st.integers(0, 25)), draw(st.integers(0, 25))
    tasks = draw(st.integers(1, 4))
    outcomes = [True] * successes + [False] * failures
    ids = draw(st.permutations(range(1000, 1000 + len(outcomes)))) if outcomes else []
    return [
        {"rollout_id": rid, "success": outcome, "task": str(draw(st.integers(0, tasks - 1)))}
        for rid, outcome in zip(ids, outcomes, strict=True)
    ]


fractions = st.floats(0, 0.45).map(lambda v: round(v, 3))


def expected_sizes(count: int, val: float, test: float) -> dict[str, int]:
    n_test, n_val = int(round(test * count)), int(round(val * count))
    return {"train": count - n_test - n_val, "val": n_val, "test": n_test}


@PROPERTY_SETTINGS
@given(rollouts=rollout_tables(), val=fractions, test=fractions, seed=st.integers(0, 2**32 - 1))
def test_split_is_disjoint_complete_stratified_and_seeded(rollouts, val, test, seed):
    sizes = {outcome: expected_sizes(sum(r["success"] == outcome for r in rollouts), val, test) for outcome in (True, False)}
    feasible = all(sizes[outcome][name] > 0 for outcome in (True, False) for name in SPLIT_NAMES)
    if not feasible:
        with pytest.raises(InputError, match="too few rollouts for the requested fractions"):
            plain_split(rollouts, val, test, seed)
        return
    split = plain_split(rollouts, val, test, seed)
    ids = [i for name in SPLIT_NAMES for i in split[name]]
    assert len(ids) == len(set(ids)), "a rollout in two splits"
    assert set(ids) == {r["rollout_id"] for r in rollouts}, "a rollout in no split"
    outcome = {r["rollout_id"]: r["success"] for r in rollouts}
    for name in SPLIT_NAMES:
        for kind in (True, False):
            assert sum(outcome[i] == kind for i in split[name]) == sizes[kind][name]
    assert split == plain_split(list(reversed(rollouts)), val, test, seed), "must not depend on the table's order"
    assert split == plain_split(rollouts, val, test, seed)


@PROPERTY_SETTINGS
@given(rollouts=rollout_tables(), held=st.sets(st.sampled_from(["0", "1", "2", "3"]), min_size=1, max_size=2), seed=st.integers(0, 100))
def test_held_out_tasks_go_only_to_the_test_split(rollouts, held, seed):
    present = {r["task"] for r in rollouts}
    assume(held <= present)
    try:
        split = split_rollouts(rollouts, 0.2, 0.1, seed, held_out_tasks=held)
    except InputError as exc:
        assert "too few rollouts" in str(exc) or "are all the tasks" in str(exc)
        return
    task = {r["rollout_id"]: r["task"] for r in rollouts}
    if held:  # every rollout of a held-out task is in test_unseen, and no rollout of another task is
        assert set(split["test_unseen"]) == {i for i, t in task.items() if t in held}
    assert not held & {task[i] for i in split["train"] + split["val"] + split.get("test_seen", [])}


# ----------------------------------------------------------------------------------- normalisation
@st.composite
def hidden_and_rows(draw):
    count, dim = draw(st.integers(1, 40)), draw(st.integers(1, 6))
    # multiples of 1/8: sums are exact enough that a constant column has variance exactly 0
    hidden = draw(hnp.arrays(np.float32, (count, dim), elements=st.integers(-400, 400).map(lambda v: v / 8)))
    constant = draw(st.lists(st.integers(0, dim - 1), max_size=dim))
    hidden[:, constant] = draw(st.integers(-400, 400)) / 8
    rows = np.array(sorted(draw(st.sets(st.integers(0, count - 1), min_size=1))), dtype=np.int64)
    return hidden, rows


@PROPERTY_SETTINGS
@given(data=hidden_and_rows(), chunk=st.integers(1, 9))
def test_feature_statistics_equal_numpy(data, chunk):
    hidden, rows = data
    mean, std = feature_statistics(hidden, rows, chunk_rows=chunk)
    chosen = hidden[rows].astype(np.float64)
    expected_std = chosen.std(axis=0)
    expected_std[expected_std < MIN_STD] = 1.0
    np.testing.assert_allclose(mean, chosen.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5, atol=1e-6)
    constant = np.ptp(chosen, axis=0) == 0
    assert np.all(std[constant] == 1.0)
    assert mean.dtype == std.dtype == np.float32


def test_feature_statistics_refuse_zero_rows():
    with pytest.raises(ValueError, match="zero training rows"):
        feature_statistics(np.zeros((3, 2), np.float32), np.array([], dtype=np.int64))


# ----------------------------------------------------------------------------------- metrics
@st.composite
def scored_split(draw):
    count = draw(st.integers(2, 60))
    # few distinct values: ties within predictions, within labels, and between them
    grid = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
    prediction = draw(hnp.arrays(np.float32, (count, NUM_DIMENSIONS), elements=st.one_of(grid, st.floats(0, 1, width=32))))
    target = draw(hnp.arrays(np.float32, (count, NUM_DIMENSIONS), elements=grid))
    train = draw(hnp.arrays(np.float32, (draw(st.integers(1, 20)), NUM_DIMENSIONS), elements=grid))
    return prediction, target, positive_label_cutoffs(train, draw(st.sampled_from([0.25, 0.5, 1.0])))


@PROPERTY_SETTINGS
@given(data=scored_split())
def test_metrics_equal_scikit_learn(data):
    prediction, target, label_cutoffs = data
    errors = regression_metrics(prediction, target)
    prediction, target = prediction.astype(np.float64), target.astype(np.float64)  # sklearn sums in the input dtype
    assert errors["mse"] == pytest.approx(mean_squared_error(target, prediction), rel=1e-9, abs=1e-12)
    assert errors["mae"] == pytest.approx(mean_absolute_error(target, prediction), rel=1e-9, abs=1e-12)
    assert errors["rmse"] == pytest.approx(np.sqrt(mean_squared_error(target, prediction)), rel=1e-9, abs=1e-12)
    ranking, counts, undefined = ranking_metrics(prediction, target, label_cutoffs)
    positives = binarize(target, label_cutoffs)
    for dim, name in enumerate(ACTION_DIMENSIONS):
        assert errors[f"mse_{name}"] == pytest.approx(mean_squared_error(target[:, dim], prediction[:, dim]), abs=1e-12)
        assert errors[f"mae_{name}"] == pytest.approx(mean_absolute_error(target[:, dim], prediction[:, dim]), abs=1e-12)
        column = positives[:, dim]
        assert counts[name] == column.sum()
        if 0 < column.sum() < len(column):
            assert ranking[f"auc_{name}"] == pytest.approx(roc_auc_score(column, prediction[:, dim]), abs=1e-12)
            assert ranking[f"ap_{name}"] == pytest.approx(average_precision_score(column, prediction[:, dim]), abs=1e-12)
            assert name not in undefined
        else:
            assert ranking[f"auc_{name}"] is None and ranking[f"ap_{name}"] is None
            assert undefined[name]
