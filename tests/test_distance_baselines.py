"""Cosine-kNN and Mahalanobis detectors against plain-loop references on small planted data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf, ledoit_wolf

import vlarisk.score.distance_baselines as distance_baselines
from vlarisk.data.dataset import StepStates
from vlarisk.score.distance_baselines import distance_scores


@pytest.fixture
def states():
    """300 distinct 6-D training states (successes near +1 on feature 0, failures near -1) and 50 to score."""
    rng = np.random.default_rng(0)
    success = rng.random(300) < 0.5
    hidden = rng.normal(size=(350, 6)).astype(np.float32)
    hidden[:300, 0] += np.where(success, 1.0, -1.0)
    return hidden, np.arange(300), success


def test_scores_match_a_plain_loop_reference(states, monkeypatch):
    monkeypatch.setattr(distance_baselines, "BLOCK_ROWS", 7)  # several blocks, a ragged last one
    hidden, train, success = states
    scored = np.arange(290, 350)
    result = distance_scores(hidden, train, success, scored, k=4)
    # reference: z-score with the training states' statistics, then loops
    mean, std = hidden[train].astype(np.float64).mean(axis=0), hidden[train].astype(np.float64).std(axis=0)
    z = (hidden.astype(np.float64) - mean) / std
    fit = LedoitWolf().fit(z[train][success])

    def mean_nearest(row, reference):
        distances = sorted(1 - z[row] @ z[r] / (np.linalg.norm(z[row]) * np.linalg.norm(z[r])) for r in reference)
        return sum(distances[:4]) / 4

    knn, maha = [], []
    for row in scored:
        knn.append(mean_nearest(row, train[success]) - mean_nearest(row, train[~success]))
        diff = z[row] - fit.location_
        maha.append(np.sqrt(diff @ fit.precision_ @ diff))
    assert result["knn"].shape == (60, 7) and (result["knn"] == result["knn"][:, :1]).all()
    np.testing.assert_allclose(result["knn"][:, 0], knn, atol=2e-4)
    np.testing.assert_allclose(result["mahalanobis"][:, 0], maha, rtol=2e-3)


def test_failure_like_states_score_higher(states):
    hidden, train, success = states
    probes = np.zeros((2, 6), np.float32)
    probes[0, 0], probes[1, 0] = 1.5, -1.5  # deep in the success cluster, deep in the failure one
    scores = distance_scores(np.concatenate([hidden, probes]), train, success, np.array([350, 351]), k=4)
    assert scores["knn"][1, 0] > 0 > scores["knn"][0, 0]
    assert scores["mahalanobis"][1, 0] > scores["mahalanobis"][0, 0]


def test_reference_states_are_distinct_capped_and_seeded():
    hidden = np.repeat(np.arange(40, dtype=np.float32)[:, None], 3, axis=1).repeat(2, axis=0)  # each state twice in a row
    rows = np.arange(80)
    assert len(distance_baselines.reference_states(hidden, rows, 1000, 0)) == 40
    capped = distance_baselines.reference_states(hidden, rows, 10, 0)
    assert len(capped) == 10 and np.array_equal(capped, distance_baselines.reference_states(hidden, rows, 10, 0))


def test_covariance_factor_is_scikit_learns_ledoit_wolf(monkeypatch):
    """More features than states (the 4096-D case, where shrinkage matters), the states read in several blocks."""
    monkeypatch.setattr(distance_baselines, "BLOCK_ROWS", 7)
    rng = np.random.default_rng(1)
    states = (rng.normal(size=(30, 4)) @ rng.normal(size=(4, 50)) + rng.normal(size=(30, 50))).astype(np.float32)
    covariance, shrinkage = ledoit_wolf(states.astype(np.float64))
    assert 0.05 < shrinkage < 0.95
    covariance[np.diag_indices_from(covariance)] += distance_baselines.COVARIANCE_RIDGE
    factor = distance_baselines._covariance_factor(states, states.mean(axis=0))
    assert factor.dtype == np.float32 and np.array_equal(factor, np.tril(factor))
    np.testing.assert_allclose(factor.astype(np.float64) @ factor.T, covariance, rtol=1e-5, atol=1e-5)


def test_standardiser_pools_the_states_in_float64(monkeypatch):
    monkeypatch.setattr(distance_baselines, "STATISTICS_ROWS", 7)
    rng = np.random.default_rng(2)
    successes, failures = (rng.normal(3.0, 2.0, size=(n, 5)).astype(np.float32) for n in (20, 9))
    failures[:, 4] = successes[:, 4] = 1.5  # a constant feature keeps a std of 1
    mean, std = distance_baselines._standardiser(successes, failures)
    pooled = np.concatenate([successes, failures]).astype(np.float64)
    np.testing.assert_allclose(mean, pooled.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, np.where(pooled.std(axis=0) > 1e-6, pooled.std(axis=0), 1.0), rtol=1e-6)


def test_a_state_repeated_over_steps_scores_as_its_steps(states):
    """A per-step view of distinct states (each state over several steps) gives the per-step array's scores."""
    hidden, train, success = states
    index = np.repeat(np.arange(350), 3)
    steps = StepStates(hidden, index)
    step_train, step_success = np.arange(900), np.repeat(success, 3)
    scored = np.arange(870, 1050, 2)
    viewed = distance_scores(steps, step_train, step_success, scored, k=4)
    dense = distance_scores(hidden[index], step_train, step_success, scored, k=4)
    for name in ("knn", "mahalanobis"):
        np.testing.assert_allclose(viewed[name], dense[name], rtol=1e-5, atol=1e-6)
