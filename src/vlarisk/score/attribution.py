"""Per-dimension attribution on a physics source: does the riskiest dimension name the injected axis?

On the test failures whose fault was a perception bias along one axis (x, y or z), a scorer's
riskiest dimension is the arm dimension whose scores over the ``window`` steps before the point of
no return ``t*`` sit highest *relative to successes*: each dimension's scores are turned into
their percentile among the calibration successes' scores of that dimension (scales differ
between dimensions), averaged over the window, and the largest wins. Accuracy is the fraction of
rollouts where that is the biased axis, with an exact (Clopper-Pearson) 95% interval, against
chance (one over the candidate dimensions) and against the counterfactual blame labels (the
fraction whose blame vector holds the biased axis). Nothing to score gives ``accuracy: null``
with the reason under ``undefined``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.intervals import clopper_pearson
from vlarisk.data.dataset import RiskDataset

CANDIDATES = (0, 1, 2, 6)  # the arm's dimensions: x, y, z, gripper (MetaWorld has no rotation actions)
WINDOW = 20  # steps before t* that are scored
COLLECTION_FILE = "collection.json"  # written beside a collected source's rollout pickles


def percentiles(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each column of ``scores`` as the fraction of that column of ``reference`` at or below it."""
    out = np.empty(scores.shape, dtype=np.float64)
    for column in range(scores.shape[1]):
        ordered = np.sort(reference[:, column])
        out[:, column] = np.searchsorted(ordered, scores[:, column], side="right") / len(ordered)
    return out


def riskiest_dimension(window_scores: np.ndarray, reference: np.ndarray, candidates=CANDIDATES) -> int:
    """The candidate dimension whose window scores rank highest among the reference (success) scores
    (candidates the scorer leaves NaN, e.g. a logistic fit without positives, are skipped)."""
    columns = [c for c in candidates if np.isfinite(reference[:, c]).all()]  # a scorer may leave a dimension unscored
    ranks = percentiles(window_scores[:, columns], reference[:, columns]).mean(axis=0)
    return columns[int(np.argmax(ranks))]


def accuracy_block(hits: list[bool], axes: list[str]) -> dict:
    """Accuracy, its exact interval and the per-axis accuracies of a list of hits."""
    if not hits:
        return {"accuracy": None, "n": 0, "ci95": None, "by_axis": {}, "undefined": "no test failure with a single-axis perception bias"}
    by_axis = {}
    for axis in ("x", "y", "z"):
        own = [hit for hit, a in zip(hits, axes, strict=True) if a == axis]
        by_axis[axis] = {"n": len(own), "accuracy": float(np.mean(own)) if own else None}
    return {
        "accuracy": float(np.mean(hits)),
        "n": len(hits),
        "hits": int(sum(hits)),
        "ci95": clopper_pearson(int(sum(hits)), len(hits)),
        "by_axis": by_axis,
    }


def collection_of(dataset: RiskDataset) -> dict | None:
    """The ``collection.json`` beside the dataset's failure pickle (a collected physics source), else None."""
    failure = dataset.metadata.get("source_files", {}).get("failure")
    path = Path(failure).parent / COLLECTION_FILE if failure else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def not_applicable(collection: dict) -> dict[str, str]:
    """The reason each dimension the collected arm lacks is undefined, for ``results.json["undefined"]``."""
    return {name: "not applicable: the simulated arm has no such action" for name in collection.get("absent_dimensions", [])}


def attribution_cases(dataset: RiskDataset, rows: np.ndarray, collection: dict) -> list[tuple[str, np.ndarray, list | None]]:
    """``(biased axis, positions in rows of the window before t*, blame vector)`` per test failure with a perception bias."""
    failures = {record["index"]: record for record in collection["failures"]}
    table = {entry["rollout_id"]: entry for entry in dataset.metadata["rollouts"]}
    rollout_ids = np.asarray(dataset.arrays["rollout_id"][rows])
    steps = np.asarray(dataset.arrays["step_index"][rows])
    cases = []
    for rollout_id in np.unique(rollout_ids):
        entry = table[int(rollout_id)]
        record = failures.get(entry["index"]) if entry["file"] == "failure" else None
        if record is None or record["perturbation"]["kind"] != "perception_bias" or record["t_star"] is None:
            continue
        t_star = record["t_star"]
        window = np.flatnonzero((rollout_ids == rollout_id) & (steps >= t_star - WINDOW) & (steps < t_star))
        if window.size:
            cases.append((record["perturbation"]["axis"], window, record["blame"]))
    return cases


def attribution_report(
    dataset: RiskDataset,
    rows: np.ndarray,
    scorers: dict[str, tuple[np.ndarray, np.ndarray]],
    collection: dict,
    test_sets: dict[str, np.ndarray] | None = None,
) -> dict:
    """``results.json["attribution"]``: the model's accuracy (scorer ``model``) beside every other scorer's and the blame labels'.

    ``scorers`` maps a name to (scores of ``rows``, scores of the calibration successes);
    ``test_sets`` (e.g. test_seen, test_unseen: their rows) adds the same blocks per test set.
    """
    cases = attribution_cases(dataset, rows, collection)
    axes = [axis for axis, _, _ in cases]
    hits = {
        name: [ACTION_DIMENSIONS[riskiest_dimension(scores[window], reference)] == axis for axis, window, _ in cases]
        for name, (scores, reference) in scorers.items()
    }
    hits["blame_labels"] = [bool(blame and blame[ACTION_DIMENSIONS.index(axis)]) for axis, _, blame in cases]
    report = {
        **_blocks(hits, axes, range(len(cases))),
        "chance": 1 / len(CANDIDATES),
        "candidates": [ACTION_DIMENSIONS[d] for d in CANDIDATES],
        "window": WINDOW,
        "rule": "test failures with a single-axis perception bias; riskiest = argmax over x, y, z, gripper of the mean percentile "
        "(among calibration successes) of the scores in [t*-20, t*); blame_labels: the blame vector holds the biased axis",
    }
    if test_sets:
        rollout_ids = np.asarray(dataset.arrays["rollout_id"])
        case_rollouts = [int(rollout_ids[rows[window[0]]]) for _, window, _ in cases]
        report["by_test_set"] = {}
        for name, subset_rows in test_sets.items():
            members = set(np.unique(rollout_ids[subset_rows]).tolist())
            report["by_test_set"][name] = _blocks(hits, axes, [i for i, r in enumerate(case_rollouts) if r in members])
    return report


def _blocks(hits: dict[str, list[bool]], axes: list[str], chosen) -> dict:
    """The model's accuracy block with ``n_rollouts`` and every other scorer's under ``baselines``, over the ``chosen`` cases."""
    chosen = list(chosen)
    blocks = {name: accuracy_block([values[i] for i in chosen], [axes[i] for i in chosen]) for name, values in hits.items()}
    return {**blocks.pop("model"), "n_rollouts": len(chosen), "baselines": blocks}
