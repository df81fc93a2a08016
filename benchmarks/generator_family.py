"""A family of synthetic sources, each shaped like one way real hidden states and labels come.

A training or evaluation default is only trusted once it learns on every member, measured against
the class-balanced logistic baseline on the same rollouts. :func:`score_member` runs one member
through the real path (rollout pickles, preparation, a split by rollout, training, evaluation).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from vlarisk.data.splits import DEFAULTS as SPLIT_DEFAULTS
from vlarisk.data.synthetic import SimulationSpec

EVEN_LENGTHS = {"success_steps": (30, 150), "failure_steps": (30, 150)}
EMBEDDED_STRENGTH = [3.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.0]
ONSET = (0.1, 0.5)  # relative onset times of the members with a labelled failure onset

GENERATOR_FAMILY: dict[str, SimulationSpec] = {
    # The embedded default's labelled source: actions carry no risk, lengths do not tell outcomes
    # apart, and the strong shifts of roll and yaw need a nonlinearity: shortcuts and a linear
    # read-out fall short of what the model can learn. Failures drift towards failure from their
    # first step, so an alarm can come before the shortest rollout of a task ends.
    "embedded": SimulationSpec(
        hidden_dim=64,
        **EVEN_LENGTHS,
        signal_strength=EMBEDDED_STRENGTH,
        failure_signal_strength=1.0,
        failure_drift=3.0,
        action_coupling=0.0,
        nonlinear_dimensions=[3, 5],
        seed=0,
    ),
    # Heuristic labels (no per_dim_risk), dense: about 10% of steps lie in a failure window.
    "heuristic_dense": SimulationSpec(hidden_dim=96, with_labels=False, layout="list", seed=1),
    # 0.5% risky steps: few failures, short risk windows.
    "sparse": SimulationSpec(
        hidden_dim=128,
        num_success=900,
        num_failure=90,
        **EVEN_LENGTHS,
        risk_window_fraction=0.08,
        min_risk_window=4,
        action_coupling=0.3,
        seed=2,
    ),
    # Massive-activation features, log-normal feature scales, sparse labels, partly nonlinear signals.
    "massive_uneven": SimulationSpec(
        hidden_dim=512,
        num_success=100,
        num_failure=129,
        **EVEN_LENGTHS,
        risk_window_fraction=0.1,
        min_risk_window=5,
        action_coupling=0.5,
        nonlinear_dimensions=[0, 5],
        massive_features=4,
        feature_scale_sigma=1.0,
        seed=3,
    ),
    # Most dimensions' signals have a random sign per rollout: a linear read-out cannot see them.
    "nonlinear": SimulationSpec(hidden_dim=128, **EVEN_LENGTHS, action_coupling=0.3, nonlinear_dimensions=[1, 2, 4, 6], seed=4),
    # Weak signals: one noise std or so along each direction.
    "weak": SimulationSpec(
        hidden_dim=128, signal_strength=[1.2] * 7, failure_signal_strength=0.6, **EVEN_LENGTHS, action_coupling=0.3, seed=5
    ),
    # Directions that are partly task-specific.
    "task_specific": SimulationSpec(hidden_dim=128, num_tasks=6, task_specific=0.5, **EVEN_LENGTHS, action_coupling=0.3, seed=6),
    # Failures that announce themselves: a drift along the failure-progress direction from the first
    # step, so rollout-level detection before the shortest rollout ends is possible.
    "precursor": SimulationSpec(hidden_dim=128, **EVEN_LENGTHS, action_coupling=0.3, failure_drift=3.0, seed=9),
    # A labelled failure onset at a random relative time (10-50% of the episode): the risk label
    # ramps from it, so an alarm before the horizon (a task's shortest rollout, ~30 steps) has
    # labelled steps to learn from in the failures whose onset comes that early.
    "onset": SimulationSpec(hidden_dim=128, **EVEN_LENGTHS, action_coupling=0.3, failure_onset=ONSET, seed=10),
    # The real length confound: failures run to the step limit, successes stop early (and the onset
    # is labelled): episode length alone separates the outcomes once the horizon is passed.
    "length_confound": SimulationSpec(
        hidden_dim=128, success_steps=(30, 120), failure_steps=150, action_coupling=0.3, failure_onset=ONSET, seed=11
    ),
    # One hidden state per step (no action chunks).
    "chunk1": SimulationSpec(hidden_dim=64, chunk_size=1, **EVEN_LENGTHS, action_coupling=0.3, seed=7),
    # OpenVLA's width, with massive activations and uneven scales.
    "wide_4096": SimulationSpec(
        hidden_dim=4096,
        num_success=70,
        num_failure=110,
        success_steps=(40, 56),
        failure_steps=(40, 56),
        action_coupling=0.3,
        massive_features=6,
        feature_scale_sigma=0.5,
        seed=8,
    ),
}


def scaled_member(name: str, rollouts: float = 1.0, hidden_dim: int | None = None) -> SimulationSpec:
    """A member with ``rollouts`` times its rollouts and, optionally, another hidden size."""
    spec = GENERATOR_FAMILY[name]
    size = {"num_success": max(2, round(spec.num_success * rollouts)), "num_failure": max(2, round(spec.num_failure * rollouts))}
    return replace(spec, **size, hidden_dim=hidden_dim or spec.hidden_dim)


def prepare_member(spec: SimulationSpec, workdir: str | os.PathLike) -> tuple[Path, Path]:
    """Simulate ``spec`` into ``workdir`` and prepare its dataset: ``(dataset, planting record)``.
    Several trainings (seeds, losses) can then share one simulation."""
    from vlarisk.data.prepare import prepare_dataset
    from vlarisk.data.synthetic import write_synthetic_source

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [workdir / name for name in ("success_rollouts.pkl", "failure_rollouts.pkl", "planting.npz")]
    write_synthetic_source(spec, *paths)
    prepare_dataset(paths[0], paths[1], workdir / "dataset.vlarisk")
    return workdir / "dataset.vlarisk", paths[2]


def score_prepared(
    dataset: str | os.PathLike,
    planting: str | os.PathLike,
    workdir: str | os.PathLike,
    config,
    test_fraction: float = 0.3,
    log=lambda message: None,
    calibration_tasks=(),
    held_out_tasks=SPLIT_DEFAULTS["held_out_tasks"],
    *,
    unseen_task_fraction: float = SPLIT_DEFAULTS["unseen_task_fraction"],
    task_split: int = 0,
) -> dict:
    """Split a prepared member by rollout (seeded by ``config.seed``), train with ``config`` into
    ``workdir`` and evaluate on held-out rollouts (see :func:`score_member`)."""
    from vlarisk.score.evaluation import evaluate
    from vlarisk.train.sources import open_source
    from vlarisk.train.training import Trainer

    workdir = Path(workdir)
    source = open_source(
        workdir.name,
        str(dataset),
        planting_path=str(planting),
        test_fraction=test_fraction,
        seed=config.seed,
        calibration_tasks=calibration_tasks,
        held_out_tasks=held_out_tasks,
        unseen_task_fraction=unseen_task_fraction,
        task_split=task_split,
    )
    outcome = Trainer([source], config, workdir / "model", workdir.name, log=log).fit()
    report = evaluate(outcome.model, source, outcome.label_cutoffs[source.name], outcome.device)
    report["history"] = outcome.history
    report["best_epoch"] = outcome.best_epoch
    return report


def score_member(spec: SimulationSpec, workdir: str | os.PathLike, config, **split_options) -> dict:
    """Simulate ``spec``, prepare, then :func:`score_prepared` (``split_options``: its keyword arguments).

    The split is the project's default (``held_out_tasks="auto"``: unseen tasks join the test set
    when there are at least 5 tasks, ``unseen_task_fraction`` of them; ``task_split`` picks one of
    several leave-tasks-out splits); ``held_out_tasks=()`` tests on held-out rollouts of the
    training tasks only. Returns the evaluation report (the model's metrics with the baselines beside them), with the
    training history under ``history``.
    """
    dataset, planting = prepare_member(spec, workdir)
    return score_prepared(dataset, planting, workdir, config, **split_options)
