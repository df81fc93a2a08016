"""The physics source's rules on hand-made cases, without the simulator: deviation labels, the
point of no return's bisection, counterfactual blame in a toy world, attribution and its interval."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from vlarisk.core.errors import InputError
from vlarisk.core.intervals import clopper_pearson
from vlarisk.physics import env as physics_env
from vlarisk.physics.episodes import Episode, bisect_first_failure, blame, point_of_no_return
from vlarisk.physics.labels import deviation_labels
from vlarisk.physics.perturbations import draw_perturbation
from vlarisk.report.attribution_paper import attribution_table
from vlarisk.score import attribution
from vlarisk.workflow.planning import Plan


def test_deviation_labels_ramp_into_t_star_where_a_dimension_deviates():
    deviations = np.zeros((10, 4))
    deviations[[3, 5, 6, 8], 0] = 1.0  # x deviates at steps 3, 5, 6 and 8
    deviations[6, 3] = 1.0  # the gripper at step 6
    labels = deviation_labels(deviations, thresholds=np.full(4, 0.5), t_star=6, window=2)
    expected = np.zeros((10, 7), dtype=np.float32)
    expected[5, 0] = 2 / 3  # window [4, 6]: ramp 1/3, 2/3, 1; step 3 is before it, step 8 after t*
    expected[6, 0] = expected[6, 6] = 1.0
    np.testing.assert_allclose(labels, expected, rtol=1e-6)
    assert not labels[:, 3:6].any()  # rotations: absent, never labelled


def test_successes_get_no_deviation_label():
    assert not deviation_labels(np.ones((5, 4)), np.zeros(4), t_star=None, window=2).any()


@pytest.mark.parametrize("first_failure", [0, 1, 7, 29, 30])
def test_bisection_finds_the_first_unrescued_step(first_failure):
    calls = []

    def rescued(step):
        calls.append(step)
        return step < first_failure

    assert bisect_first_failure(rescued, last=30) == first_failure
    assert len(calls) <= 7  # log2(30) + the check at 0


class ToyWorld:
    """A 4-D point that must reach x >= 1 within the horizon; the expert pushes +x, and solved
    once x >= 1 (a stand-in for TaskEnv: reset, step, expert_action, task)."""

    task = "toy"

    def reset(self, seed):
        self.position = np.zeros(4)
        return np.concatenate([self.position, np.zeros(35)])

    def step(self, action):
        self.position = self.position + 0.125 * np.asarray(action)
        return np.concatenate([self.position, np.zeros(35)]), bool(self.position[0] >= 1.0)

    def expert_action(self, observation):
        return np.array([1.0, 0.0, 0.0, 0.0])


class WrongWayPolicy:
    """Pushes -x (the fault) and +y, +z, opens the gripper: only x matters for the toy task."""

    def act(self, observation, task):
        return np.array([-1.0, 1.0, 1.0, 1.0]), np.zeros(2, dtype=np.float32)


def toy_failure(horizon=30):
    episode = Episode("toy", 0, horizon, draw_perturbation(0, horizon, {"none": 1}))
    episode.executed = [np.array([-1.0, 1.0, 1.0, 1.0])] * horizon
    return episode


def test_point_of_no_return_and_blame_in_a_toy_world():
    world, episode = ToyWorld(), toy_failure()
    # After k steps at -x the expert needs 8 + k steps (steps of 1/8, exact in binary): it rescues while k + 8 + k <= 30.
    t_star = point_of_no_return(world, episode)
    assert t_star == 12
    # From t* - 20 = 0 only handing x to the expert rescues; y, z and the gripper never matter.
    assert blame(world, WrongWayPolicy(), episode, t_star, window=20) == [1, 0, 0, None, None, None, 0]
    # From t* itself nothing can rescue it any more.
    assert blame(world, WrongWayPolicy(), episode, t_star, window=0) == [0, 0, 0, None, None, None, 0]


def test_a_missing_simulator_names_the_extra(monkeypatch):
    def missing(name, *args):
        error = ImportError(f"No module named {name!r}")
        error.name = name
        raise error

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(InputError) as raised:
        physics_env.require_simulator()
    message = str(raised.value)
    assert 'pip install -e ".[sim]"' in message and "\n" not in message


def test_riskiest_dimension_ranks_each_dimension_among_successes():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 7)) * np.array([1, 1, 100, 1, 1, 1, 1])  # z on a far larger scale
    window = np.zeros((5, 7))
    window[:, 1] = 2.0  # y: about the 98th percentile of its successes
    window[:, 2] = 50.0  # z: larger in value, but only about the 69th percentile of its own
    expected_rank = {d: np.mean([np.mean(reference[:, d] <= value) for value in window[:, d]]) for d in (0, 1, 2, 6)}
    assert max(expected_rank, key=expected_rank.get) == 1
    assert attribution.riskiest_dimension(window, reference) == 1


def test_riskiest_dimension_skips_unscored_dimensions():
    reference = np.zeros((10, 7))
    reference[:, 6] = np.nan
    window = np.full((2, 7), np.nan)
    window[:, 0] = 1.0
    assert attribution.riskiest_dimension(window, reference) == 0


@pytest.mark.parametrize(
    ("hits", "trials", "low", "high"),
    [(0, 10, 0.0, 1 - 0.025 ** (1 / 10)), (10, 10, 0.025 ** (1 / 10), 1.0), (5, 10, 0.18709, 0.81291)],
)
def test_clopper_pearson_interval(hits, trials, low, high):
    np.testing.assert_allclose(clopper_pearson(hits, trials), [low, high], atol=1e-5)  # the one attribution uses


def test_accuracy_without_cases_is_undefined_not_zero():
    block = attribution.accuracy_block([], [])
    assert block["accuracy"] is None and block["undefined"]


def test_a_collected_source_is_planned_from_its_collect_block():
    from test_planning import load  # the config as the Snakefile sees it

    plan = Plan(load())
    assert plan.is_collected("physics_pick_place") and not plan.is_simulated("physics_pick_place")
    assert plan.rollout_files("physics_pick_place") == {
        "success": "results/physics/physics_pick_place/success_rollouts.pkl",
        "failure": "results/physics/physics_pick_place/failure_rollouts.pkl",
    }
    assert plan.has_provided_labels("physics_pick_place") and plan.planting_file("physics_pick_place") == {}
    flags = plan.collect_flags("physics_pick_place")
    assert flags.startswith(plan.policy_flags("physics_pick_place"))
    assert "--tasks pick-place-v3" in flags and "--episodes 120" in flags and "--episodes" not in plan.policy_flags("physics_pick_place")


def test_the_attribution_table_has_a_row_per_scorer_and_skips_other_sources(tmp_path):
    block = {"accuracy": 0.5, "n": 4, "hits": 2, "ci95": [0.07, 0.93], "by_axis": {"x": {"n": 4, "accuracy": 0.5}}}
    physics = {"attribution": {**block, "chance": 0.25, "baselines": {"logistic": {**block, "accuracy": 0.25}, "blame_labels": block}}}
    (tmp_path / "physics.json").write_text(json.dumps(physics))
    (tmp_path / "synthetic.json").write_text(json.dumps({"test_metrics": {}}))
    table = attribution_table({"physics": str(tmp_path / "physics.json"), "synthetic": str(tmp_path / "synthetic.json")})
    assert [row.labels for row in table.rows] == [("physics", "model"), ("physics", "logistic regression"), ("physics", "blame labels")]
    assert [row.cells[0].mean for row in table.rows] == [0.5, 0.25, 0.5]
    assert table.rows[0].cells[4].mean == 0.25 and table.rows[0].cells[6].mean is None  # chance; y has no rollout


def test_attribution_counts_each_biased_failure_once_per_test_set():
    """Two perception-bias failures (x: seen task, z: unseen task), a noise failure and a success,
    four steps each, t* = 3: the window is steps 0-2. The model's x column peaks on the first
    failure's window and its y column on the second's; expected values are worked out by hand."""
    rollout = np.repeat(np.arange(4), 4)
    steps = np.tile(np.arange(4), 4)
    dataset = SimpleNamespace(
        arrays={"rollout_id": rollout, "step_index": steps},
        metadata={
            "rollouts": [
                {"rollout_id": i, "file": f, "index": j}
                for i, (f, j) in enumerate([("success", 0), ("failure", 0), ("failure", 1), ("failure", 2)])
            ]
        },
    )
    bias = {"kind": "perception_bias", "magnitude": 0.03, "start": 0}
    collection = {
        "failures": [
            {"index": 0, "perturbation": {**bias, "axis": "x"}, "t_star": 3, "blame": [1, 0, 0, None, None, None, 0]},
            {"index": 1, "perturbation": {**bias, "axis": "z"}, "t_star": 3, "blame": [0, 0, 0, None, None, None, 0]},
            {
                "index": 2,
                "perturbation": {"kind": "action_noise", "axis": None, "magnitude": 0.5, "start": 0},
                "t_star": 3,
                "blame": [1, 0, 0, None, None, None, 0],
            },
        ]
    }
    scores = np.zeros((16, 7))
    scores[4:7, 0] = 1.0  # rollout 1 (x-biased): x stands out -> a hit
    scores[8:11, 1] = 1.0  # rollout 2 (z-biased): y stands out -> a miss
    reference = np.random.default_rng(0).uniform(0, 0.5, size=(50, 7))
    rows = np.arange(16)
    report = attribution.attribution_report(
        dataset, rows, {"model": (scores, reference)}, collection, {"test_seen": rows[:8], "test_unseen": rows[8:]}
    )
    assert (report["n_rollouts"], report["hits"], report["accuracy"]) == (2, 1, 0.5)
    assert report["by_axis"] == {"x": {"n": 1, "accuracy": 1.0}, "y": {"n": 0, "accuracy": None}, "z": {"n": 1, "accuracy": 0.0}}
    assert report["baselines"]["blame_labels"]["accuracy"] == 0.5  # blamed x on the x-biased one, nothing on the z-biased one
    seen, unseen = report["by_test_set"]["test_seen"], report["by_test_set"]["test_unseen"]
    assert (seen["n_rollouts"], seen["accuracy"], unseen["n_rollouts"], unseen["accuracy"]) == (1, 1.0, 1, 0.0)
