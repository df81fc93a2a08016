"""Reading rollout pickles (both layouts found in the wild) into validated per-step arrays."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlarisk.core.constants import NUM_DIMENSIONS
from vlarisk.core.errors import InputError
from vlarisk.data.labels import failure_window, heuristic_risk_labels
from vlarisk.data.safe_pickle import load_pickle


@dataclass
class SkipCounts:
    """Steps and rollouts left out of a dataset, and why; stored in the dataset's metadata."""

    empty_rollouts: int = 0
    wrong_hidden_length: int = 0
    nonfinite_hidden: int = 0
    unlabelled_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f"skipped_{k}": v for k, v in self.__dict__.items()}

    def describe(self) -> str:
        """One phrase for error messages, e.g. ``"skipped: 2 empty rollouts, 40 steps with NaN/Inf"``."""
        parts = [
            f"{self.empty_rollouts} empty rollouts",
            f"{self.wrong_hidden_length} steps with a failed-hook hidden state (length 0 or 1)",
            f"{self.nonfinite_hidden} steps with NaN/Inf hidden states",
            f"{self.unlabelled_dropped} unlabelled steps dropped (--require-labels)",
        ]
        counts = (self.empty_rollouts, self.wrong_hidden_length, self.nonfinite_hidden, self.unlabelled_dropped)
        kept = [part for part, count in zip(parts, counts, strict=True) if count]
        return "skipped: " + (", ".join(kept) if kept else "nothing")


@dataclass
class RolloutArrays:
    """The kept steps of one rollout, ready to append to a dataset."""

    hidden: np.ndarray  # [n, D] float32
    fields: dict[str, np.ndarray]
    task: str
    num_steps: int


@dataclass
class RolloutReader:
    """Turns rollout dicts of one source into :class:`RolloutArrays`, checking every field.

    ``labelling`` is ``"auto"`` (use ``per_dim_risk`` where present, the heuristic elsewhere),
    ``"require"`` (drop unlabelled steps, the guide's ``--require-labels``) or ``"heuristic"``
    (ignore provided labels: used by the labels ablation).
    """

    labelling: str = "auto"
    hidden_dim: int | None = None
    skips: SkipCounts = field(default_factory=SkipCounts)
    hidden_lengths: Counter = field(default_factory=Counter)

    def read(self, rollout: Any, path: str, index: int, success: bool) -> RolloutArrays | None:
        where = f"{path}: rollout {index}"
        if not isinstance(rollout, dict):
            raise InputError(f"{where}: expected a dict, got {type(rollout).__name__}")
        actions, hidden, provided = self._raw_steps(rollout, where)
        if actions.shape[0] == 0:
            self.skips.empty_rollouts += 1
            return None
        labels, has_label = self._labels(actions, provided, success, where)
        usable, block = self._usable_hidden(hidden, where)
        keep = usable & (has_label.astype(bool) | (self.labelling != "require"))
        self.skips.unlabelled_dropped += int(((~has_label.astype(bool)) & (self.labelling == "require")).sum())
        num_steps = actions.shape[0]
        steps_left = num_steps - np.arange(num_steps)
        fields = {
            "risk_label": labels,
            "action": actions,
            "step_index": np.arange(num_steps),
            "success": np.full(num_steps, int(success)),
            "collision": self._collisions(rollout, num_steps),
            "time_to_failure": np.full(num_steps, -1) if success else steps_left,
            "fail_within_k": np.zeros(num_steps) if success else (steps_left <= failure_window(num_steps)),
            "has_provided_label": has_label,
        }
        kept = np.flatnonzero(keep)
        if kept.size == 0:
            return None
        if block is not None:  # stacked by the fast path of _usable_hidden
            stacked = block if kept.size == len(block) else block[kept]
        else:
            stacked = np.stack([np.asarray(hidden[i], dtype=np.float32) for i in kept])
        return RolloutArrays(stacked, {k: np.asarray(v)[kept] for k, v in fields.items()}, task_key(rollout.get("task_id", "")), num_steps)

    def _raw_steps(self, rollout: dict, where: str) -> tuple[np.ndarray, list, list]:
        steps = _sequence(rollout, "steps", where)
        if steps:
            if any(not isinstance(s, dict) for s in steps):
                raise InputError(f"{where}: field 'steps' must be a list of dicts")
            missing = next((i for i, s in enumerate(steps) if "action" not in s or "hidden_state" not in s), None)
            if missing is not None:
                raise InputError(f"{where}: step {missing} lacks 'action' or 'hidden_state'")
            actions = [s["action"] for s in steps]
            hidden = [s["hidden_state"] for s in steps]
            provided = [_step_label(s) for s in steps]
        else:
            actions, hidden = _sequence(rollout, "actions", where), _sequence(rollout, "features", where)
            if len(actions) != len(hidden):
                raise InputError(f"{where}: 'actions' has {len(actions)} entries but 'features' has {len(hidden)}")
            provided = [None] * len(actions)
        return _as_actions(actions, where), hidden, provided

    def _labels(self, actions: np.ndarray, provided: list, success: bool, where: str) -> tuple[np.ndarray, np.ndarray]:
        labels = heuristic_risk_labels(actions, success)
        has_label = np.zeros(actions.shape[0], dtype=np.uint8)
        if self.labelling == "heuristic":
            return labels, has_label
        if provided and all(label is not None for label in provided):
            fast = _checked_labels_fast(provided)  # every step labelled and valid: one vectorised check
            if fast is not None:
                return fast, np.ones(actions.shape[0], dtype=np.uint8)
        for step, label in enumerate(provided):
            if label is not None:
                labels[step] = _checked_label(label, f"{where}, step {step}")
                has_label[step] = 1
        return labels, has_label

    def _usable_hidden(self, hidden: list, where: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Mask of steps whose hidden state has the source's length and only finite values, and
        the states stacked as ``[T, D]`` when the fast path stacked them (else None).

        A failed hook leaves ``None`` or a 0/1-element array (``zeros(1)``): such steps are skipped
        and counted. Any other length differing from the source's first hidden state is an error,
        since it means rollouts of different models were mixed into one file.
        """
        first = hidden[0] if hidden else None
        dim = self.hidden_dim or (first.shape[0] if isinstance(first, np.ndarray) and first.ndim == 1 else 0)
        if dim > 1 and all(type(s) is np.ndarray and s.dtype == np.float32 and s.shape == (dim,) for s in hidden):
            # The usual case, every step a float32 vector of the source's length: stack once (read()
            # reuses the block) and check finiteness in one vectorised pass instead of per step.
            self.hidden_dim = dim
            block = np.stack(hidden)
            with np.errstate(over="ignore", invalid="ignore"):
                usable = np.isfinite(block.sum(axis=1))  # a NaN or Inf makes the row's sum non-finite
            if not usable.all():  # ...and so may an overflow of finite values: check those rows exactly
                suspect = np.flatnonzero(~usable)
                usable[suspect] = np.isfinite(block[suspect]).all(axis=1)
            self.skips.nonfinite_hidden += int(len(hidden) - usable.sum())
            return usable, block
        usable = np.zeros(len(hidden), dtype=bool)
        for i, state in enumerate(hidden):
            if state is None:
                self.skips.wrong_hidden_length += 1
                self.hidden_lengths[0] += 1
                continue
            try:
                state = np.asarray(state, dtype=np.float32)
            except (TypeError, ValueError):
                raise InputError(f"{where}, step {i}: field 'hidden_state' is not numeric (got {type(state).__name__})") from None
            if state.size <= 1:
                self.skips.wrong_hidden_length += 1
                self.hidden_lengths[int(state.size)] += 1
                continue
            if state.ndim != 1:
                hint = f" (a batch of one? save hidden_state[0], shape ({state.shape[-1]},))" if state.shape[0] == 1 else ""
                raise InputError(f"{where}, step {i}: field 'hidden_state' must be a vector [D], got shape {state.shape}{hint}")
            if self.hidden_dim is None:
                self.hidden_dim = int(state.size)
            if state.size != self.hidden_dim:
                raise InputError(
                    f"{where}, step {i}: field 'hidden_state' has {state.size} values but earlier steps of this source have "
                    f"{self.hidden_dim} (only a failed hook's zeros(1) is skipped; other lengths mean rollouts of different models were mixed)"
                )
            if not np.isfinite(state).all():
                self.skips.nonfinite_hidden += 1
                continue
            usable[i] = True
        return usable, None

    @staticmethod
    def _collisions(rollout: dict, num_steps: int) -> np.ndarray:
        steps = _sequence(rollout, "steps", "")
        if steps:
            return np.asarray([bool(s.get("collision", False)) for s in steps], dtype=np.uint8)
        return np.zeros(num_steps, dtype=np.uint8)


def _sequence(rollout: dict, key: str, where: str) -> list:
    """A per-step field as a list: absent or ``None`` gives ``[]``; numpy arrays are split by row."""
    value = rollout.get(key)
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value) if value.ndim else [value]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where}: field '{key}' must be a list, got {type(value).__name__}")
    return list(value)


def _step_label(step: dict) -> Any:
    labels = step.get("labels")
    if isinstance(labels, dict) and labels.get("per_dim_risk") is not None:
        return labels["per_dim_risk"]
    return step.get("per_dim_risk")


def _as_actions(actions: list, where: str) -> np.ndarray:
    if len(actions) == 0:
        return np.zeros((0, NUM_DIMENSIONS), dtype=np.float32)
    try:  # fast path: a well-formed [T, 7] of finite numbers; anything else is diagnosed step by step
        array = np.asarray(actions, dtype=np.float32)
        if array.shape == (len(actions), NUM_DIMENSIONS) and np.isfinite(array).all():
            return array
    except (TypeError, ValueError):
        pass
    for step, action in enumerate(actions):
        try:
            shape = np.shape(np.asarray(action, dtype=np.float32))
        except (TypeError, ValueError):
            raise InputError(f"{where}, step {step}: field 'action' is not numeric (got {type(action).__name__})") from None
        if shape != (NUM_DIMENSIONS,):
            raise InputError(f"{where}, step {step}: field 'action' must have {NUM_DIMENSIONS} values, got shape {shape}")
    array = np.asarray(actions, dtype=np.float32)
    if not np.isfinite(array).all():
        step = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise InputError(f"{where}, step {step}: field 'action' contains NaN or Inf")
    return array


def _checked_labels_fast(labels: list) -> np.ndarray | None:
    """All steps' labels as ``[T, 7]`` when every one is valid (as :func:`_checked_label` checks), else None."""
    try:
        array = np.asarray(labels, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if array.ndim != 2 or array.shape[1] != NUM_DIMENSIONS or not np.isfinite(array).all() or (array < 0).any() or (array > 1).any():
        return None
    return array


def _checked_label(label: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(label, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field 'per_dim_risk' is not numeric") from None
    if array.size != NUM_DIMENSIONS:
        raise InputError(f"{where}: field 'per_dim_risk' has {array.size} values, expected {NUM_DIMENSIONS}")
    if not np.isfinite(array).all():
        raise InputError(f"{where}: field 'per_dim_risk' contains NaN or Inf")
    if (array < 0).any() or (array > 1).any():
        raise InputError(f"{where}: field 'per_dim_risk' has values outside [0, 1]: {array.tolist()}")
    return array


def load_rollouts(path: str) -> list:
    """Load a rollout pickle safely and return its list of rollouts (either layout)."""
    payload = load_pickle(path)
    if isinstance(payload, dict):
        if "trajectories" not in payload:
            raise InputError(
                f"{path}: expected a list of rollouts or a dict with 'trajectories'; got a dict with keys {sorted(map(str, payload))[:10]}"
            )
        payload = payload["trajectories"]
    if not isinstance(payload, list):
        raise InputError(f"{path}: expected a list of rollouts, got {type(payload).__name__}")
    return payload


def iter_rollouts(path: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, rollout)`` and drop each rollout from memory once the caller moves on."""
    rollouts = load_rollouts(path)
    for index in range(len(rollouts)):
        rollout, rollouts[index] = rollouts[index], None
        yield index, rollout


def task_key(value: Any) -> str:
    """Task ids are ints or strings (``"openvla__spatial__3"``); keep one text form for both."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return str(value)
