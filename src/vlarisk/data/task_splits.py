"""Detection numbers over several task splits: per-split values, mean and SD.

With ``split.n_task_splits`` above 1, each extra leave-tasks-out split trains and scores its own
model (``results/models/<source>/task-split-<k>/``). The source's main ``results.json`` (split 0)
then gains, in each detection set and in each of its baselines, ``splits``::

    {"task_splits": [0, 1, 2], "results": [paths],
     "rollout_auc": {"values": [...], "mean": m, "sd": s, "n": 3},
     "balanced_accuracy": {...}}        # the deployed monitor's: detection[set]["deployed"]

A split whose set or metric is missing or undefined contributes ``null``; mean and SD are taken
over the defined values (SD: sample, ``ddof=1``; ``null`` with fewer than two) and ``undefined``
says why a summary is ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vlarisk.data.documents import BASELINES, DETECTION

# The summarised metrics and where each lives in a detection block.
SPLIT_METRICS = {"rollout_auc": ("rollout_auc",), "balanced_accuracy": ("deployed", "balanced_accuracy")}


def metric_value(block: dict | None, path: tuple[str, ...]) -> float | None:
    """The value at ``path`` in a detection block; ``None`` when absent, null or not finite."""
    value = block
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def summary(values: Sequence[float | None]) -> dict:
    """Values over splits with their mean and sample SD over the defined ones."""
    defined = [v for v in values if v is not None]
    result = {
        "values": list(values),
        "mean": float(np.mean(defined)) if defined else None,
        "sd": float(np.std(defined, ddof=1)) if len(defined) > 1 else None,
        "n": len(defined),
    }
    if len(defined) < 2:
        result["undefined"] = f"defined on {len(defined)} of {len(values)} splits; an SD needs two"
    return result


def splits_block(blocks: Sequence[dict | None], paths: Sequence[str], metrics: dict[str, tuple[str, ...]] = SPLIT_METRICS) -> dict:
    """The ``splits`` entry of one scorer in one test set, from its block in each split (in order);
    ``metrics`` names each summarised value and its path in a block."""
    return {
        "task_splits": list(range(len(blocks))),
        "results": list(paths),
        **{name: summary([metric_value(block, path) for block in blocks]) for name, path in metrics.items()},
    }


def scorer_summaries(blocks: Sequence[dict | None], scorers: Sequence[str], metrics: dict[str, tuple[str, ...]]) -> dict:
    """One test set's blocks over the splits, summarised per scorer (``model``: the block itself,
    otherwise its baseline of that name) and metric, with each split's rollout counts."""
    per_scorer = {}
    for scorer in scorers:
        scorer_blocks = [block if scorer == "model" else (block or {}).get(BASELINES, {}).get(scorer) for block in blocks]
        per_scorer[scorer] = splits_block(scorer_blocks, [], metrics)
    return {"scorers": per_scorer, "n_rollouts": [(block or {}).get("n_rollouts") for block in blocks]}


def fpr_within_alpha(deployed: dict, alpha: float) -> dict:
    """Whether a deployed monitor's false-alarm rate is consistent with the conformal bound ``alpha``:
    the point at or below alpha, and alpha inside or above the exact interval (its lower end at or
    below alpha, so the data do not show the rate exceeds alpha). ``None`` without a threshold."""
    fpr, interval = deployed.get("fpr"), (deployed.get("ci95") or {}).get("fpr")
    if fpr is None or interval is None:
        return {"fpr": fpr, "ci95": interval, "alpha": alpha, "point_within": None, "consistent": None}
    return {"fpr": fpr, "ci95": interval, "alpha": alpha, "point_within": fpr <= alpha, "consistent": interval[0] <= alpha}


def add_task_splits(detection: dict, others: Sequence[dict], paths: Sequence[str]) -> None:
    """Add ``splits`` to every test set (and baseline) of ``detection``, split 0's own blocks, from
    the ``detection`` of the other splits' results (``others``, splits 1.. in order; ``paths``:
    every split's results.json, split 0's first)."""
    if len(paths) != len(others) + 1:
        raise ValueError(f"{len(paths)} paths for {len(others) + 1} splits")
    for name, block in detection.items():
        blocks = [block, *(other.get(DETECTION, {}).get(name) for other in others)]
        block["splits"] = splits_block(blocks, paths)
        for scorer, baseline in block.get(BASELINES, {}).items():
            if isinstance(baseline, dict):
                baseline_blocks = [(b or {}).get(BASELINES, {}).get(scorer) for b in blocks]
                baseline["splits"] = splits_block(baseline_blocks, paths)
