"""The verdict of a run in a few values: the ``summary`` block of ``results.json``.

Per model (per source of a multi-model): its per-step mean test AUC beside the logistic baseline's
and whether it beats it, its rollout-level failure detection on the unseen tasks (on the seen-task
test set when no task was held out) with the 95% interval, the deployed alarm's FPR and TPR at its
alpha, and whether its predictions collapsed. Each value is read from the report that evaluation
writes, never recomputed; a null one carries the report's reason under ``undefined``. The
standard library only: the Snakefile's summary rule runs without torch.
"""

from __future__ import annotations

from collections.abc import Mapping

from vlarisk.data.documents import BASELINES, DETECTION, PER_SOURCE

PREFERRED_DETECTION_SET = "test_unseen"  # the headline: tasks the model never saw
ALARM_KEYS = ("fpr", "tpr")  # null exactly when the alarm has no finite threshold


def summary_of(report: Mapping) -> dict:
    """The ``summary`` block of a results.json report: one model's values, or ``per_source`` ones."""
    if PER_SOURCE in report:
        return {PER_SOURCE: {name: model_summary(entry) for name, entry in report[PER_SOURCE].items()}}
    return model_summary(report)


def model_summary(report: Mapping) -> dict:
    """One model's (or one source's) verdict values, with the reason for each that is null."""
    versus = (report.get(BASELINES) or {}).get("model_vs_logistic") or {}
    detection = report.get(DETECTION) or {}
    detection_set = PREFERRED_DETECTION_SET if PREFERRED_DETECTION_SET in detection else next(iter(detection), None)
    block = detection.get(detection_set) or {}
    deployed = block.get("deployed") or {}  # the monitor a user runs: the stored threshold on full episodes
    summary = {
        "step_mean_auc": versus.get("model_mean_auc"),
        "logistic_step_mean_auc": versus.get("logistic_mean_auc"),
        "beats_logistic": versus.get("beats_logistic"),
        "detection_set": detection_set,
        "rollout_auc": block.get("rollout_auc"),
        "rollout_auc_ci95": (block.get("ci95") or {}).get("rollout_auc"),
        "alpha": block.get("alpha"),
        "fpr": deployed.get("fpr"),
        "tpr": deployed.get("tpr"),
        "collapsed": report.get("collapsed"),
    }
    summary["undefined"] = _reasons(summary, block.get("undefined") or {}, bool(detection))
    return summary


def _reasons(summary: Mapping, undefined: Mapping, has_detection: bool) -> dict:
    """Why each null value is null, in the report's own words."""
    reasons = {}
    for key, value in summary.items():
        if value is not None or key == "detection_set":
            continue
        if not has_detection and key not in ("step_mean_auc", "logistic_step_mean_auc", "beats_logistic", "collapsed"):
            reasons[key] = "results.json has no detection block"
        elif key in ALARM_KEYS:
            reasons[key] = undefined.get(key) or undefined.get("threshold") or "no alarm threshold"
        else:
            reasons[key] = undefined.get(key) or "not in results.json"
    return reasons
