"""Synthetic rollouts in the real pickle format, with a planted and recorded risk signal.

Each action dimension ``d`` gets a unit direction ``u_d`` in hidden-state space. In a failed
rollout one or two "culprit" dimensions carry a risk that ramps from 0 to 1 over the failure
window; the hidden state (repeated over action chunks, as a real VLA's is) moves along
``u_d`` by ``signal_strength[d] * risk``. Every failure also moves the hidden state along a shared
"failure progress" direction, since the heuristic marks every dimension of a failure window as
risky. The culprit's action magnitude grows with its risk by ``action_coupling`` (0: the action
says nothing about the risk, so the model must read it from the hidden state).

Knobs make the family of data real hidden states come in (see ``benchmarks/generator_family.py``):
a few massive-activation features and log-normal feature scales, risk windows from 0.5% to 10% of
the steps, dimensions whose signal needs a nonlinearity (the shift's sign is drawn per rollout, so
its mean is zero), task-specific directions, weak or strong signals and any chunk size. The
planting record holds the directions as seen through the feature scaling, so projecting a stored
hidden state on them recovers the planted shift (:func:`planted_direction_scores`).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict

import numpy as np

from vlarisk.core.constants import NUM_DIMENSIONS
from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import atomic_path
from vlarisk.core.settings import SimulationSettings
from vlarisk.data.labels import failure_window


class SimulationSpec(SimulationSettings):
    """Everything that determines a synthetic source, as a config's ``simulate`` block gives it: the fields,
    their defaults and meaning are :class:`vlarisk.core.settings.SimulationSettings`' (docs/settings.md).
    The same spec always gives the same bytes."""


def planted_directions(hidden_dim: int, rng: np.random.Generator) -> np.ndarray:
    """Eight orthonormal directions ``[8, D]``: one per action dimension, then failure progress."""
    if hidden_dim < NUM_DIMENSIONS + 1:
        raise ValueError(f"hidden_dim must be at least {NUM_DIMENSIONS + 1}, got {hidden_dim}")
    q, _ = np.linalg.qr(rng.standard_normal((hidden_dim, NUM_DIMENSIONS + 1)))
    return q.T.astype(np.float32)


def planted_risk(num_steps: int, culprits: list[int], window: int | None = None) -> np.ndarray:
    """True per-step risk ``[T, 7]``: a 0-to-1 ramp over the last ``window`` steps on each culprit."""
    risk = np.zeros((num_steps, NUM_DIMENSIONS), dtype=np.float32)
    window = min(num_steps, failure_window(num_steps) if window is None else window)
    ramp = np.linspace(1.0 / window, 1.0, window, dtype=np.float32)
    for dim in culprits:
        risk[num_steps - window :, dim] = ramp
    return risk


class RolloutSimulator:
    """Draws rollouts for one :class:`SimulationSpec`; see the module docstring for the model."""

    def __init__(self, spec: SimulationSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.directions = planted_directions(spec.hidden_dim, self.rng)
        self.task_offsets = spec.task_offset_scale * self.rng.standard_normal((spec.num_tasks, spec.hidden_dim)).astype(np.float32)
        self.strength = np.asarray([*spec.signal_strength, spec.failure_signal_strength], dtype=np.float32)
        self.task_directions = self._task_directions()
        self.feature_scale, self.massive_index = self._distortion()

    def _task_directions(self) -> np.ndarray:
        """Per-task directions ``[tasks, 8, D]``: the shared ones blended with task-specific ones."""
        share = self.spec.task_specific
        if share == 0.0:
            return np.broadcast_to(self.directions, (self.spec.num_tasks, *self.directions.shape))
        own = self.rng.standard_normal((self.spec.num_tasks, *self.directions.shape)).astype(np.float32)
        own /= np.linalg.norm(own, axis=2, keepdims=True)
        blended = np.sqrt(1.0 - share) * self.directions + np.sqrt(share) * own
        return (blended / np.linalg.norm(blended, axis=2, keepdims=True)).astype(np.float32)

    def _distortion(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature scales (log-normal) and the indices of the massive-activation features."""
        spec = self.spec
        scale = np.exp(spec.feature_scale_sigma * self.rng.standard_normal(spec.hidden_dim)).astype(np.float32)
        massive = np.sort(self.rng.choice(spec.hidden_dim, size=spec.massive_features, replace=False))
        return scale, massive

    def rollout(self, success: bool) -> dict:
        spec, rng = self.spec, self.rng
        low, high = spec.success_steps if success else spec.failure_steps
        num_steps = int(rng.integers(low, high + 1))
        task = int(rng.integers(spec.num_tasks))
        culprits = [] if success else sorted(rng.choice(NUM_DIMENSIONS, size=int(rng.integers(1, 3)), replace=False).tolist())
        risk = planted_risk(num_steps, culprits, self._risk_window(num_steps, success))
        hidden = self._hidden_states(risk, task, 0.0 if success else spec.failure_drift)
        actions = self._actions(risk)
        steps = [self._step(t, num_steps, actions[t], hidden[t], risk[t], success) for t in range(num_steps)]
        return {
            "actions": [step["action"] for step in steps],
            "features": [step["hidden_state"] for step in steps],
            "steps": steps,
            "success": bool(success),
            "collision_occurred": not success,
            "collision_steps": 0 if success else 1,
            "collision_step": None if success else num_steps - 1,
            "instruction": f"synthetic task {task}",
            "task_id": task,
            "rewards": [0.0] * (num_steps - 1) + [1.0 if success else 0.0],
            "robot_states": [step["robot_state"] for step in steps],
            "culprit_dimensions": culprits,
        }

    def _risk_window(self, num_steps: int, success: bool) -> int:
        """Steps the risk ramps over: from a drawn onset (``failure_onset``) to the end, else the
        last ``risk_window_fraction`` (at least ``min_risk_window``); successes draw nothing."""
        spec = self.spec
        if spec.failure_onset is None or success:
            return max(spec.min_risk_window, int(spec.risk_window_fraction * num_steps))
        return num_steps - int(self.rng.uniform(*spec.failure_onset) * num_steps)

    def _hidden_states(self, risk: np.ndarray, task: int, drift: float = 0.0) -> list[np.ndarray]:
        """One hidden state per action chunk, repeated for each step of the chunk (same object);
        ``drift`` is the failure progress reached at the rollout's last step (see ``failure_drift``)."""
        spec = self.spec
        signs = np.ones(NUM_DIMENSIONS + 1, dtype=np.float32)
        signs[spec.nonlinear_dimensions] = np.where(self.rng.random(len(spec.nonlinear_dimensions)) < 0.5, -1.0, 1.0)
        states = []
        for start in range(0, risk.shape[0], spec.chunk_size):
            noise = self.rng.standard_normal(spec.hidden_dim).astype(np.float32)
            chunk_risk = risk[start : start + spec.chunk_size].max(axis=0)  # the state foresees its chunk's risk
            end = min(start + spec.chunk_size, risk.shape[0]) - 1
            progress = max(float(chunk_risk.max()), drift * end / max(risk.shape[0] - 1, 1))
            latent = np.append(chunk_risk, progress)
            signal = (signs * self.strength * latent) @ self.task_directions[task]
            state = self._distort(self.task_offsets[task] + noise + signal)
            states.extend([state] * min(spec.chunk_size, risk.shape[0] - start))
        return states

    def _distort(self, state: np.ndarray) -> np.ndarray:
        """Apply the feature scales, then overwrite the massive features with huge activations."""
        state = state * self.feature_scale
        jitter = self.rng.standard_normal(len(self.massive_index)).astype(np.float32)
        state[self.massive_index] = self.spec.massive_scale * (1.0 + 0.05 * jitter)
        return state.astype(np.float32)

    def _actions(self, risk: np.ndarray) -> np.ndarray:
        """Small random actions; a culprit's magnitude grows with its risk (kept in [-1, 1])."""
        base = 0.25 * self.rng.standard_normal(risk.shape).astype(np.float32)
        sign = np.where(self.rng.random(NUM_DIMENSIONS) < 0.5, -1.0, 1.0).astype(np.float32)
        coupled = self.spec.action_coupling * risk
        return np.clip(base * (1.0 - coupled) + sign * coupled, -1.0, 1.0).astype(np.float32)

    def recorded_directions(self) -> np.ndarray:
        """The shared directions as seen in stored states: divided by the feature scales, and blind to massive features."""
        directions = self.directions / self.feature_scale
        directions[:, self.massive_index] = 0.0
        return directions.astype(np.float32)

    def _step(self, t: int, num_steps: int, action, hidden, risk, success: bool) -> dict:
        step = {
            "action": action,
            "hidden_state": hidden,
            "collision": (not success) and t == num_steps - 1,
            "collision_pos": None,
            "collision_normal": None,
            "robot_state": {"qpos": np.zeros(9, dtype=np.float32), "qvel": np.zeros(9, dtype=np.float32)},
            "done": t == num_steps - 1,
        }
        if self.spec.with_labels:
            steps_left = num_steps - t
            step["labels"] = {
                "time_to_failure": -1 if success else steps_left,
                "time_to_collision": -1 if success else steps_left,
                "fail_within_k": int((not success) and steps_left <= failure_window(num_steps)),
                "collision_within_k": int((not success) and steps_left <= failure_window(num_steps)),
                "per_dim_risk": [float(v) for v in risk],
            }
        return step


def planted_direction_scores(hidden: np.ndarray, directions: np.ndarray, heuristic_labels: bool, nonlinear_dimensions=()) -> np.ndarray:
    """Scores ``[N, 7]``: the projection of each hidden state on each dimension's planted direction.

    A reference scorer, not a ceiling: noise and task offsets also move the projection, and a
    learned model may rank better. Heuristic labels call every dimension of a failure window risky,
    so for them the projection on the failure-progress direction is added: the planted quantity
    those labels actually follow. A nonlinear dimension's shift has a random sign, so its score is
    the projection's magnitude.
    """
    projection = np.asarray(hidden, dtype=np.float32) @ np.asarray(directions, dtype=np.float32).T
    scores = projection[:, :NUM_DIMENSIONS].copy()
    nonlinear = list(nonlinear_dimensions)
    scores[:, nonlinear] = np.abs(scores[:, nonlinear])
    return scores + projection[:, NUM_DIMENSIONS:] if heuristic_labels else scores


def write_synthetic_source(spec: SimulationSpec, success_path, failure_path, planting_path) -> None:
    """Simulate one source and write both rollout pickles plus the planting record (``.npz``)."""
    simulator = RolloutSimulator(spec)
    metadata = {"generator": "vlarisk.data.synthetic", "spec": asdict(spec)}
    for path, success, count in ((success_path, True, spec.num_success), (failure_path, False, spec.num_failure)):
        rollouts = [simulator.rollout(success) for _ in range(count)]
        payload = {"trajectories": rollouts, "metadata": metadata} if spec.layout == "dict" else rollouts
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
    with atomic_path(planting_path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            directions=simulator.recorded_directions(),
            signal_strength=simulator.strength,
            spec_json=np.array(json.dumps(metadata["spec"])),
        )


def load_planting(path) -> dict:
    """Read a planting record written by :func:`write_synthetic_source` (no pickles involved)."""
    try:
        with np.load(path, allow_pickle=False) as record:
            return {
                "directions": record["directions"],
                "signal_strength": record["signal_strength"],
                "spec": json.loads(str(record["spec_json"])),
            }
    except FileNotFoundError:
        raise InputError(f"{path}: planting record not found") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a planting record written by simulate_rollouts ({type(exc).__name__}: {exc})") from None
