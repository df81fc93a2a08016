"""Splits made by rollout, stratified by outcome, seeded; optionally with whole tasks held out.

Steps of one rollout share near-identical hidden states (a VLA repeats one state over an action
chunk), so a split by step leaks test information into training. Here whole rollouts go to one
split, and successes and failures are split separately so every split holds both.

The partition is ``train`` (fitting), ``val`` (epoch selection), ``calibration`` (successful
rollouts only, for the alarm threshold: unused by training and model selection, as the conformal
guarantee needs) and ``test``. When tasks are held out, ``test`` is the union of ``test_seen``
(rollouts of the training tasks) and ``test_unseen`` (every rollout of the held-out tasks).

The calibration successes come either from the training tasks (``calibration_fraction``), which
bounds false alarms on new rollouts of those tasks, or from calibration tasks held out of training
(``calibration_tasks``), which bounds them on new tasks, the unseen-task case; the failures of
calibration tasks are then ``unused``.

Several task splits (``task_split`` 0, 1, ...) repeat the leave-tasks-out protocol: split ``k``
draws with a seed derived from the configured one and ``k`` (split 0 uses the seed itself) and
holds out, where the tasks allow, a task set that overlaps the earlier splits' least.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vlarisk.core import settings
from vlarisk.core.errors import InputError

SPLIT_NAMES = ("train", "val", "test")  # always present, every one with both outcomes
OPTIONAL_SPLITS = ("calibration", "unused")  # part of the partition when present
TEST_SETS = ("test_seen", "test_unseen")  # a partition of ``test`` when tasks are held out
AUTO = settings.AUTO
MIN_TASKS_FOR_UNSEEN = 5
# The project's defaults (the config's and the commands', vlarisk.core.settings.SplitSettings) of the
# keys split_rollouts takes besides the seed.
DEFAULTS = {key: value for key, value in settings.defaults(settings.SplitSettings).items() if key not in ("seed", "n_task_splits")}


def split_rollouts(
    rollouts: list[dict],
    val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"],
    seed: int = 0,
    held_out_tasks: Iterable[str] | str = DEFAULTS["held_out_tasks"],
    source: str = "dataset",
    calibration_fraction: float = DEFAULTS["calibration_fraction"],
    unseen_task_fraction: float = DEFAULTS["unseen_task_fraction"],
    calibration_tasks: Iterable[str] | str = DEFAULTS["calibration_tasks"],
    task_split: int = 0,
) -> dict:
    """Assign every rollout id to exactly one of train/val/calibration/test.

    Parameters
    ----------
    rollouts : list of dict
        The dataset metadata's rollout table (``rollout_id``, ``success``, ``task``).
    val_fraction, test_fraction : float
        Fractions of each outcome's rollouts of the seen tasks for validation and ``test_seen``.
    seed : int
        Seed of the shuffles; the same seed and rollouts give the same split.
    held_out_tasks : iterable of str, or "auto"
        Tasks whose rollouts all form ``test_unseen``. ``"auto"`` holds out
        ``unseen_task_fraction`` of the tasks (at least one, chosen by ``seed``) when the dataset
        has at least ``MIN_TASKS_FOR_UNSEEN`` tasks and a choice leaves both outcomes on each side;
        otherwise none.
    calibration_fraction : float
        Fraction of the seen tasks' *successful* rollouts kept for the alarm threshold (0: none);
        unused when there are calibration tasks.
    unseen_task_fraction : float
        Share of the tasks held out by ``"auto"`` (for ``held_out_tasks`` and ``calibration_tasks``).
    calibration_tasks : iterable of str, or "auto"
        Tasks held out of training whose successes form ``calibration`` (their failures are
        ``unused``); ``"auto"`` chooses ``unseen_task_fraction`` of the tasks, as for
        ``held_out_tasks``, among those not held out for testing.
    task_split : int
        Which of several task splits to draw (0: the plain split). Needs ``held_out_tasks="auto"``
        when above 0; see :func:`task_split_seed`.

    Returns
    -------
    dict
        Sorted rollout ids per split name (see :func:`unseen_tasks` for the tasks held out).
    """
    fractions = (val_fraction, test_fraction, calibration_fraction)
    if not (all(0 <= f < 1 for f in fractions) and sum(fractions) < 1):
        raise InputError(
            f"{source}: split fractions val={val_fraction}, test={test_fraction}, calibration={calibration_fraction} "
            "must be in [0, 1) and sum below 1"
        )
    if task_split > 0 and not (isinstance(held_out_tasks, str) and held_out_tasks == AUTO):
        raise InputError(f"{source}: task split {task_split} needs held_out_tasks '{AUTO}' (a fixed task list cannot vary across splits)")
    held_out = _task_split_held_out(rollouts, held_out_tasks, unseen_task_fraction, seed, task_split, source)
    seed = task_split_seed(seed, task_split)
    calibrating = _held_out_tasks(rollouts, calibration_tasks, unseen_task_fraction, seed + 1, source, exclude=held_out)
    if calibrating & held_out:
        raise InputError(f"{source}: tasks {sorted(calibrating & held_out)} cannot be both held out for testing and for calibration")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {name: [] for name in ("train", "val", "calibration", "unused", "test_seen", "test_unseen")}
    for outcome in (True, False):
        group = [r for r in rollouts if bool(r["success"]) == outcome]
        parts["test_unseen"] += [r["rollout_id"] for r in group if str(r["task"]) in held_out]
        parts["calibration" if outcome else "unused"] += [r["rollout_id"] for r in group if str(r["task"]) in calibrating]
        pool = np.array(sorted(r["rollout_id"] for r in group if str(r["task"]) not in held_out | calibrating), dtype=np.int64)
        rng.shuffle(pool)
        sizes = {
            "test_seen": int(round(test_fraction * len(pool))),
            "calibration": int(round(calibration_fraction * len(pool))) if outcome and not calibrating else 0,
            "val": int(round(val_fraction * len(pool))),
        }
        start = 0
        for name, size in sizes.items():
            parts[name] += pool[start : start + size].tolist()
            start += size
        parts["train"] += pool[start:].tolist()
    split = {"train": parts["train"], "val": parts["val"], "test": parts["test_seen"] + parts["test_unseen"]}
    if calibration_fraction > 0 or calibrating:
        split["calibration"] = parts["calibration"]
    if parts["unused"]:
        split["unused"] = parts["unused"]
    if held_out:
        split["test_seen"], split["test_unseen"] = parts["test_seen"], parts["test_unseen"]
    _check_outcomes(split, rollouts, source)
    return {name: sorted(ids) for name, ids in split.items()}


def plain_split(rollouts: list[dict], val_fraction: float, test_fraction: float, seed: int = 0, source: str = "dataset") -> dict:
    """The train/val/test split of the training guide's tools: :func:`split_rollouts` without
    calibration rollouts or held-out tasks (the alarm is then fitted on ``val``)."""
    return split_rollouts(rollouts, val_fraction, test_fraction, seed, (), source, calibration_fraction=0.0, calibration_tasks=())


def task_split_seed(seed: int, task_split: int) -> int:
    """The seed of task split ``task_split``: ``seed`` itself for split 0 (the plain split), else
    one derived from both, so that splits of different configured seeds do not coincide."""
    if task_split < 0:
        raise ValueError(f"task_split must be >= 0, got {task_split}")
    return int(seed) if task_split == 0 else int(np.random.SeedSequence([int(seed), int(task_split)]).generate_state(1)[0])


def _task_split_held_out(rollouts: list[dict], requested, fraction: float, seed: int, task_split: int, source: str) -> set[str]:
    """The tasks held out by split ``task_split``: each earlier split's choice is redrawn (cheap,
    deterministic) so that this one can avoid their tasks."""
    earlier: list[set[str]] = []
    for k in range(task_split + 1):
        earlier.append(_held_out_tasks(rollouts, requested, fraction, task_split_seed(seed, k), source, avoid=earlier))
    return earlier[-1]


def _held_out_tasks(
    rollouts: list[dict], requested, fraction: float, seed: int, source: str, exclude: set[str] = frozenset(), avoid: list[set[str]] = ()
) -> set[str]:
    """The tasks to hold out: the requested ones (checked to exist), or an automatic choice among
    the tasks not in ``exclude`` (``fraction`` of all tasks), overlapping the sets in ``avoid`` least."""
    tasks = sorted({str(r["task"]) for r in rollouts})
    if isinstance(requested, str) and requested == AUTO:
        candidates = [t for t in tasks if t not in exclude]
        enough = len(tasks) >= MIN_TASKS_FOR_UNSEEN and fraction > 0
        count = min(len(candidates) - 1, max(1, int(round(fraction * len(tasks))))) if enough else 0
        return _automatic_held_out_tasks(rollouts, candidates, count, seed, need_failures=not exclude, avoid=avoid)
    held_out = {str(t) for t in ([requested] if isinstance(requested, str) else requested)}
    unknown = held_out - set(tasks)
    if unknown:
        raise InputError(f"{source}: held-out tasks {sorted(unknown)} do not occur in the dataset (tasks: {tasks[:20]})")
    if held_out and held_out | set(exclude) == set(tasks):
        raise InputError(f"{source}: held-out tasks {sorted(held_out | set(exclude))} are all the tasks; none would be left to train on")
    return held_out


def _automatic_held_out_tasks(
    rollouts: list[dict], tasks: list[str], count: int, seed: int, need_failures: bool = True, avoid: list[set[str]] = ()
) -> set[str]:
    """``count`` of ``tasks``, drawn with ``seed``, such that the rest keeps both outcomes and the
    chosen ones hold both (only successes, for calibration tasks: ``need_failures=False``); of the
    valid draws, the first sharing fewest tasks with the sets in ``avoid`` (earlier task splits)."""
    if count <= 0:
        return set()
    outcomes: dict[str, set[bool]] = {}
    for r in rollouts:
        outcomes.setdefault(str(r["task"]), set()).add(bool(r["success"]))
    used = set().union(*avoid)
    rng = np.random.default_rng([seed, 1])
    best: set[str] = set()
    best_overlap = None
    for _ in range(50):
        chosen = set(rng.permutation(tasks)[:count].tolist())
        held = set().union(*(outcomes[t] for t in chosen))
        kept = set().union(*(outcomes[t] for t in tasks if t not in chosen))
        if kept == {True, False} and (held == {True, False} or (not need_failures and True in held)):
            overlap = (chosen in avoid, len(chosen & used))  # a repeated set is worst
            if best_overlap is None or overlap < best_overlap:
                best, best_overlap = chosen, overlap
            if overlap == (False, 0):
                break
    return best


def _check_outcomes(split: dict[str, list[int]], rollouts: list[dict], source: str) -> None:
    """Every split holds both outcomes (calibration: successes, and at least one)."""
    outcome = {r["rollout_id"]: bool(r["success"]) for r in rollouts}
    totals = f"({sum(outcome.values())} successes, {len(outcome) - sum(outcome.values())} failures in total)"
    for name, ids in split.items():
        kinds = {outcome[i] for i in ids}
        if name == "unused":
            continue
        wanted = {True} if name == "calibration" else {True, False}
        if kinds != wanted and not (name == "test_seen" and not ids):
            have = "no rollouts" if not kinds else ("only successes" if kinds == {True} else "only failures")
            raise InputError(
                f"{source}: the {name} split has {have} ({len(ids)} rollout{'' if len(ids) == 1 else 's'}); "
                f"too few rollouts for the requested fractions {totals}"
            )
    if "test_seen" in split and not split["test_seen"]:
        del split["test_seen"]


def rows_of(rollout_ids: np.ndarray, split_ids: Iterable[int]) -> np.ndarray:
    """Sorted dataset row indices whose rollout is in ``split_ids``."""
    return np.flatnonzero(np.isin(rollout_ids, np.asarray(list(split_ids), dtype=np.int64)))


def split_rows(rollout_ids: np.ndarray, split: dict) -> dict[str, np.ndarray]:
    """Row indices of each split present in a split dict (as saved by the ``split_dataset`` rule)."""
    names = [name for name in (*SPLIT_NAMES, *OPTIONAL_SPLITS, *TEST_SETS) if name in split]
    return {name: rows_of(rollout_ids, split[name]) for name in names}


def test_sets(split: dict) -> tuple[str, ...]:
    """The named test sets of a split: ``test_seen``/``test_unseen`` when tasks were held out, else ``test``."""
    present = tuple(name for name in TEST_SETS if split.get(name))
    return present or ("test",)


test_sets.__test__ = False  # not a pytest test despite its name


def unseen_tasks(split: dict, rollouts: list[dict]) -> list[str]:
    """The tasks of a split's ``test_unseen`` rollouts (none when no task was held out)."""
    unseen = set(split.get("test_unseen", ()))
    return sorted({str(r["task"]) for r in rollouts if r["rollout_id"] in unseen})


def calibration_tasks_of(split: dict, rollouts: list[dict]) -> list[str]:
    """The tasks of a split's calibration rollouts that no training rollout shares (calibration tasks)."""
    task = {r["rollout_id"]: str(r["task"]) for r in rollouts}
    trained = {task[i] for i in split.get("train", ())}
    return sorted({task[i] for i in split.get("calibration", ())} - trained)


def validate_split(split: dict, rollouts: list[dict], source: str = "split") -> None:
    """Check a loaded split against a dataset: known rollout ids, each in exactly one split, and
    ``test_seen``/``test_unseen`` (when given) a partition of ``test``."""
    if not isinstance(split, dict):
        raise InputError(f"{source}: expected a JSON object with 'train', 'val' and 'test' lists, got {type(split).__name__}")
    missing = [name for name in SPLIT_NAMES if not isinstance(split.get(name), list)]
    if missing:
        raise InputError(f"{source}: field(s) {missing} missing or not lists of rollout ids")
    known = {r["rollout_id"] for r in rollouts}
    seen: set[int] = set()
    for name in (*SPLIT_NAMES, *OPTIONAL_SPLITS, *TEST_SETS):
        if name not in split:
            continue
        ids = _checked_ids(split, name, known, source)
        if name in TEST_SETS:
            if not ids <= set(split["test"]):
                raise InputError(
                    f"{source}: split '{name}' names rollout ids {sorted(ids - set(split['test']))[:5]} that are not in 'test'"
                )
            continue
        if ids & seen:
            raise InputError(f"{source}: rollout ids {sorted(ids & seen)[:5]} appear in more than one split")
        seen |= ids
    present = [name for name in TEST_SETS if name in split]
    if present and set().union(*(set(split[name]) for name in present)) != set(split["test"]):
        raise InputError(f"{source}: {present} must together hold exactly the rollouts of 'test'")
    if len(present) == 2 and set(split["test_seen"]) & set(split["test_unseen"]):
        raise InputError(f"{source}: 'test_seen' and 'test_unseen' share rollouts")


def _checked_ids(split: dict, name: str, known: set[int], source: str) -> set[int]:
    """One split's ids: a non-empty list of integers the dataset has."""
    values = split[name]
    if not isinstance(values, list):
        raise InputError(f"{source}: field '{name}' must be a list of rollout ids")
    not_ids = [i for i in values if isinstance(i, bool) or not isinstance(i, int)]
    if not_ids:
        raise InputError(f"{source}: split '{name}' holds {not_ids[:5]}, which are not rollout ids (integers)")
    if not values:
        raise InputError(f"{source}: split '{name}' is empty")
    ids = set(values)
    if ids - known:
        raise InputError(f"{source}: split '{name}' names rollout ids {sorted(ids - known)[:5]} that the dataset does not have")
    return ids
