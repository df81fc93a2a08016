"""Cosine-kNN and Mahalanobis detectors against plain-loop references on small planted data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

import vlarisk.score.distance_baselines as distance_baselines
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
