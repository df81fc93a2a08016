"""The generator's labelled failure onset and the length-confound member, checked rollout by rollout."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from generator_family import GENERATOR_FAMILY

from vlarisk.data.synthetic import RolloutSimulator, SimulationSpec

ONSET = (0.2, 0.8)
SMALL = dict(hidden_dim=16, num_tasks=3, success_steps=(30, 60), failure_steps=(60, 120), action_coupling=0.0)


def _labels(rollout) -> np.ndarray:
    return np.array([step["labels"]["per_dim_risk"] for step in rollout["steps"]])


def _failures(spec: SimulationSpec, count: int = 60) -> tuple[RolloutSimulator, list[dict]]:
    simulator = RolloutSimulator(spec)
    return simulator, [simulator.rollout(False) for _ in range(count)]


def test_each_failure_is_labelled_from_an_onset_drawn_in_the_range():
    _, failures = _failures(SimulationSpec(**SMALL, failure_onset=ONSET, seed=0))
    relative = []
    for rollout in failures:
        labels, length = _labels(rollout), len(rollout["steps"])
        onset = next(t for t in range(length) if labels[t].max() > 0)  # first labelled step, by a plain scan
        assert ONSET[0] * length - 1 < onset < ONSET[1] * length
        for d in rollout["culprit_dimensions"]:
            ramp = labels[onset:, d]
            assert np.all(np.diff(ramp) > 0) and ramp[-1] == pytest.approx(1.0)
        relative.append(onset / length)
    # the onset is drawn per rollout: it spreads over the range rather than sitting at one point
    assert np.ptp(relative) > 0.4 and 0.4 < np.mean(relative) < 0.6


def test_the_state_moves_along_the_culprit_direction_from_the_onset():
    simulator, failures = _failures(SimulationSpec(**SMALL, failure_onset=ONSET, seed=1), count=30)
    directions = simulator.recorded_directions()
    gaps = []
    for rollout in failures:
        labels, hidden = _labels(rollout), np.array(rollout["features"])
        onset = int(np.flatnonzero(labels.max(axis=1) > 0)[0])
        d = rollout["culprit_dimensions"][0]
        projection = hidden @ directions[d]
        gaps.append(projection[onset + (len(projection) - onset) // 2 :].mean() - projection[: max(onset - 8, 1)].mean())
    assert np.mean(gaps) > 1.0  # strength 3: the second half of the ramp sits well above the pre-onset states


def test_without_an_onset_the_risk_window_is_the_last_fraction_of_the_failure():
    spec = SimulationSpec(**SMALL, seed=2)
    _, failures = _failures(spec, count=20)
    for rollout in failures:
        length = len(rollout["steps"])
        window = max(spec.min_risk_window, int(spec.risk_window_fraction * length))
        assert int(np.flatnonzero(_labels(rollout).max(axis=1) > 0)[0]) == length - window


def test_successes_carry_no_risk_with_an_onset():
    simulator = RolloutSimulator(SimulationSpec(**SMALL, failure_onset=ONSET, seed=3))
    assert all(_labels(simulator.rollout(True)).max() == 0 for _ in range(10))


def test_the_length_confound_member_runs_failures_to_the_step_limit():
    spec = GENERATOR_FAMILY["length_confound"]
    simulator = RolloutSimulator(replace(spec, hidden_dim=16))
    failures = [len(simulator.rollout(False)["steps"]) for _ in range(10)]
    successes = [len(simulator.rollout(True)["steps"]) for _ in range(10)]
    assert set(failures) == {spec.failure_steps[1]} and max(successes) < min(failures)


@pytest.mark.parametrize("onset", [(0.8, 0.2), (0.1, 1.0), (-0.1, 0.5)])
def test_an_onset_outside_the_episode_is_refused(onset):
    with pytest.raises(ValueError, match="failure_onset"):
        SimulationSpec(**SMALL, failure_onset=onset)
