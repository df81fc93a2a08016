"""The test-predictions file: per test step of one source, what the evaluation scored.

The file (``.npz``, no pickles) holds per test step the predicted risk, the label, the positives
used for AUC/AP (by the training-split label cut-offs the evaluation used), ``fail_within_k``, the
outcome, the rollout, step and task, and the named test set of the row, plus a JSON record of the checkpoint, dataset and fraction it came
from, so each curve and correlation traces back to one trained model and its ``results.json``.
"""

from __future__ import annotations

import json
import os

import numpy as np
from scipy.stats import pearsonr, spearmanr

from vlarisk.core.io_utils import atomic_path, file_sha256
from vlarisk.data.documents import EARLIER_LABEL_CUTOFFS, LABEL_CUTOFFS
from vlarisk.data.label_cutoffs import binarize
from vlarisk.data.splits import test_sets


def prediction_arrays(scored, checkpoint_path: str, fraction_of_max: float) -> dict:
    """The file's arrays for a :class:`~vlarisk.score.evaluation.ScoredSplit` of ``checkpoint_path``'s model."""
    dataset, rows = scored.source.dataset, scored.rows
    label = np.asarray(scored.labels, dtype=np.float32)
    provenance = {
        "checkpoint": str(checkpoint_path),
        "checkpoint_sha256": file_sha256(checkpoint_path),
        "dataset": str(dataset.path),
        "dataset_sha256": dataset.content_hash,
        "positive_fraction_of_max": fraction_of_max,
    }
    return {
        "prediction": scored.prediction,
        "label": label,
        "positive": binarize(label, scored.label_cutoffs),
        LABEL_CUTOFFS: scored.label_cutoffs,
        "fail_within_k": np.asarray(dataset.arrays["fail_within_k"][rows], dtype=np.uint8),
        "success": np.asarray(dataset.arrays["success"][rows], dtype=np.uint8),
        "rollout_id": np.asarray(dataset.rollout_id[rows], dtype=np.int32),
        "step_index": np.asarray(dataset.arrays["step_index"][rows], dtype=np.int32),
        "task_index": np.asarray(dataset.arrays["task_index"][rows], dtype=np.int32),
        "test_set": test_set_of_rows(scored.source, rows),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    }


def test_set_of_rows(source, rows: np.ndarray) -> np.ndarray:
    """Each row's named test set (``test_seen``/``test_unseen``, or ``test`` without held-out tasks)."""
    names = np.full(len(rows), "test", dtype="<U11")
    for name in test_sets(source.split):
        names[np.isin(rows, source.rows[name])] = name
    return names


test_set_of_rows.__test__ = False


def save_predictions(path: str | os.PathLike, arrays: dict) -> None:
    """Write the arrays of :func:`prediction_arrays` as a compressed ``.npz``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_predictions(path: str | os.PathLike) -> dict:
    """Arrays of a predictions file, ``provenance`` decoded to a dict; the label cut-offs of a file
    written under their earlier name are read as ``label_cutoffs``."""
    with np.load(path, allow_pickle=False) as record:
        arrays = {name: record[name] for name in record.files}
    if EARLIER_LABEL_CUTOFFS in arrays:
        arrays.setdefault(LABEL_CUTOFFS, arrays.pop(EARLIER_LABEL_CUTOFFS))
    arrays["provenance"] = json.loads(str(arrays["provenance"]))
    return arrays


def failure_relation(risk: np.ndarray, label: np.ndarray, fail_within_k: np.ndarray, bins: int = 5) -> dict:
    """How one dimension's predicted risk tracks failures.

    ``spearman_fail``: rank correlation with ``fail_within_k`` (does higher risk mean a failure is
    near?); ``pearson_label``: linear correlation with the dimension's risk label;
    ``fail_rate_by_bin``: the share of steps with a failure within the window in each of ``bins``
    equal-count bins of predicted risk, lowest risk first (ties are split in step order).
    """
    risk = np.asarray(risk, dtype=np.float64)
    fail = np.asarray(fail_within_k, dtype=np.float64)
    order = np.argsort(risk, kind="stable")
    return {
        "spearman_fail": _correlation(spearmanr, risk, fail),
        "pearson_label": _correlation(pearsonr, risk, np.asarray(label, dtype=np.float64)),
        "fail_rate_by_bin": [float(fail[part].mean()) if len(part) else None for part in np.array_split(order, bins)],
    }


def _correlation(method, x: np.ndarray, y: np.ndarray) -> float | None:
    """Correlation coefficient, ``None`` where either side is constant (it is undefined there)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(method(x, y)[0])
