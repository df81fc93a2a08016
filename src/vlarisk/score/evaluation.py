"""Scoring a trained predictor on the test split of one source or several, and the ``results.json`` payload.

Each source is scored with the positive-label cut-offs of its own training split, saved in the
checkpoint at training time. Several sources are reported each on its own, exactly as scoring it
alone would, and pooled: predictions and labels concatenated, a row a positive when its label
reaches *its own source's* cut-off (label scales differ between sources).
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

import vlarisk
from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.device import describe
from vlarisk.core.errors import InputError
from vlarisk.data.documents import BASELINES, DETECTION, LABEL_CUTOFFS, PER_SOURCE, SUMMARY, TEST_METRICS, Results, write_results_file
from vlarisk.data.label_cutoffs import binarize
from vlarisk.data.splits import TEST_SETS
from vlarisk.model.checkpoints import saved_label_cutoffs
from vlarisk.model.inference import predict_rows
from vlarisk.model.models import NormalizedMultiRiskPredictor, NormalizedRiskPredictor
from vlarisk.score.alarm import source_detection, training_band
from vlarisk.score.attribution import attribution_report, collection_of, not_applicable
from vlarisk.score.baselines import with_model_comparison
from vlarisk.score.detection_flags import DetectionOptions
from vlarisk.score.metrics import regression_metrics, step_target_metrics, test_metrics
from vlarisk.score.source_baselines import SourceBaselines, fit_source_baselines
from vlarisk.score.verdict import summary_of
from vlarisk.train.sources import Source

ATTRIBUTION_BASELINES = ("logistic", "abs_action")  # per-dimension scorers (step_index is the same in every dimension)


def code_fingerprint() -> str:
    """Hash of the package's source files: which code produced a result, even outside git."""
    digest = hashlib.sha256()
    for path in sorted(Path(vlarisk.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def checkpoint_label_cutoffs(checkpoint: dict, source: Source, fraction_of_max: float, log: Callable[[str], None] = print) -> np.ndarray:
    """The label cut-offs to score ``source`` by: those saved at training when they were fixed on this
    very dataset and split at this fraction, else computed from the source's training split."""
    saved = saved_label_cutoffs(checkpoint, source.name)
    if saved is not None and (saved.data_sha256, saved.split, saved.fraction_of_max) == (
        source.dataset.content_hash,
        source.split,
        fraction_of_max,
    ):
        return saved.label_cutoffs
    why = "the checkpoint saves none" if saved is None else "the checkpoint's were fixed on other data, another split or fraction"
    log(f"{source.dataset.path}: positive-label cut-offs computed from the training split ({why})")
    return source.label_cutoffs(fraction_of_max)


@dataclass
class ScoredSplit:
    """A model's predictions on one subset of a source's split, with the label cut-offs they are scored
    by, on the calibration rows (:meth:`~vlarisk.train.sources.Source.calibration_rows`) for detection,
    and the band shape of its risk on the training successes (:func:`~vlarisk.score.alarm.training_band`)."""

    source: Source
    subset: str
    prediction: np.ndarray
    label_cutoffs: np.ndarray
    calibration_prediction: np.ndarray
    band: dict

    @property
    def rows(self) -> np.ndarray:
        """The scored rows."""
        return self.source.rows[self.subset]

    @cached_property
    def labels(self) -> np.ndarray:
        """The scored rows' labels."""
        return self.source.labels(self.subset)


def score_source(
    predictor: NormalizedRiskPredictor, source: Source, label_cutoffs: np.ndarray, device: torch.device, subset: str = "test"
) -> ScoredSplit:
    """Predict ``subset`` and the calibration rows of ``source`` with a predictor that normalises its inputs itself."""

    def predict(rows: np.ndarray) -> np.ndarray:
        return predict_rows(predictor.predictor, source.dataset.hidden, rows, predictor.mean, predictor.std, device)

    calibration = predict(source.calibration_rows()[1])
    return ScoredSplit(source, subset, predict(source.rows[subset]), label_cutoffs, calibration, training_band(source, predictor, device))


def score_sources(
    model: NormalizedMultiRiskPredictor, sources: list[Source], label_cutoffs: dict[str, np.ndarray], device: torch.device
) -> list[ScoredSplit]:
    """Each source's test split scored through its own input layer."""
    scored = []
    for source in sources:
        if source.name not in model.sources:
            raise InputError(f"{source.dataset.path}: source {source.name!r} is not one the model was trained on ({model.sources})")
        predictor = model.source_predictor(source.name)
        if predictor.mean.numel() != source.dataset.hidden_dim:
            raise InputError(
                f"{source.dataset.path}: source {source.name!r} has {source.dataset.hidden_dim}-D hidden states, the model expects {predictor.mean.numel()}-D"
            )
        scored.append(score_source(predictor, source, label_cutoffs[source.name], device))
    return scored


def source_report(
    scored: ScoredSplit, options: DetectionOptions, log: Callable[[str], None] = print, baselines: SourceBaselines | None = None
) -> dict:
    """:func:`~vlarisk.score.metrics.test_metrics` of a scored split with the baselines scored the same
    way, the per-step targets of :func:`~vlarisk.score.metrics.step_target_metrics`, and rollout-level
    ``detection`` (:func:`~vlarisk.score.alarm.source_detection`) of the model and of every baseline.

    ``baselines`` are the source's, fitted beforehand on the same split, cut-offs and options
    (:func:`~vlarisk.score.source_baselines.checked_source_baselines`); without them they are fitted here.
    Logs a line when the model's mean AUC does not beat the logistic baseline's, and one when the
    detection thresholds are not conformally valid.
    """
    source, dataset = scored.source, scored.source.dataset
    report = test_metrics(scored.prediction, scored.labels, scored.label_cutoffs)
    fail_soon = np.asarray(dataset.arrays["fail_within_k"][scored.rows])
    report["step_targets"] = step_target_metrics(scored.prediction, scored.labels, fail_soon, scored.label_cutoffs)
    if baselines is None:
        baselines = fit_source_baselines(source, scored.subset, scored.label_cutoffs, options)
    report[BASELINES] = with_model_comparison(baselines.metrics, report[TEST_METRICS])
    band = scored.band if options.threshold == "band" else None
    if options.threshold == "band" and band is None:
        raise InputError(f"{dataset.path}: --alarm-threshold band: too few successful training rollouts to shape a band")
    report[DETECTION] = source_detection(
        source, scored.rows, scored.prediction, scored.calibration_prediction, baselines.detection, options, band
    )
    invalid = next((block for block in report[DETECTION].values() if not block["conformal_valid"]), None)
    if invalid is not None:
        log(f"{dataset.path}: detection thresholds are NOT conformally valid ({invalid['conformal_reason']})")
    collection = collection_of(dataset)
    if collection is not None:  # a collected physics source: does the riskiest dimension name the injected axis?
        pairs = baselines.pairs()
        scorers = {"model": (scored.prediction, scored.calibration_prediction), **{k: pairs[k] for k in ATTRIBUTION_BASELINES}}
        test_sets = {name: source.rows[name] for name in TEST_SETS if name in source.rows}
        report["attribution"] = attribution_report(dataset, scored.rows, scorers, collection, test_sets)
        report["undefined"].update(not_applicable(collection))
    versus = report[BASELINES]["model_vs_logistic"]
    if versus["beats_logistic"] is False:
        log(
            f"{dataset.path}: the model does NOT beat the logistic baseline: mean {scored.subset} AUC {versus['model_mean_auc']:.4f} "
            f"vs {versus['logistic_mean_auc']:.4f} over {', '.join(versus['dimensions'])}"
        )
    return report


def _dataset_fields(source: Source) -> dict:
    return {"dataset": source.dataset.path, "dataset_sha256": source.dataset.content_hash}


def run_provenance(device: torch.device, started: float) -> dict:
    """Which code, libraries and device produced a result, and the seconds since ``started``."""
    return {
        "code_version": f"vlarisk {vlarisk.__version__} ({code_fingerprint()})",
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "device": describe(device),
        "evaluation_seconds": time.perf_counter() - started,
    }


def single_source_report(
    scored: ScoredSplit,
    device: torch.device,
    started: float,
    options: DetectionOptions,
    log: Callable[[str], None] = print,
    baselines: SourceBaselines | None = None,
) -> dict:
    """One source's metrics, baselines and detection, with provenance (``started``: when scoring began);
    ``baselines``: see :func:`source_report`."""
    report = source_report(scored, options, log, baselines)
    report["provenance"] = {**_dataset_fields(scored.source), **run_provenance(device, started)}
    return report


def pooled_report(scored: list[ScoredSplit]) -> dict:
    """Metrics over every source's rows at once; a row's positives follow its own source's label cut-offs.

    The per-source binarisations are concatenated and scored as 0/1 labels with cut-off 1; the
    error metrics are then recomputed on the raw labels.
    """
    prediction = np.concatenate([s.prediction for s in scored])
    labels = np.concatenate([s.labels for s in scored])
    positives = np.concatenate([binarize(s.labels, s.label_cutoffs) for s in scored]).astype(np.float32)
    any_cutoff = ~np.all(np.isnan([s.label_cutoffs for s in scored]), axis=0)
    report = test_metrics(prediction, positives, np.where(any_cutoff, 1.0, np.nan))
    report[TEST_METRICS].update(regression_metrics(prediction, labels))
    del report[LABEL_CUTOFFS]  # per source only: see per_source[<name>]["label_cutoffs"]
    return report


def multi_source_report(
    scored: list[ScoredSplit],
    device: torch.device,
    started: float,
    options: DetectionOptions,
    log: Callable[[str], None] = print,
    baselines: dict[str, SourceBaselines] | None = None,
) -> dict:
    """Each source's own metrics, baselines and detection, which lead, and pooled test metrics, with provenance.
    ``baselines`` by source name: see :func:`source_report` (a source without any has them fitted here).

    The pooled block has no baselines and no detection: no single baseline is fitted across
    sources, and scores from different input layers are not comparable rollout by rollout.
    """
    report = pooled_report(scored)
    baselines = baselines or {}
    report[PER_SOURCE] = {
        s.source.name: {**source_report(s, options, log, baselines.get(s.source.name)), **_dataset_fields(s.source)} for s in scored
    }
    report["pooling"] = "rows of all sources concatenated; positives by each row's own source's training-split label cut-offs"
    report["provenance"] = run_provenance(device, started)
    return report


def evaluate(
    predictor: NormalizedRiskPredictor,
    source: Source,
    label_cutoffs: np.ndarray,
    device: torch.device,
    subset: str = "test",
    log: Callable[[str], None] = print,
    options: DetectionOptions | None = None,
) -> dict:
    """Metrics of ``predictor`` and its baselines on ``subset`` of one source, and detection."""
    started = time.perf_counter()
    scored = score_source(predictor, source, label_cutoffs, device, subset)
    return single_source_report(scored, device, started, options or DetectionOptions(), log)


def evaluate_sources(
    model: NormalizedMultiRiskPredictor,
    sources: list[Source],
    label_cutoffs: dict[str, np.ndarray],
    device: torch.device,
    log: Callable[[str], None] = print,
    options: DetectionOptions | None = None,
    baselines: dict[str, SourceBaselines] | None = None,
) -> dict:
    """Per-source and pooled test metrics and per-source detection of a multi-source model (see :func:`multi_source_report`)."""
    started = time.perf_counter()
    scored = score_sources(model, sources, label_cutoffs, device)
    return multi_source_report(scored, device, started, options or DetectionOptions(), log, baselines)


def per_source_summary(report: dict) -> str:
    """One line, per source first: its mean test AUC beside its logistic baseline's and its unseen-task
    rollout AUC when tasks were held out; then the pooled mean AUC (rows of different sources mixed)."""
    parts = []
    for name, entry in report[PER_SOURCE].items():
        unseen = entry.get(DETECTION, {}).get("test_unseen", {}).get("rollout_auc")
        detection = "" if unseen is None else f", unseen-task rollout AUC {unseen:.4f}"
        parts.append(f"{name} {entry[TEST_METRICS]['mean_auc']} (logistic {entry[BASELINES]['logistic']['mean_auc']}{detection})")
    return "test mean AUC per source: " + ", ".join(parts) + f"; pooled {report[TEST_METRICS]['mean_auc']}"


def write_results(
    path: str | os.PathLike, model_name: str, report: dict, history: dict, config: dict, training_seconds: float | None = None
) -> None:
    """Write ``results.json``: the guide's keys (``model_name``, the report's ``test_metrics``,
    ``history``, ``config``) with everything else the report holds, and the verdict in ``summary``
    (:func:`vlarisk.report.summary.summary_of`).

    ``training_seconds`` defaults to the sum of the history's epoch times (none for a history without them).
    """
    document: Results = {"model_name": model_name, **report, "history": history, "config": config}
    if training_seconds is None and history.get("epoch_seconds"):
        training_seconds = float(sum(history["epoch_seconds"]))
    document["provenance"]["training_seconds"] = training_seconds
    document["dimensions"] = list(ACTION_DIMENSIONS)
    document[SUMMARY] = summary_of(document)
    write_results_file(path, document)
