"""A source's baselines on one split, fitted once and read by every model scored on that split.

The baselines (:mod:`vlarisk.score.baselines`, :mod:`vlarisk.score.distance_baselines`), their metrics
and their detection blocks depend on the dataset, the split, the label cut-offs and the detection
options, never on the model: every ablation cell of one seed, the single model and a multi-model's
block of the source all report the same. :func:`fit_source_baselines` computes them;
:func:`write_source_baselines` keeps them as two files, ``<name>.json`` (what they were computed
with, metrics, detection blocks) and ``<name>.npz`` (each scorer's scores on the scored rows, then
the calibration rows: what attribution reads); :func:`checked_source_baselines` reads them back and
refuses a file computed with anything else than the scoring at hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import atomic_path, file_sha256, write_json
from vlarisk.data.documents import BASELINE_SCORES_SUFFIX
from vlarisk.score.alarm import baseline_detection
from vlarisk.score.baselines import baseline_metrics, baseline_scores
from vlarisk.score.detection_flags import DetectionOptions
from vlarisk.score.distance_baselines import distance_scores
from vlarisk.train.sources import Source

# What the baselines were computed with; a scoring may read them only when all of these match its own.
IDENTITY_FIELDS = ("dataset_sha256", "split_sha256", "subset", "label_cutoffs", "planting_sha256", "detection_options")


@dataclass
class SourceBaselines:
    """Every baseline of one source and split: ``scores`` ``[n_scored + calibration rows, 7]`` by scorer,
    their ``metrics`` on the scored rows, their ``detection`` blocks by test set, and ``identity``
    (:func:`baselines_identity`)."""

    identity: dict
    n_scored: int
    scores: dict[str, np.ndarray]
    metrics: dict
    detection: dict

    def pairs(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each scorer's scores on the scored rows and on the calibration rows."""
        return {name: (values[: self.n_scored], values[self.n_scored :]) for name, values in self.scores.items()}


def baselines_identity(source: Source, subset: str, label_cutoffs: np.ndarray, options: DetectionOptions) -> dict:
    """The facts the baselines of ``subset`` of ``source`` depend on, as JSON values (NaN cut-offs as null)."""
    split = json.dumps(source.split, sort_keys=True).encode()
    return {
        "source": source.name,
        "dataset": str(source.dataset.path),
        "dataset_sha256": source.dataset.content_hash,
        "split_sha256": hashlib.sha256(split).hexdigest(),
        "subset": subset,
        "label_cutoffs": [None if np.isnan(value) else float(value) for value in np.asarray(label_cutoffs, dtype=np.float64)],
        "planting_sha256": file_sha256(source.planting_path) if source.planting_path else None,
        "detection_options": json.loads(json.dumps(options.report_options())),
    }


def fit_source_baselines(source: Source, subset: str, label_cutoffs: np.ndarray, options: DetectionOptions) -> SourceBaselines:
    """Fit every baseline on ``source``'s training rows and score ``subset`` and the calibration rows.

    ``label_cutoffs`` are the training-split cut-offs a model of this source is scored with (the
    logistic fit's targets); ``options`` those of its detection.
    """
    dataset, scored_rows = source.dataset, source.rows[subset]
    train_rows, both = source.rows["train"], np.concatenate([scored_rows, source.calibration_rows()[1]])
    scores = baseline_scores(dataset, train_rows, both, label_cutoffs, source.planting_path)
    scores.update(distance_scores(dataset.hidden, train_rows, np.asarray(dataset.arrays["success"][train_rows], dtype=bool), both))
    n_scored = len(scored_rows)
    metrics = baseline_metrics({name: values[:n_scored] for name, values in scores.items()}, source.labels(subset), label_cutoffs)
    fitted = SourceBaselines(baselines_identity(source, subset, label_cutoffs, options), n_scored, scores, metrics, {})
    fitted.detection = baseline_detection(source, scored_rows, fitted.pairs(), options)
    return fitted


def scores_path(path: str | os.PathLike) -> Path:
    """The scores file beside a baselines ``.json``."""
    return Path(path).with_suffix(BASELINE_SCORES_SUFFIX)


def write_source_baselines(path: str | os.PathLike, baselines: SourceBaselines) -> None:
    """Write ``path`` (JSON) and its :func:`scores_path`, each atomically; the JSON last, so a
    complete JSON has its scores beside it."""
    with atomic_path(scores_path(path)) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **baselines.scores)
    document = {**baselines.identity, "n_scored": baselines.n_scored, "metrics": baselines.metrics, "detection": baselines.detection}
    write_json(path, document)


def read_source_baselines(path: str | os.PathLike) -> SourceBaselines:
    """The baselines written by :func:`write_source_baselines`; a missing or malformed file is an :class:`InputError`."""
    from vlarisk.core.cli import read_json

    document = read_json(str(path))
    missing = [key for key in (*IDENTITY_FIELDS, "n_scored", "metrics", "detection") if key not in document]
    if missing:
        raise InputError(f"{path}: not a baselines file (no {', '.join(missing)})")
    try:
        with np.load(scores_path(path)) as stored:
            scores = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{scores_path(path)}: cannot read the baselines' scores ({exc})") from None
    identity = {key: document[key] for key in document if key not in ("n_scored", "metrics", "detection")}
    return SourceBaselines(identity, int(document["n_scored"]), scores, document["metrics"], document["detection"])


def checked_source_baselines(
    path: str | os.PathLike, source: Source, subset: str, label_cutoffs: np.ndarray, options: DetectionOptions
) -> SourceBaselines:
    """:func:`read_source_baselines`, refused with a one-line :class:`InputError` naming the file and the
    field when they were computed on other data, split, subset, cut-offs, planting or detection options."""
    return _checked(read_source_baselines(path), path, source, subset, label_cutoffs, options)


def _checked(baselines: SourceBaselines, path, source: Source, subset: str, label_cutoffs: np.ndarray, options: DetectionOptions):
    expected = baselines_identity(source, subset, label_cutoffs, options)
    for field in IDENTITY_FIELDS:
        if baselines.identity[field] != expected[field]:
            raise InputError(
                f"{path}: baselines computed with another {field} than this scoring's "
                f"({_brief(baselines.identity[field])} in the file, {_brief(expected[field])} here); recompute them for {source.dataset.path}"
            )
    return baselines


def checked_baselines_by_source(
    paths: list[str], sources: list[Source], label_cutoffs: dict[str, np.ndarray], options: DetectionOptions
) -> dict[str, SourceBaselines]:
    """The test-split baselines files of several sources, each matched to its source by the name it
    records and checked (:func:`checked_source_baselines`); a source without a file has none here."""
    by_name = {source.name: source for source in sources}
    found = {}
    for path in paths:
        baselines = read_source_baselines(path)
        name = baselines.identity.get("source")
        if name not in by_name:
            raise InputError(f"{path}: baselines of source {name!r}, which is none of the scored sources {sorted(by_name)}")
        if name in found:
            raise InputError(f"{path}: a second baselines file for source {name!r}")
        found[name] = _checked(baselines, path, by_name[name], "test", label_cutoffs[name], options)
    return found


def _brief(value) -> str:
    """A field's value for an error line: hashes shortened."""
    return f"{value[:12]}..." if isinstance(value, str) and len(value) == 64 else json.dumps(value)
