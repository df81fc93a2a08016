"""Synthetic rollouts in the real pickle format, with a planted and recorded risk signal.

Each action dimension ``d`` gets a unit direction ``u_d`` in hidden-state space. In a failed
rollout one or two "culprit" dimensions carry a risk that ramps from 0 to 1 over the failure
window; the hidden state (repeated over action chunks, as a real VLA's is) moves along
``u_d`` by ``signal_strength[d] * risk``, and the culprit's action magnitude grows with its risk, so
the heuristic labels see the same event through the actions. Every failure also moves the hidden
state along a shared "failure progress" direction, since the heuristic marks every dimension of a
failure window as risky. A scorer that knows the planting (the projection on ``u_d``, plus the
progress direction for heuristic labels) gives the oracle AUC a learned model can at best approach.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from vlarisk.constants import NUM_DIMENSIONS
from vlarisk.errors import InputError
from vlarisk.io_utils import atomic_path
from vlarisk.labels import failure_window


@dataclass
class SimulationSpec:
    """Everything that determines a synthetic source; the same spec always gives the same bytes.

    Parameters
    ----------
    hidden_dim : int
        Size of the hidden states (4096 for OpenVLA; small values keep the default run fast).
    num_success, num_failure : int
        Rollouts written to ``success_rollouts.pkl`` and ``failure_rollouts.pkl``.
    success_steps : tuple of int
        Inclusive range of successful rollout lengths; failures run the full ``failure_steps``.
    num_tasks : int
        Tasks the rollouts are spread over; each task shifts the hidden state by its own offset.
    signal_strength : list of float
        Shift along each dimension's planted direction at full risk, in units of the noise std.
    failure_signal_strength : float
        Shift along the shared failure-progress direction at the end of a failed rollout.
    with_labels : bool
        Write ``per_dim_risk`` step labels (the planted risk); otherwise the heuristic must label.
    layout : {"dict", "list"}
        ``{"trajectories": [...], "metadata": {...}}`` or a bare list: both occur in real files.
    """

    hidden_dim: int = 64
    num_success: int = 200
    num_failure: int = 400
    success_steps: tuple[int, int] = (40, 70)
    failure_steps: int = 80
    num_tasks: int = 10
    chunk_size: int = 8
    signal_strength: list[float] = field(default_factory=lambda: [3.0, 4.0, 3.5, 2.0, 3.5, 2.5, 3.0])
    failure_signal_strength: float = 2.0
    task_offset_scale: float = 0.5
    with_labels: bool = True
    layout: str = "dict"
    seed: int = 0

    def __post_init__(self) -> None:
        self.success_steps = tuple(self.success_steps)
        if len(self.signal_strength) != NUM_DIMENSIONS:
            raise ValueError(f"signal_strength needs {NUM_DIMENSIONS} values, got {len(self.signal_strength)}")
        if self.layout not in ("dict", "list"):
            raise ValueError(f"layout must be 'dict' or 'list', got {self.layout!r}")


def planted_directions(hidden_dim: int, rng: np.random.Generator) -> np.ndarray:
    """Eight orthonormal directions ``[8, D]``: one per action dimension, then failure progress."""
    if hidden_dim < NUM_DIMENSIONS + 1:
        raise ValueError(f"hidden_dim must be at least {NUM_DIMENSIONS + 1}, got {hidden_dim}")
    q, _ = np.linalg.qr(rng.standard_normal((hidden_dim, NUM_DIMENSIONS + 1)))
    return q.T.astype(np.float32)


def planted_risk(num_steps: int, culprits: list[int]) -> np.ndarray:
    """True per-step risk ``[T, 7]``: a 0-to-1 ramp over the failure window on each culprit."""
    risk = np.zeros((num_steps, NUM_DIMENSIONS), dtype=np.float32)
    window = min(num_steps, failure_window(num_steps))
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

    def rollout(self, success: bool) -> dict:
        spec, rng = self.spec, self.rng
        num_steps = int(rng.integers(spec.success_steps[0], spec.success_steps[1] + 1)) if success else spec.failure_steps
        task = int(rng.integers(spec.num_tasks))
        culprits = [] if success else sorted(rng.choice(NUM_DIMENSIONS, size=int(rng.integers(1, 3)), replace=False).tolist())
        risk = planted_risk(num_steps, culprits)
        hidden = self._hidden_states(risk, task)
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

    def _hidden_states(self, risk: np.ndarray, task: int) -> list[np.ndarray]:
        """One hidden state per action chunk, repeated for each step of the chunk (same object)."""
        spec = self.spec
        states = []
        for start in range(0, risk.shape[0], spec.chunk_size):
            noise = self.rng.standard_normal(spec.hidden_dim).astype(np.float32)
            latent = np.append(risk[start], risk[start].max())
            signal = (self.strength * latent) @ self.directions
            state = (self.task_offsets[task] + noise + signal).astype(np.float32)
            states.extend([state] * min(spec.chunk_size, risk.shape[0] - start))
        return states

    def _actions(self, risk: np.ndarray) -> np.ndarray:
        """Small random actions; a culprit's magnitude grows with its risk (kept in [-1, 1])."""
        base = 0.25 * self.rng.standard_normal(risk.shape).astype(np.float32)
        sign = np.where(self.rng.random(NUM_DIMENSIONS) < 0.5, -1.0, 1.0).astype(np.float32)
        return np.clip(base * (1.0 - risk) + sign * risk, -1.0, 1.0).astype(np.float32)

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


def oracle_scores(hidden: np.ndarray, directions: np.ndarray, heuristic_labels: bool) -> np.ndarray:
    """The planting-aware scorer ``[N, 7]``: projection on each dimension's planted direction.

    Heuristic labels call every dimension of a failure window risky, so for them the projection on
    the failure-progress direction is added: the planted quantity those labels actually follow.
    """
    projection = np.asarray(hidden, dtype=np.float32) @ np.asarray(directions, dtype=np.float32).T
    scores = projection[:, :NUM_DIMENSIONS]
    return scores + projection[:, NUM_DIMENSIONS:] if heuristic_labels else scores


def write_synthetic_source(spec: SimulationSpec, success_path, failure_path, planting_path) -> None:
    """Simulate one source and write both rollout pickles plus the planting record (``.npz``)."""
    simulator = RolloutSimulator(spec)
    metadata = {"generator": "vlarisk.synthetic", "spec": asdict(spec)}
    for path, success, count in ((success_path, True, spec.num_success), (failure_path, False, spec.num_failure)):
        rollouts = [simulator.rollout(success) for _ in range(count)]
        payload = {"trajectories": rollouts, "metadata": metadata} if spec.layout == "dict" else rollouts
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
    with atomic_path(planting_path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, directions=simulator.directions, signal_strength=simulator.strength, spec_json=np.array(json.dumps(metadata["spec"])))


def load_planting(path) -> dict:
    """Read a planting record written by :func:`write_synthetic_source` (no pickles involved)."""
    try:
        with np.load(path, allow_pickle=False) as record:
            return {"directions": record["directions"], "signal_strength": record["signal_strength"], "spec": json.loads(str(record["spec_json"]))}
    except FileNotFoundError:
        raise InputError(f"{path}: planting record not found") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a planting record written by simulate_rollouts ({type(exc).__name__}: {exc})") from None
