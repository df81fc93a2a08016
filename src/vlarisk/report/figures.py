"""The paper's figures as PNG: ROC/PR curves, training curves, ablation bar charts, failure detection.

Figures are drawn with matplotlib's object API (``Figure`` renders through Agg without pyplot or
a display) and saved without the "Software" metadata entry, so the same inputs give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.score.detection import detection_scores, group_rollouts, rollout_horizons
from vlarisk.data.documents import BASELINES, DETECTION, read_results
from vlarisk.core.io_utils import atomic_path
from vlarisk.score.predictions import load_predictions
from vlarisk.report.tables import ablation_table

DPI = 120


def save_figure(figure: Figure, path: str | os.PathLike) -> None:
    """Write a PNG atomically, without metadata that would differ between runs."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=DPI, metadata={"Software": None})


def roc_pr_figure(predictions_path: str, title: str) -> Figure:
    """ROC (left) and precision-recall (right) curves of every dimension with both classes."""
    data = load_predictions(predictions_path)
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    roc, pr = figure.subplots(1, 2)
    for dim, name in enumerate(ACTION_DIMENSIONS):
        positive, score = data["positive"][:, dim], data["prediction"][:, dim]
        if positive.all() or not positive.any():
            roc.plot([], [], label=f"{name} (n/a)")
            pr.plot([], [], label=f"{name} (n/a)")
            continue
        fpr, tpr, _ = roc_curve(positive, score)
        precision, recall, _ = precision_recall_curve(positive, score)
        roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(positive, score):.3f})")
        pr.step(recall, precision, where="post", label=f"{name} (AP {average_precision_score(positive, score):.3f})")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    for axes in (roc, pr):
        axes.legend(fontsize=8, loc="lower right" if axes is roc else "upper right")
    figure.suptitle(title)
    return figure


def training_figure(results_path: str, title: str) -> Figure:
    """Train/validation loss and validation mean AUC per epoch, the selected epoch marked."""
    results = read_results(results_path)
    history = results["history"]
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    val_auc = [np.nan if m.get("mean_auc") is None else m["mean_auc"] for m in history["val_metrics"]]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss, auc = figure.subplots(1, 2)
    loss.plot(epochs, history["train_loss"], marker=".", label="train")
    loss.plot(epochs, history["val_loss"], marker=".", label="validation")
    loss.set(xlabel="epoch", ylabel=f"{results['config']['loss_type']} loss", title="Loss")
    auc.plot(epochs, val_auc, marker=".", color="tab:green")
    auc.set(xlabel="epoch", ylabel="mean AUC-ROC", title="Validation mean AUC-ROC")
    for axes in (loss, auc):
        axes.axvline(results["best_epoch"], color="grey", linestyle="--", linewidth=1, label=f"selected epoch {results['best_epoch']}")
        axes.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def ablation_figure(factor: str, runs: Sequence[tuple[str, str, str]]) -> Figure:
    """Mean AUC and mean AP per value of one factor: bars at the mean, error bars one std (seeds)."""
    table = ablation_table(factor, runs)
    sources = list(dict.fromkeys(row.labels[0] for row in table.rows))
    values = list(dict.fromkeys(row.labels[1] for row in table.rows))
    width = 0.8 / len(sources)
    figure = Figure(figsize=(max(6, 1.4 * len(values) + 2), 4), layout="constrained")
    columns = (table.value_columns.index("mean AUC"), table.value_columns.index("mean AP"))
    for axes, column, metric in zip(figure.subplots(1, 2), columns, ("mean AUC-ROC", "mean AP"), strict=True):
        heights: list[float] = []
        for offset, source in enumerate(sources):
            cells = {row.labels[1]: row.cells[column] for row in table.rows if row.labels[0] == source}
            means = [np.nan if cells.get(v) is None or cells[v].mean is None else cells[v].mean for v in values]
            errors = [0.0 if cells.get(v) is None or cells[v].std is None else cells[v].std for v in values]
            positions = np.arange(len(values)) + (offset - (len(sources) - 1) / 2) * width
            axes.bar(positions, means, width, yerr=errors, capsize=4, label=source)
            heights.extend(np.subtract(means, errors))
        axes.set_xticks(np.arange(len(values)), values, rotation=20, ha="right")
        axes.set(xlabel=factor, ylabel=metric, title=metric, ylim=(_zoomed_floor(heights), 1.0))
        axes.legend(fontsize=8)
    figure.suptitle(f"Ablation of {factor.replace('_', ' ')} (mean ± std over seeds)")
    return figure


def _zoomed_floor(heights: list[float]) -> float:
    """Lower y limit a little under the lowest bar, so differences between values stay visible."""
    finite = [h for h in heights if np.isfinite(h)]
    return float(max(0.0, np.floor((min(finite) - 0.05) * 10) / 10)) if finite else 0.0


def _test_set_rollouts(data: dict, test_set: str, horizons: dict) -> tuple:
    """A test set's rollouts (grouped) with their per-step overall risk, horizons and detection scores."""
    keep = data["test_set"] == test_set
    rollouts = group_rollouts(data["rollout_id"][keep], data["step_index"][keep], data["success"][keep], data["task_index"][keep])
    overall = data["prediction"][keep].max(axis=1)
    cut = rollout_horizons(rollouts, {str(task): h for task, h in horizons.items()})
    return rollouts, overall, cut, detection_scores(overall, rollouts, cut)


def detection_figure(predictions_path: str, results_path: str, title: str) -> Figure:
    """Six panels of rollout-level detection: rollout ROC per test set, lead times of detected
    failures, the accuracy-vs-detection-time curve of the deployed monitor (model and baselines)
    on each of the first two test sets, risk over time of a few rollouts of the first set with the
    alarm threshold, and a reliability diagram of per-step risk against its soft label."""
    data, detection = load_predictions(predictions_path), read_results(results_path)[DETECTION]
    order = sorted(detection, key=lambda name: (name != "test_unseen", name))
    figure = Figure(figsize=(16, 8.5), layout="constrained")
    (roc, lead, first_curve), (traces, reliability, second_curve) = figure.subplots(2, 3)
    for name in order:
        block = detection[name]
        rollouts, _, _, scores = _test_set_rollouts(data, name, block["horizon"]["per_task"])
        if block["rollout_auc"] is not None:
            fpr, tpr, _ = roc_curve(rollouts.failed, scores)
            roc.plot(fpr, tpr, label=f"{name} (AUC {block['rollout_auc']:.3f})")
        lead.hist(
            block["lead_time"]["steps"]["values"],
            bins=20,
            alpha=0.6,
            label=f"{name} ({block['lead_time']['n_detected']}/{block['lead_time']['n_failures']} detected)",
        )
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc.set(
        xlabel="false alarms on successes",
        ylabel="failures detected",
        title="Rollout ROC (earliest stop, up to the horizon)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    lead.set(
        xlabel="steps from alarm to the end of the failed rollout",
        ylabel="failed rollouts",
        title=f"Lead time at alpha {detection[order[0]]['alpha']} (up to the horizon)",
    )
    for axes, name in zip((first_curve, second_curve), order, strict=False):
        _accuracy_vs_detection_time(axes, detection[name], name)
    if len(order) < 2:
        second_curve.set_axis_off()
    _risk_traces(traces, data, order[0], detection[order[0]])
    _reliability(reliability, detection[order[0]]["calibration"], order[0])
    for axes in (roc, lead, traces):
        axes.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def accuracy_vs_detection_time(block: dict) -> dict[str, list[tuple[float, float, float]]]:
    """Per scorer (the model first, then each baseline with a grid), the deployed monitor's
    ``(relative detection time, balanced accuracy, alpha)`` at each alpha where both are defined."""
    scorers = {"model": block.get("alpha_grid", [])}
    scorers.update({name: entry["alpha_grid"] for name, entry in block.get(BASELINES, {}).items() if "alpha_grid" in entry})
    curves = {}
    for name, grid in scorers.items():
        points = [
            (row["deployed"]["relative_detection_time_mean"], row["deployed"]["balanced_accuracy"], row["alpha"])
            for row in grid
            if row["deployed"]["balanced_accuracy"] is not None and row["deployed"]["relative_detection_time_mean"] is not None
        ]
        curves[name] = points
    return curves


def _accuracy_vs_detection_time(axes, block: dict, test_set: str) -> None:
    """The deployed monitor's balanced accuracy against its mean relative detection time over the alpha grid, one line per scorer."""
    for name, points in accuracy_vs_detection_time(block).items():
        if points:
            time, accuracy, _ = zip(*points, strict=True)
            axes.plot(time, accuracy, marker="o", markersize=3, linewidth=2.2 if name == "model" else 1.2, label=name)
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes.set(
        xlabel="mean relative detection time (missed failure = 1)",
        ylabel="balanced accuracy",
        title=f"Deployed monitor over the alpha grid ({test_set})",
        xlim=(0, 1.02),
    )
    axes.legend(fontsize=7)


def _risk_traces(axes, data: dict, test_set: str, block: dict, per_outcome: int = 3) -> None:
    """Running-max overall risk of the first few failed and successful rollouts, with the threshold
    at the horizon and the deployed (whole-episode) one."""
    rollouts, overall, cut, _ = _test_set_rollouts(data, test_set, block["horizon"]["per_task"])
    ordered = overall[rollouts.order]
    for failed, colour in ((True, "tab:red"), (False, "tab:blue")):
        for count, r in enumerate(np.flatnonzero(rollouts.failed == failed)[:per_outcome]):
            part = slice(rollouts.starts[r], rollouts.starts[r] + rollouts.counts[r])
            label = ("failure" if failed else "success") if count == 0 else None
            axes.plot(rollouts.steps[part], np.maximum.accumulate(ordered[part]), color=colour, alpha=0.7, label=label)
            axes.axvline(cut[r], color=colour, linestyle=":", linewidth=0.8)
    if block["threshold"] is not None:
        axes.axhline(
            block["threshold"], color="black", linestyle="--", linewidth=1, label=f"threshold at the horizon {block['threshold']:.3f}"
        )
    deployed = block.get("deployed", {})
    if deployed.get("threshold_kind") == "constant" and deployed.get("threshold") is not None:
        axes.axhline(
            deployed["threshold"], color="black", linestyle="-.", linewidth=1, label=f"deployed threshold {deployed['threshold']:.3f}"
        )
    axes.set(xlabel="step", ylabel="running max of risk", title=f"Risk over time ({test_set}; dotted: horizon)")


def _reliability(axes, calibration: dict, test_set: str) -> None:
    """Mean predicted risk against the mean soft label per bin (all dimensions pooled), or why there is none."""
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    bins = [b for b in calibration.get("reliability", []) if b["count"]]
    if calibration.get("ece") is None or not bins:
        axes.text(0.5, 0.5, f"no reliability diagram: {calibration.get('reason')}", ha="center", va="center", wrap=True)
    else:
        axes.plot([b["mean_risk"] for b in bins], [b["mean_target"] for b in bins], marker="o")
    ece = "n/a" if calibration.get("ece") is None else f"{calibration['ece']:.3f}"
    axes.set(
        xlabel="predicted risk (every dimension)",
        ylabel="mean soft risk label",
        title=f"Reliability ({test_set}; ECE {ece})",
        xlim=(0, 1),
        ylim=(0, 1),
    )
