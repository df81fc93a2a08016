"""MetaWorld v3 tasks and their scripted experts, seeded and reproducible, behind one small wrapper.

The physics source's modules: ``physics_env`` (tasks, experts, the 4-D arm's 7-D layout),
``physics_policy`` (demos, behaviour cloning), ``physics_perturbations`` (the fault mix),
``physics_episodes`` (an episode, exact replay, point of no return, blame), ``physics_labels``
(deviation labels), ``physics_collect`` (parallel collection into the rollout pickle format) and
``collect_command`` (``vlarisk-collect``); docs/physics-source.md describes every rule. The
simulator is an optional extra, imported on first use (:func:`require_simulator`).
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from functools import lru_cache

import numpy as np

from vlarisk.core.errors import InputError
from vlarisk.core.settings import ENVIRONMENTS

SIM_EXTRA = 'pip install -e ".[sim]"'
ARM_DIMENSIONS = (0, 1, 2, 6)  # where the arm's [dx, dy, dz, gripper] sit in the 7-D [x, y, z, roll, pitch, yaw, gripper]
ABSENT_DIMENSIONS = (3, 4, 5)  # roll, pitch, yaw: the MetaWorld arm has no rotation actions
OBJECT_POSITION = slice(4, 7)  # the first object's position in MetaWorld's 39-D observation


def require_simulator():
    """Import and return ``metaworld``, or fail in one line naming the extra that installs it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module("metaworld.policies")  # the scripted experts
            return importlib.import_module("metaworld")
    except ImportError as error:
        raise InputError(f"the physics source needs the simulator extra ({error.name} is missing): {SIM_EXTRA}") from None


@lru_cache(maxsize=1)
def available_tasks() -> tuple[str, ...]:
    """Every MetaWorld v3 task that ships a scripted expert."""
    metaworld = require_simulator()
    return tuple(sorted(metaworld.policies.ENV_POLICY_MAP))


def check_tasks(tasks: list[str], env: str) -> list[str]:
    """The tasks, or a one-line error naming an unknown environment or task and the closest names."""
    if env not in ENVIRONMENTS:
        raise InputError(f"--env {env!r}: unknown environment; expected one of {list(ENVIRONMENTS)}")
    if not tasks:
        raise InputError("--tasks: give at least one task, e.g. pick-place-v3")
    known = available_tasks()
    for task in tasks:
        if task not in known:
            close = difflib.get_close_matches(task, known, n=5, cutoff=0.4)
            hint = f"closest: {', '.join(close)}" if close else f"{len(known)} tasks, e.g. {', '.join(known[:5])}"
            raise InputError(f"--tasks: unknown MetaWorld v3 task {task!r} ({hint})")
    if len(set(tasks)) != len(tasks):
        raise InputError(f"--tasks: a task is listed twice: {tasks}")
    return list(tasks)


class TaskEnv:
    """One task's goal-observable environment and scripted expert; :meth:`reset` makes an episode's
    initial state a function of its seed alone (the same env object may run any episode)."""

    def __init__(self, task: str) -> None:
        metaworld = require_simulator()
        warnings.filterwarnings("ignore", module="metaworld")
        self.task = task
        self.env = metaworld.env_dict.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"]()
        self.env._freeze_rand_vec = False  # a new initial state per episode...
        self.env.seeded_rand_vec = True  # ...drawn from the env's own seeded generator
        self.expert = metaworld.policies.ENV_POLICY_MAP[task]()

    def reset(self, seed: int) -> np.ndarray:
        """Start the episode of ``seed`` and return its first observation."""
        self.env.seed(int(seed))
        observation, _ = self.env.reset()
        return observation

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        """Execute a float64 4-D action; the next observation and whether the task is solved."""
        observation, _, _, _, info = self.env.step(action)
        return observation, bool(info["success"])

    def expert_action(self, observation: np.ndarray) -> np.ndarray:
        """The scripted expert's 4-D action at the true observation, clipped to the action box."""
        return np.clip(np.asarray(self.expert.get_action(observation), dtype=np.float64), -1.0, 1.0)


def to_seven_dims(arm_action: np.ndarray) -> np.ndarray:
    """A 4-D arm action ``[dx, dy, dz, gripper]`` in the 7-D layout (rotations absent: 0, and marked absent per rollout)."""
    action = np.zeros(7, dtype=np.float32)
    action[list(ARM_DIMENSIONS)] = arm_action
    return action
