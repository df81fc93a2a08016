"""How many calibration successes an alarm threshold rests on, and whether they are enough for alpha.

The split-conformal threshold at level alpha is the ``ceil((n+1)(1-alpha))``-th smallest score of
``n`` calibration successes (:func:`vlarisk.score.detection.conformal_rank`); it exists only when that
rank is at most ``n``, that is when ``n >= (1-alpha)/alpha`` (9 successes for alpha 0.1, 19 for
0.05). With exactly that many, the threshold is the largest calibration score. The split records
the count (``calibration_count`` in the split JSON), and a dry run warns where it is known to be
too few: from the split file when it exists, else from a simulated source's spec.

Like :mod:`vlarisk.workflow.planning`, this module imports only the standard library, so the Snakefile can
load it on every run at no cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Float noise in (1-alpha)/alpha (0.9/0.1 is 9.000000000000002) must not ask for one more success.
_TOLERANCE = 1e-9


def min_calibration_successes(alpha: float) -> int:
    """The fewest calibration successes for which a split-conformal threshold at ``alpha`` exists."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return math.ceil((1 - alpha) / alpha - _TOLERANCE)


CALIBRATION_SPLIT = "calibration"


def calibration_count(successes: int, alpha: float, fitted_on: str = CALIBRATION_SPLIT) -> dict:
    """The split JSON's ``calibration_count``: the successes the alarm is fitted on, the minimum
    for ``alpha``, enough or not, and the split they come from (``val`` when a split has no
    calibration rollouts: the successes that also chose the epoch, with no conformal guarantee)."""
    needed = min_calibration_successes(alpha)
    return {
        "successes": int(successes),
        "alpha": float(alpha),
        "needed": needed,
        "enough": int(successes) >= needed,
        "fitted_on": fitted_on,
    }


def count_warning(name: str, count: Mapping, estimated: bool = False) -> str | None:
    """A warning line when ``count`` (a :func:`calibration_count` record) is too few; else ``None``."""
    if count.get("fitted_on", CALIBRATION_SPLIT) != CALIBRATION_SPLIT:
        return (
            f"{name}: no calibration rollouts; the alarm is fitted on the {count['successes']} {count['fitted_on']} successes that "
            "also chose the epoch, so its false-alarm rate has no conformal guarantee; set split.calibration_fraction above 0"
        )
    if count["enough"]:
        return None
    about = "about " if estimated else ""
    return (
        f"{name}: {about}{count['successes']} calibration successes, fewer than the {count['needed']} that alpha "
        f"{count['alpha']} needs: no finite alarm threshold exists, so the monitor never alarms; "
        "raise split.calibration_fraction, the number of successes, or alpha"
    )


def expected_calibration_successes(simulate: Mapping, split: Mapping) -> int | None:
    """About how many calibration successes a simulated source's split will hold, from its spec and
    the `split` block (every key given); ``None`` when the spec does not state ``num_success`` (the
    generator's default, 200, is plenty).

    Held-out tasks take ``unseen_task_fraction`` of the successes (a fixed list: its share of
    ``num_tasks``); the estimate leaves out the rounding of task counts, so it is approximate.
    """
    if "num_success" not in simulate:
        return None
    successes = int(simulate["num_success"])
    tasks = simulate.get("num_tasks")
    fraction = float(split["unseen_task_fraction"])
    calibrating = split["calibration_tasks"]
    if calibrating:
        share = fraction if calibrating == "auto" or not tasks else len(calibrating) / tasks
        return int(successes * share)
    held_out = split["held_out_tasks"]
    share = fraction if held_out == "auto" else (len(held_out) / tasks if tasks else 0.0)
    return int(round(float(split["calibration_fraction"]) * successes * (1 - share)))


def plan_warnings(plan, read_split) -> list[str]:
    """Warnings for a :class:`vlarisk.workflow.planning.Plan`'s splits known to hold too few calibration
    successes for its alpha: from the split file (``read_split(path)``: its JSON, or ``None`` when
    absent) when it records a count at that alpha, else, for a simulated source whose spec states
    ``num_success``, from an estimate. A split block without calibration rollouts warns once."""
    settings = plan.split_settings()
    if not settings["calibration_fraction"] and not settings["calibration_tasks"]:
        return [
            "split.calibration_fraction is 0 and split.calibration_tasks is empty: every alarm is fitted on the validation "
            "successes that also chose the epoch, so its false-alarm rate has no conformal guarantee"
        ]
    warnings = []
    for source in plan.sources:
        simulate = plan.source_config(source).get("simulate")
        for path in plan.split_files(source):
            recorded = (read_split(path) or {}).get("calibration_count")
            if recorded is not None and recorded.get("alpha") == plan.alpha:
                warnings.append(count_warning(path, recorded))
                continue
            expected = expected_calibration_successes(simulate, plan.split_settings()) if simulate else None
            if expected is not None:
                warnings.append(count_warning(f"{path} (from {source}'s spec)", calibration_count(expected, plan.alpha), estimated=True))
    return [warning for warning in warnings if warning]
