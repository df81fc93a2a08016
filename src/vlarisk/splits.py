"""Train/validation/test splits made by rollout, stratified by outcome, seeded.

Steps of one rollout share near-identical hidden states (a VLA repeats one state over an action
chunk), so a split by step leaks test information into training. Here whole rollouts go to one
split; successes and failures are split separately so every split holds both; optionally whole
tasks are held out as the test set.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vlarisk.errors import InputError

SPLIT_NAMES = ("train", "val", "test")


def split_rollouts(
    rollouts: list[dict],
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    seed: int = 0,
    held_out_tasks: Iterable[str] = (),
    source: str = "dataset",
) -> dict[str, list[int]]:
    """Assign every rollout id to exactly one of train/val/test.

    Parameters
    ----------
    rollouts : list of dict
        The dataset metadata's rollout table (``rollout_id``, ``success``, ``task``).
    val_fraction, test_fraction : float
        Fractions of each outcome's rollouts for validation and test.
    seed : int
        Seed of the shuffle; the same seed and rollouts give the same split.
    held_out_tasks : iterable of str
        Tasks whose rollouts all form the test set (``test_fraction`` is then unused).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(f"{source}: split fractions val={val_fraction}, test={test_fraction} must be in [0, 1) and sum below 1")
    held_out = {str(t) for t in held_out_tasks}
    unknown = held_out - {str(r["task"]) for r in rollouts}
    if unknown:
        raise InputError(f"{source}: held-out tasks {sorted(unknown)} do not occur in the dataset")
    rng = np.random.default_rng(seed)
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for outcome in (True, False):
        group = [r for r in rollouts if bool(r["success"]) == outcome]
        test_ids = [r["rollout_id"] for r in group if str(r["task"]) in held_out]
        pool = np.array(sorted(r["rollout_id"] for r in group if str(r["task"]) not in held_out), dtype=np.int64)
        rng.shuffle(pool)
        n_test = 0 if held_out else int(round(test_fraction * len(pool)))
        n_val = int(round(val_fraction * len(pool)))
        split["test"] += test_ids + pool[:n_test].tolist()
        split["val"] += pool[n_test : n_test + n_val].tolist()
        split["train"] += pool[n_test + n_val :].tolist()
    _check_every_split_has_both_outcomes(split, rollouts, source)
    return {name: sorted(ids) for name, ids in split.items()}


def _check_every_split_has_both_outcomes(split: dict[str, list[int]], rollouts: list[dict], source: str) -> None:
    outcome = {r["rollout_id"]: bool(r["success"]) for r in rollouts}
    for name, ids in split.items():
        kinds = {outcome[i] for i in ids}
        if kinds != {True, False}:
            have = "no rollouts" if not kinds else ("only successes" if kinds == {True} else "only failures")
            raise InputError(
                f"{source}: the {name} split has {have} ({len(ids)} rollout{'' if len(ids) == 1 else 's'}); too few rollouts for the requested fractions "
                f"({sum(outcome.values())} successes, {len(outcome) - sum(outcome.values())} failures in total)"
            )


def rows_of(rollout_ids: np.ndarray, split_ids: Iterable[int]) -> np.ndarray:
    """Sorted dataset row indices whose rollout is in ``split_ids``."""
    return np.flatnonzero(np.isin(rollout_ids, np.asarray(list(split_ids), dtype=np.int64)))


def split_rows(rollout_ids: np.ndarray, split: dict) -> dict[str, np.ndarray]:
    """Row indices of each split, from a split dict (as saved by the ``split_dataset`` rule)."""
    return {name: rows_of(rollout_ids, split[name]) for name in SPLIT_NAMES}


def validate_split(split: dict, rollouts: list[dict], source: str = "split") -> None:
    """Check a loaded split against a dataset: known rollout ids, each in exactly one split."""
    if not isinstance(split, dict):
        raise InputError(f"{source}: expected a JSON object with 'train', 'val' and 'test' lists, got {type(split).__name__}")
    missing = [name for name in SPLIT_NAMES if not isinstance(split.get(name), list)]
    if missing:
        raise InputError(f"{source}: field(s) {missing} missing or not lists of rollout ids")
    known = {r["rollout_id"] for r in rollouts}
    seen: set[int] = set()
    for name in SPLIT_NAMES:
        not_ids = [i for i in split[name] if isinstance(i, bool) or not isinstance(i, int)]
        if not_ids:
            raise InputError(f"{source}: split '{name}' holds {not_ids[:5]}, which are not rollout ids (integers)")
        if not split[name]:
            raise InputError(f"{source}: split '{name}' is empty")
        ids = set(split[name])
        if ids - known:
            raise InputError(f"{source}: split '{name}' names rollout ids {sorted(ids - known)[:5]} that the dataset does not have")
        if ids & seen:
            raise InputError(f"{source}: rollout ids {sorted(ids & seen)[:5]} appear in more than one split")
        seen |= ids
