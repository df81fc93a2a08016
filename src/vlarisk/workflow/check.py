"""Check rollout files before a run: what they hold, and what failure detection can compute from them.

The files are read and every field validated exactly as preparation does (:class:`RolloutReader`),
but nothing is written. The report counts rollouts per outcome and task, the hidden size and the
steps with provided labels, then splits the rollouts the way the pipeline will (:func:`split_rollouts`
with the project's split defaults) and says, for each alpha, whether the calibration set holds
enough successes for a finite split-conformal alarm threshold, and whether tasks are held out as
unseen. See docs/rollout-format.md.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field

from vlarisk.core.errors import InputError
from vlarisk.data.calibration_counts import min_calibration_successes
from vlarisk.data.rollouts import RolloutReader, SkipCounts, iter_rollouts
from vlarisk.data.splits import DEFAULTS, MIN_TASKS_FOR_UNSEEN, split_rollouts, unseen_tasks
from vlarisk.score.detection import DEFAULT_ALPHA

CHECKED_ALPHAS = (0.05, DEFAULT_ALPHA, 0.2)  # the report's alphas: the pipeline's default and one either side


@dataclass
class RolloutCheck:
    """What a success file and a failure file hold, as preparation would keep it."""

    files: dict[str, str]
    rollouts: list[dict] = field(default_factory=list)  # rollout_id, success, task (the split's input)
    steps: Counter = field(default_factory=Counter)  # kept steps per outcome (True/False)
    labelled_steps: int = 0
    hidden_dim: int | None = None
    skips: SkipCounts = field(default_factory=SkipCounts)

    def per_task(self) -> dict[str, tuple[int, int]]:
        """Task -> (successes, failures), numbered tasks in numeric order, then named ones."""
        counts: dict[str, list[int]] = {}
        for rollout in self.rollouts:
            counts.setdefault(rollout["task"], [0, 0])[0 if rollout["success"] else 1] += 1
        order = sorted(counts, key=lambda task: (not task.lstrip("-").isdigit(), int(task) if task.lstrip("-").isdigit() else 0, task))
        return {task: tuple(counts[task]) for task in order}

    def count(self, success: bool) -> int:
        return sum(rollout["success"] == success for rollout in self.rollouts)


def check_rollouts(success_path: str | os.PathLike, failure_path: str | os.PathLike) -> RolloutCheck:
    """Read and validate both files (errors name the file, rollout, step and field) without writing anything."""
    reader = RolloutReader()
    check = RolloutCheck(files={"success": str(success_path), "failure": str(failure_path)})
    for path, success in ((str(success_path), True), (str(failure_path), False)):
        for index, rollout in iter_rollouts(path):
            steps = reader.read(rollout, path, index, success)
            if steps is None:
                continue
            check.rollouts.append({"rollout_id": len(check.rollouts), "success": success, "task": steps.task})
            check.steps[success] += len(steps.hidden)
            check.labelled_steps += int(steps.fields["has_provided_label"].sum())
    check.hidden_dim, check.skips = reader.hidden_dim, reader.skips
    return check


def detection_outlook(check: RolloutCheck, alphas=CHECKED_ALPHAS, seed: int = 0, **split_settings) -> dict:
    """The default split of these rollouts and, per alpha, whether its calibration set allows a finite alarm.

    ``split_settings`` override :data:`vlarisk.data.splits.DEFAULTS`. A split the rollouts cannot make
    (an outcome missing from a part) is reported under ``split_error`` instead of raised.
    """
    settings = {**DEFAULTS, **split_settings}
    try:
        split = split_rollouts(check.rollouts, seed=seed, source="these rollouts", **settings)
    except InputError as exc:
        return {"settings": settings, "split_error": str(exc)}
    outcome = {r["rollout_id"]: r["success"] for r in check.rollouts}
    calibration = sum(outcome[i] for i in split.get("calibration", []))
    alarms = {alpha: {"needed": min_calibration_successes(alpha), "have": calibration} for alpha in alphas}
    unseen = split.get("test_unseen", [])
    return {
        "settings": settings,
        "calibration_successes": calibration,
        "alarms": alarms,
        "unseen_tasks": unseen_tasks(split, check.rollouts),
        "unseen_rollouts": (sum(outcome[i] for i in unseen), sum(not outcome[i] for i in unseen)),
    }


def report_lines(check: RolloutCheck, outlook: dict) -> list[str]:
    """The check as lines for the terminal."""
    per_task = check.per_task()
    labelled = check.labelled_steps
    total_steps = check.steps[True] + check.steps[False]
    lines = [
        f"{check.files['success']}: {check.count(True)} successful rollouts, {check.steps[True]} steps",
        f"{check.files['failure']}: {check.count(False)} failed rollouts, {check.steps[False]} steps",
        f"hidden size: {check.hidden_dim}",
        f"tasks: {len(per_task)} (successes/failures) " + ", ".join(f"{task}: {s}/{f}" for task, (s, f) in per_task.items()),
        f"labels: {labelled} of {total_steps} steps carry per_dim_risk; "
        + ("all provided" if labelled == total_steps else f"{total_steps - labelled} get the heuristic labels (docs/rollout-format.md)"),
        check.skips.describe(),
    ]
    settings = outlook["settings"]
    lines.append(
        f"failure detection with the split calibration_fraction={settings['calibration_fraction']}, "
        f"held_out_tasks={settings['held_out_tasks']}, unseen_task_fraction={settings['unseen_task_fraction']}:"
    )
    if "split_error" in outlook:
        return [*lines, f"  the split cannot be made: {outlook['split_error']}"]
    for alpha, need in outlook["alarms"].items():
        verdict = "ok" if need["have"] >= need["needed"] else _too_few(need["needed"], settings["calibration_fraction"])
        lines.append(f"  alpha {alpha}: needs >= {need['needed']} calibration successes, has {need['have']}: {verdict}")
    lines.append(_unseen_line(outlook, len(per_task)))
    return lines


def _too_few(needed: int, fraction: float) -> str:
    """What a missing alarm threshold costs, and how many seen-task successes would give one."""
    text = "NO alarm threshold: the alarm, FPR/TPR and lead times will be undefined"
    return f"{text} (about {math.ceil(needed / fraction)} seen-task successes give {needed})" if fraction > 0 else text


def _unseen_line(outlook: dict, num_tasks: int) -> str:
    """Whether tasks are held out for the unseen-task test, and if not, why."""
    tasks = outlook["unseen_tasks"]
    if tasks:
        successes, failures = outlook["unseen_rollouts"]
        return f"  unseen tasks: {len(tasks)} of {num_tasks} held out ({', '.join(tasks)}): {successes} successes, {failures} failures"
    if outlook["settings"]["held_out_tasks"] == "auto" and num_tasks < MIN_TASKS_FOR_UNSEEN:
        return f"  unseen tasks: none (held_out_tasks=auto needs >= {MIN_TASKS_FOR_UNSEEN} tasks, these have {num_tasks})"
    return "  unseen tasks: none held out"
