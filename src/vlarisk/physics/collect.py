"""Collect a physics source: episodes in worker processes, counterfactual labels for a capped
number of failures per task, and the rollout pickles the prepare step reads.

``episodes`` is the total, split evenly over the tasks. Every failure up to
``max_labelled_failures`` per task (in episode order) gets ``t*`` and blame; failures beyond the
cap are left out of the failure pickle (their labels would be unknown) and counted in
``collection.json``, which also records each written failure's fault, ``t*`` and blame.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import atomic_path, write_json
from vlarisk.physics import labels as deviation_rule
from vlarisk.physics.env import ABSENT_DIMENSIONS, TaskEnv, to_seven_dims
from vlarisk.physics.episodes import BLAME_WINDOW, Episode, blame, point_of_no_return, run_episode
from vlarisk.physics.perturbations import draw_perturbation
from vlarisk.physics.policy import MlpPolicy, load_policy

SUCCESS_FILE, FAILURE_FILE, COLLECTION_FILE, POLICY_FILE = "success_rollouts.pkl", "failure_rollouts.pkl", "collection.json", "policy.pt"


@dataclass(frozen=True)
class CollectionSettings:
    """What to collect: tasks, total episodes, seed, horizon, fault mix, the labelling cap, workers (the
    ``collect`` block's values, whose defaults are :class:`vlarisk.core.settings.CollectSettings`')."""

    tasks: tuple[str, ...]
    episodes: int
    seed: int
    horizon: int
    mix: dict
    max_labelled_failures: int
    workers: int


def episode_seed(seed: int, task_index: int, episode: int) -> int:
    """The seed of one episode: independent streams per collection seed, task and episode."""
    return int(np.random.SeedSequence([seed, task_index, episode]).generate_state(1)[0])


_WORKER: dict = {}


def _init_worker(policy_checkpoint: dict) -> None:
    """Load the policy once per worker process; environments are built on first use per task."""
    threadpool_limits(1)  # one BLAS thread per worker: the workers already fill the cores
    _WORKER["policy"] = MlpPolicy(policy_checkpoint)
    _WORKER["envs"] = {}


def _env(task: str) -> TaskEnv:
    if task not in _WORKER["envs"]:
        _WORKER["envs"][task] = TaskEnv(task)
    return _WORKER["envs"][task]


def _episode(task: str, seed: int, horizon: int, mix: dict) -> Episode:
    return run_episode(_env(task), _WORKER["policy"], seed, horizon, draw_perturbation(seed, horizon, mix))


def _run(job: tuple) -> Episode:
    """Worker: one episode under the policy."""
    return _episode(*job)


def _label(job: tuple) -> tuple[int, list]:
    """Worker: ``t*`` and blame of one failed episode (re-run from its seed, then replayed)."""
    episode = _episode(*job)
    env = _env(episode.task)
    t_star = point_of_no_return(env, episode)
    return t_star, blame(env, _WORKER["policy"], episode, t_star)


def _pool_map(function, jobs: list, checkpoint: dict, workers: int) -> list:
    """``function`` over ``jobs`` in ``workers`` spawned processes (in this process when 1), order kept."""
    if workers <= 1:
        _init_worker(checkpoint)
        return [function(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(checkpoint,)) as pool:
        return list(pool.map(function, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def rollout_record(episode: Episode, deviations: np.ndarray, labels: np.ndarray, t_star: int | None, blame_vector: list | None) -> dict:
    """One rollout in the pickle format :mod:`vlarisk.data.rollouts` reads, with the physics fields beside."""
    steps = [
        {
            "action": to_seven_dims(episode.actions[i]),
            "hidden_state": episode.hidden[i],
            "per_dim_risk": labels[i],
            "executed_action": episode.executed[i],
            "expert_action": episode.expert_actions[i],
            "deviation": deviations[i],
            "observation": episode.observations[i],
        }
        for i in range(episode.num_steps)
    ]
    return {
        "task_id": episode.task,
        "success": episode.success,
        "seed": episode.seed,
        "horizon": episode.horizon,
        "perturbation": episode.perturbation.record(),
        "t_star": t_star,
        "blame": blame_vector,
        "absent_dimensions": [ACTION_DIMENSIONS[d] for d in ABSENT_DIMENSIONS],
        "steps": steps,
    }


def collect(settings: CollectionSettings, checkpoint: dict, out_dir: str | os.PathLike, log=print) -> dict:
    """Collect, label and write ``success_rollouts.pkl``, ``failure_rollouts.pkl`` and ``collection.json`` under ``out_dir``."""
    started = time.perf_counter()
    tasks = list(settings.tasks)
    if list(checkpoint["tasks"]) != tasks:
        raise InputError(f"--policy: the policy was trained on tasks {list(checkpoint['tasks'])}, not {tasks}")
    per_task = [settings.episodes // len(tasks) + (i < settings.episodes % len(tasks)) for i in range(len(tasks))]
    jobs = [
        (task, episode_seed(settings.seed, t, e), settings.horizon, settings.mix)
        for t, task in enumerate(tasks)
        for e in range(per_task[t])
    ]
    episodes = _pool_map(_run, jobs, checkpoint, settings.workers)
    log(f"ran {len(episodes)} episodes in {time.perf_counter() - started:.1f} s")
    to_label = _capped_failures(episodes, settings.max_labelled_failures)
    labelled = dict(zip(to_label, _pool_map(_label, [jobs[i] for i in to_label], checkpoint, settings.workers), strict=True))
    log(f"labelled {len(labelled)} failures (t* and blame) in {time.perf_counter() - started:.1f} s")
    summary = write_collection(settings, episodes, labelled, out_dir)
    summary["wall_seconds"] = time.perf_counter() - started
    write_json(Path(out_dir) / COLLECTION_FILE, summary)
    return summary


def _capped_failures(episodes: list[Episode], cap: int) -> list[int]:
    """Indices of the failures to label: the first ``cap`` of each task, in episode order."""
    chosen, counts = [], {}
    for index, episode in enumerate(episodes):
        if not episode.success and counts.get(episode.task, 0) < cap:
            counts[episode.task] = counts.get(episode.task, 0) + 1
            chosen.append(index)
    return chosen


def write_collection(settings: CollectionSettings, episodes: list[Episode], labelled: dict, out_dir) -> dict:
    """Label every kept rollout, write both pickles, and return the collection's summary."""
    deviations = [deviation_rule.deviation(e.actions, e.expert_actions) for e in episodes]
    thresholds = {}
    for task in settings.tasks:
        own = [d for d, e in zip(deviations, episodes, strict=True) if e.success and e.task == task]
        thresholds[task] = deviation_rule.deviation_thresholds(own or [d for d, e in zip(deviations, episodes, strict=True) if e.success])
    successes, failures, records = [], [], []
    for index, episode in enumerate(episodes):
        if not episode.success and index not in labelled:
            continue
        t_star, blame_vector = labelled.get(index, (None, None))
        labels = deviation_rule.deviation_labels(deviations[index], thresholds[episode.task], t_star, BLAME_WINDOW)
        rollout = rollout_record(episode, deviations[index], labels, t_star, blame_vector)
        if episode.success:
            successes.append(rollout)
        else:
            records.append({"index": len(failures), **{k: rollout[k] for k in ("task_id", "seed", "perturbation", "t_star", "blame")}})
            failures.append(rollout)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name, rollouts in ((SUCCESS_FILE, successes), (FAILURE_FILE, failures)):
        with atomic_path(Path(out_dir) / name) as tmp, open(tmp, "wb") as handle:
            pickle.dump(rollouts, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "settings": {**asdict(settings), "tasks": list(settings.tasks)},
        "per_task": {task: _task_counts(task, episodes, labelled) for task in settings.tasks},
        "failure_rate": float(np.mean([not e.success for e in episodes])),
        "deviation_thresholds": {task: dict(zip(("x", "y", "z", "gripper"), map(float, t), strict=True)) for task, t in thresholds.items()},
        "blame_window": BLAME_WINDOW,
        "absent_dimensions": [ACTION_DIMENSIONS[d] for d in ABSENT_DIMENSIONS],
        "failures": records,
    }


def _task_counts(task: str, episodes: list[Episode], labelled: dict) -> dict:
    """Episodes, failures and the failures labelled or left out for one task."""
    failed = [i for i, e in enumerate(episodes) if e.task == task and not e.success]
    count = sum(e.task == task for e in episodes)
    kept = sum(i in labelled for i in failed)
    return {
        "episodes": count,
        "failures": len(failed),
        "failure_rate": len(failed) / max(count, 1),
        "labelled_failures": kept,
        "failures_left_out": len(failed) - kept,
    }


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A policy checkpoint, with a one-line error naming the file when it is not one."""
    try:
        checkpoint = load_policy(path)
    except (OSError, RuntimeError, pickle.UnpicklingError) as error:
        raise InputError(f"{path}: not a readable policy checkpoint ({type(error).__name__})") from None
    missing = {"tasks", "state_dict", "obs_mean", "obs_std"} - set(checkpoint)
    if missing:
        raise InputError(f"{path}: not a policy checkpoint (missing {sorted(missing)})")
    return checkpoint
