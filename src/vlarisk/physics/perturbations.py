"""The per-episode fault mix: none, action noise, a perception bias on one axis, a gripper glitch.

A fault is drawn from the episode's seed alone, so a replay meets the very same fault. The
perception bias shifts the object position the *policy* sees along one axis (the expert and the
simulator keep the truth); action noise and the gripper glitch act on the executed action, after
the controller has chosen it (external faults that no controller dimension can undo).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vlarisk.core.errors import InputError
from vlarisk.core.settings import FAULT_KINDS as KINDS
from vlarisk.physics.env import OBJECT_POSITION

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class FaultRanges:
    """The ranges faults are drawn from (a measured mix: about half of pick-place episodes fail)."""

    noise_sigma: tuple[float, float] = (0.3, 1.2)
    bias_metres: tuple[float, float] = (0.01, 0.05)
    glitch_steps: tuple[int, int] = (8, 20)
    start_step: tuple[int, int] = (0, 30)


FAULT_RANGES = FaultRanges()


@dataclass
class Perturbation:
    """One episode's fault: ``kind``, the ``axis`` it acts on, its ``magnitude`` (noise sigma, bias in
    metres, or glitch steps), the ``start`` step, and the noise drawn for every step."""

    kind: str
    axis: str | None
    magnitude: float
    start: int
    noise: np.ndarray = field(repr=False)

    def record(self) -> dict:
        """The fault as plain data for the rollout pickle (the noise itself follows from the seed)."""
        return {k: v for k, v in asdict(self).items() if k != "noise"}

    def observed(self, observation: np.ndarray, step: int) -> np.ndarray:
        """What the policy sees at ``step``: the truth, or the object shifted along the biased axis."""
        if self.kind != "perception_bias" or step < self.start:
            return observation
        seen = observation.copy()
        seen[OBJECT_POSITION.start + AXES.index(self.axis)] += self.magnitude
        return seen

    def executed(self, action: np.ndarray, step: int) -> np.ndarray:
        """The float64 action the arm executes at ``step`` for the controller's ``action``."""
        action = np.asarray(action, dtype=np.float64).copy()
        if step >= self.start:
            if self.kind == "action_noise":
                action = action + self.noise[step]
            elif self.kind == "gripper_open" and step < self.start + int(self.magnitude):
                action[3] = -1.0
        return np.clip(action, -1.0, 1.0)


def check_mix(mix: dict) -> dict:
    """The fault mix, or a one-line error for unknown kinds or weights that are not positive numbers."""
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise InputError(f"--mix: unknown fault kinds {unknown}; expected some of {list(KINDS)}")
    weights = list(mix.values())
    if not all(isinstance(w, (int, float)) and w >= 0 for w in weights) or not sum(weights) > 0:
        raise InputError(f"--mix: weights must be numbers >= 0, not all 0: {mix}")
    return mix


def draw_perturbation(seed: int, horizon: int, mix: dict[str, float], ranges: FaultRanges = FAULT_RANGES) -> Perturbation:
    """The fault of the episode of ``seed``, drawn from ``mix`` (kind -> weight)."""
    check_mix(mix)
    rng = np.random.default_rng([int(seed), 7])
    kinds = [k for k in KINDS if mix.get(k, 0) > 0]
    weights = np.array([mix[k] for k in kinds], dtype=float)
    kind = str(rng.choice(kinds, p=weights / weights.sum()))
    start = int(rng.integers(ranges.start_step[0], ranges.start_step[1] + 1))
    noise = np.zeros((horizon, 4))
    axis, magnitude = None, 0.0
    if kind == "action_noise":
        magnitude = float(rng.uniform(*ranges.noise_sigma))
        noise = rng.normal(0.0, magnitude, size=(horizon, 4))
    elif kind == "perception_bias":
        axis = str(rng.choice(AXES))
        magnitude = float(rng.uniform(*ranges.bias_metres) * rng.choice([-1.0, 1.0]))
    elif kind == "gripper_open":
        axis = "gripper"
        magnitude = float(rng.integers(ranges.glitch_steps[0], ranges.glitch_steps[1] + 1))
    return Perturbation(kind, axis, magnitude, start, noise)
