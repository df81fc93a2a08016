"""Failure detection on a source's rollouts: scored rows as detection inputs, the calibrated alarm a
monitor raises, and the ``detection`` blocks of ``results.json``.

The numbers themselves come from :mod:`vlarisk.score.detection`; this module decides which rows they are
computed on. The alarm threshold is fitted on the calibration rollouts (successes no training step
or epoch selection has seen; see :func:`vlarisk.train.sources.Source.calibration_rows`), once over whole
episodes, which is the threshold a deployed :class:`~vlarisk.model.steering.RiskMonitor` uses, and once
up to each task's shortest rollout, which the detection metrics use.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vlarisk.data.documents import Alarm
from vlarisk.data.splits import test_sets
from vlarisk.model.inference import predict_rows
from vlarisk.model.models import NormalizedMultiRiskPredictor, NormalizedRiskPredictor
from vlarisk.score.detection import (
    HEADLINE_METRICS,
    StepArrays,
    band_shape,
    conformal_threshold,
    detection_report,
    detection_scores,
    group_rollouts,
    rollout_horizons,
    standardised_risk,
    too_few_calibration_successes,
)
from vlarisk.score.detection_flags import DetectionOptions
from vlarisk.train.sources import Source

BASELINE_FOR_DETECTION = {"step_index": "episode_length"}  # a running max of the step index is the steps elapsed


def step_arrays(source: Source, rows: np.ndarray, risk: np.ndarray) -> StepArrays:
    """Detection inputs of ``rows`` of a source scored ``risk`` ``[len(rows), D]``.

    Labels are the provided ones only (NaN rows elsewhere, ``None`` when no row has one), targets
    the soft labels the model was trained on, and each row carries its rollout's full length,
    which rows dropped from a rollout do not shorten.
    """
    arrays = source.dataset.arrays
    rollout_id = np.asarray(arrays["rollout_id"][rows])
    lengths = {r["rollout_id"]: r.get("num_steps", r.get("num_kept")) for r in source.dataset.metadata["rollouts"]}
    provided = np.asarray(arrays["has_provided_label"][rows], dtype=bool)
    targets = np.asarray(source.dataset.labels[rows], dtype=np.float64)
    labels = np.where(provided[:, None], targets, np.nan) if provided.any() else None
    episode_length = np.array([lengths[i] for i in rollout_id.tolist()], dtype=np.int64) if None not in lengths.values() else None
    return StepArrays(
        risk=np.asarray(risk, dtype=np.float64),
        rollout_id=rollout_id,
        step_index=np.asarray(arrays["step_index"][rows], dtype=np.int64),
        success=np.asarray(arrays["success"][rows], dtype=bool),
        task=np.asarray(arrays["task_index"][rows]),
        labels=labels,
        targets=targets if risk.shape == targets.shape else None,
        episode_length=episode_length,
    )


def conformal_validity(source: Source) -> dict:
    """Whether ``source``'s alarm rests on calibration rollouts unused by training and epoch selection, and why not.

    A split without a ``calibration`` part calibrates on the validation successes that chose the
    epoch: its thresholds are reported, but marked invalid, never silently trusted.
    """
    if "calibration" in source.rows:
        return {"conformal_valid": True, "conformal_reason": None}
    return {
        "conformal_valid": False,
        "conformal_reason": "the split has no calibration rollouts: the threshold was fitted on validation successes, which chose the epoch",
    }


def fit_alarm(calibration: StepArrays, alpha: float, calibration_set: str, validity: dict, band: dict | None = None) -> Alarm:
    """The checkpoint's ``alarm``: split-conformal thresholds on the overall risk (max over dimensions).

    ``threshold`` bounds false alarms over whole successful episodes (a running monitor's case);
    ``threshold_at_horizon`` those up to each task's shortest calibration rollout. ``None`` when
    the calibration set is too small for ``alpha``. ``n_calibration`` is the number of successes
    they rest on; ``validity`` (:func:`conformal_validity`) says whether the bound holds. With a
    ``band`` shape (:func:`~vlarisk.score.detection.band_shape` of training successes), ``band`` adds
    the functional threshold: alarm when the risk at step ``t`` exceeds ``mean[t] + quantile * sd[t]``.
    """
    successes = np.asarray(calibration.success, dtype=bool)
    if not successes.any():
        return {
            "threshold": None,
            "threshold_at_horizon": None,
            "alpha": alpha,
            "n_calibration": 0,
            **validity,
            "reason": "no successful calibration rollout",
        }
    overall = np.asarray(calibration.risk, dtype=np.float64).max(axis=1)[successes]
    length = None if calibration.episode_length is None else np.asarray(calibration.episode_length)[successes]
    rollouts = group_rollouts(
        np.asarray(calibration.rollout_id)[successes],
        np.asarray(calibration.step_index)[successes],
        None,
        np.asarray(calibration.task)[successes],
        length,
    )
    whole_episode = np.full(len(rollouts.length), np.inf)
    whole = conformal_threshold(detection_scores(overall, rollouts, whole_episode), alpha)
    cut = conformal_threshold(detection_scores(overall, rollouts, rollout_horizons(rollouts)), alpha)
    finite = math.isfinite(whole)
    n_calibration = int(len(rollouts.length))
    if band is not None:
        standard = standardised_risk(overall, np.asarray(calibration.step_index)[successes], band)
        quantile = conformal_threshold(detection_scores(standard, rollouts, whole_episode), alpha)
        band = {**band, "quantile": float(quantile) if math.isfinite(quantile) else None, "shape_from": "training-split successes"}
    return {
        "threshold": float(whole) if finite else None,
        "threshold_at_horizon": float(cut) if math.isfinite(cut) else None,
        "alpha": float(alpha),
        "score": "running maximum over steps of the largest risk of any dimension; alarm when it exceeds the threshold",
        "calibration_set": calibration_set,
        "n_calibration": n_calibration,
        **validity,
        "warning": too_few_calibration_successes(n_calibration, alpha),
        "reason": None if finite else "too few calibration rollouts for a finite threshold at this alpha",
        "band": band,
    }


def training_band(source: Source, predictor: NormalizedRiskPredictor, device: torch.device) -> dict | None:
    """:func:`~vlarisk.score.detection.band_shape` of ``predictor``'s risk on ``source``'s successful training
    rollouts; ``None`` when they are too few to shape one (the constant threshold still applies)."""
    train = source.rows["train"]
    rows = train[np.asarray(source.dataset.arrays["success"][train], dtype=bool)]
    risk = predict_rows(predictor.predictor, source.dataset.hidden, rows, predictor.mean, predictor.std, device)
    try:
        return band_shape(risk, np.asarray(source.dataset.arrays["step_index"][rows], dtype=np.int64))
    except ValueError:
        return None


def source_alarm(source: Source, predictor: NormalizedRiskPredictor, device: torch.device, alpha: float) -> Alarm:
    """:func:`fit_alarm` on ``source``'s calibration rows scored by ``predictor`` (on raw hidden states), constant and band."""
    name, rows = source.calibration_rows()
    risk = predict_rows(predictor.predictor, source.dataset.hidden, rows, predictor.mean, predictor.std, device)
    band = training_band(source, predictor, device)
    return fit_alarm(step_arrays(source, rows, risk), alpha, name, conformal_validity(source), band)


def _finite_scores(scores: np.ndarray) -> np.ndarray | None:
    """A baseline's scores with undefined (NaN) columns set below every defined score, so the
    maximum over dimensions ignores them; ``None`` when no score is defined at all."""
    scores = np.asarray(scores, dtype=np.float64)
    defined = scores[np.isfinite(scores)]
    if defined.size == 0:
        return None
    return np.where(np.isfinite(scores), scores, defined.min() - 1.0)


def _baseline_block(source: Source, rows, calibration_rows, test_scores, calibration_scores, options: DetectionOptions) -> dict:
    """A baseline's headline detection numbers, or why it has none."""
    test_scores, calibration_scores = _finite_scores(test_scores), _finite_scores(calibration_scores)
    if test_scores is None or calibration_scores is None:
        return {"reason": "the scorer gives no scores (its training targets hold a single class)"}
    test = step_arrays(source, rows, test_scores)
    return _compact(detection_report(test, step_arrays(source, calibration_rows, calibration_scores), **options.report_options()))


def _compact(report: dict) -> dict:
    """A baseline's detection block: its threshold, headline numbers and their intervals, the
    deployed monitor, and the deployed operating point at each alpha of the grid."""
    grid = [{"alpha": row["alpha"], "deployed": row["deployed"]} for row in report["alpha_grid"]]
    return {
        "threshold": report["threshold"],
        **{m: report[m] for m in HEADLINE_METRICS},
        "ci95": report["ci95"],
        "deployed": report["deployed"],
        "alpha_grid": grid,
    }


def baseline_detection(
    source: Source, test_rows: np.ndarray, baselines: dict[str, tuple[np.ndarray, np.ndarray]], options: DetectionOptions
) -> dict:
    """Each baseline's headline detection numbers per test set (``test_seen``/``test_unseen``, or ``test``):
    ``{test set: {scorer: block}}``, the ``baselines`` of :func:`source_detection`'s blocks.

    ``test_rows`` are the source's ``test`` split's rows; ``baselines`` maps a scorer's name to its
    scores on them and on the calibration rows. A baseline's monitor uses a constant threshold.
    """
    calibration_rows = source.calibration_rows()[1]
    blocks = {}
    for name, take in _test_set_positions(source, test_rows).items():
        rows = np.asarray(test_rows)[take]
        blocks[name] = {
            BASELINE_FOR_DETECTION.get(scorer, scorer): _baseline_block(
                source, rows, calibration_rows, test_scores[take], cal_scores, options
            )
            for scorer, (test_scores, cal_scores) in baselines.items()
        }
    return blocks


def _test_set_positions(source: Source, test_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each test set's rows as positions in ``test_rows`` (the source's ``test`` split)."""
    position = {int(row): i for i, row in enumerate(np.asarray(test_rows).tolist())}
    return {name: np.array([position[int(r)] for r in source.rows[name]], dtype=np.int64) for name in test_sets(source.split)}


def source_detection(
    source: Source,
    test_rows: np.ndarray,
    test_risk: np.ndarray,
    calibration_risk: np.ndarray,
    baseline_blocks: dict[str, dict],
    options: DetectionOptions,
    band: dict | None = None,
) -> dict:
    """``results.json``'s ``detection``: one block per test set (``test_seen``/``test_unseen``, or
    ``test``), the model's full report with each baseline's headline numbers beside it.

    ``test_rows`` are the rows ``test_risk`` scores (the source's ``test`` split);
    ``baseline_blocks`` are :func:`baseline_detection`'s on the same rows and options.
    The model's deployed monitor uses ``band`` (its training successes' band shape) when given.
    """
    calibration_name, calibration_rows = source.calibration_rows()
    calibration = step_arrays(source, calibration_rows, calibration_risk)
    validity = conformal_validity(source)
    blocks = {}
    for name, take in _test_set_positions(source, test_rows).items():
        rows = np.asarray(test_rows)[take]
        block = detection_report(step_arrays(source, rows, test_risk[take]), calibration, band=band, **options.report_options())
        block["calibration_set"] = calibration_name
        block.update(validity)
        block["baselines"] = baseline_blocks[name]
        blocks[name] = block
    return blocks


def fit_alarms(model, sources: list[Source], device, alpha: float) -> dict[str, Alarm]:
    """Every source's alarm (:func:`source_alarm`) fitted with the trained ``model``, by source name;
    training saves them with the best weights (:meth:`vlarisk.train.training.Trainer.save_best`)."""
    heads = {
        source.name: model.source_predictor(source.name) if isinstance(model, NormalizedMultiRiskPredictor) else model for source in sources
    }
    return {source.name: source_alarm(source, heads[source.name], device, alpha) for source in sources}


def alarm_summary(alarms: dict[str, dict]) -> str:
    """One log line: each source's alarm threshold and what it was fitted on."""
    return "; ".join(
        f"{name}: alarm threshold {a['threshold']} at alpha {a['alpha']} on {a.get('n_calibration', 0)} {a.get('calibration_set', '')} successes"
        + "".join(f" ({a[key]})" for key in ("reason", "warning", "conformal_reason") if a.get(key))
        + ("" if a.get("conformal_valid", True) else " [NOT conformally valid]")
        for name, a in alarms.items()
    )
