"""One episode under the policy, its exact replay, and the counterfactuals that label it.

An episode ends when the task is solved or at ``horizon`` steps (a failure). The executed
actions are kept in float64: replaying them from the same seed reproduces the episode bit for bit
(float32 diverges through contacts). Counterfactuals replay a prefix of the executed actions,
then hand control to someone else:

* **point of no return** ``t*``: the first step from which the clean scripted expert, taking
  over, can no longer solve the task, found by bisection over takeover steps (assumes that a
  later takeover never rescues what an earlier one cannot);
* **blame**: restart at ``t* - window`` with the policy (and its fault) in control except one
  action dimension, which the expert's replaces; that dimension is blamed if this rescues the episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vlarisk.physics.env import ARM_DIMENSIONS, TaskEnv
from vlarisk.physics.perturbations import Perturbation
from vlarisk.physics.policy import MlpPolicy

BLAME_WINDOW = 20  # steps before t* where blame restarts and deviation labels may be positive

Controller = Callable[[np.ndarray, int], np.ndarray]  # (true observation, step) -> executed float64 action


@dataclass
class Episode:
    """A recorded episode: per step the true observation, the policy's action and hidden layer, the
    expert's action at the true state and the executed action (float64)."""

    task: str
    seed: int
    horizon: int
    perturbation: Perturbation
    success: bool = False
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    expert_actions: list = field(default_factory=list)
    executed: list = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return len(self.executed)


def run_episode(env: TaskEnv, policy: MlpPolicy, seed: int, horizon: int, perturbation: Perturbation) -> Episode:
    """Run the policy for one episode under its fault, recording every step."""
    episode = Episode(env.task, int(seed), horizon, perturbation)
    observation = env.reset(seed)
    for step in range(horizon):
        action, hidden = policy.act(perturbation.observed(observation, step), env.task)
        executed = perturbation.executed(action, step)
        episode.observations.append(observation.astype(np.float32))
        episode.actions.append(action)
        episode.hidden.append(hidden)
        episode.expert_actions.append(env.expert_action(observation))
        episode.executed.append(executed)
        observation, solved = env.step(executed)
        if solved:
            episode.success = True
            break
    return episode


def replay(env: TaskEnv, seed: int, executed: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """Re-execute recorded actions from the episode's seed: the observations met and whether it was solved."""
    observation = env.reset(seed)
    seen, solved = [], False
    for action in executed:
        seen.append(observation.astype(np.float32))
        observation, solved = env.step(action)
    return seen, solved


def continue_episode(env: TaskEnv, episode: Episode, prefix: int, controller: Controller) -> bool:
    """Replay the first ``prefix`` executed actions, then let ``controller`` act to the horizon; solved?"""
    observation = env.reset(episode.seed)
    for action in episode.executed[:prefix]:
        observation, solved = env.step(action)
        if solved:
            return True
    for step in range(prefix, episode.horizon):
        observation, solved = env.step(controller(observation, step))
        if solved:
            return True
    return False


def expert_takeover(env: TaskEnv) -> Controller:
    """The clean scripted expert in control (no fault)."""
    return lambda observation, step: env.expert_action(observation)


def policy_with_expert_dimension(env: TaskEnv, policy: MlpPolicy, perturbation: Perturbation, arm_dimension: int) -> Controller:
    """The policy under its fault, with one arm dimension's action replaced by the expert's."""

    def control(observation: np.ndarray, step: int) -> np.ndarray:
        action, _ = policy.act(perturbation.observed(observation, step), env.task)
        action[arm_dimension] = env.expert_action(observation)[arm_dimension]
        return perturbation.executed(action, step)

    return control


def bisect_first_failure(rescued: Callable[[int], bool], last: int) -> int:
    """The first step ``k`` in ``[0, last]`` with ``rescued(k)`` false, given ``rescued(last)`` is false
    and rescue is monotone (true up to some step, false after)."""
    if not rescued(0):
        return 0
    low, high = 0, last  # rescued(low) holds, rescued(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if rescued(middle):
            low = middle
        else:
            high = middle
    return high


def point_of_no_return(env: TaskEnv, episode: Episode) -> int:
    """``t*`` of a failed episode: the first takeover step from which the clean expert fails."""
    takeover = expert_takeover(env)
    return bisect_first_failure(lambda step: continue_episode(env, episode, step, takeover), episode.num_steps)


def blame(env: TaskEnv, policy: MlpPolicy, episode: Episode, t_star: int, window: int = BLAME_WINDOW) -> list[int | None]:
    """The 7-D blame vector: 1 where handing that dimension alone to the expert from ``t* - window``
    rescues the episode, 0 where it does not, None for dimensions the arm lacks."""
    start = max(0, t_star - window)
    vector: list[int | None] = [None] * 7
    for arm_dimension, dimension in enumerate(ARM_DIMENSIONS):
        controller = policy_with_expert_dimension(env, policy, episode.perturbation, arm_dimension)
        vector[dimension] = int(continue_episode(env, episode, start, controller))
    return vector
