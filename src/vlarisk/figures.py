"""The paper's figures as PNG: ROC/PR curves, training curves, ablation bar charts.

Figures are drawn with matplotlib's object API (``Figure`` renders through Agg without pyplot or
a display) and saved without the "Software" metadata entry, so the same inputs give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from vlarisk.constants import ACTION_DIMENSIONS
from vlarisk.io_utils import atomic_path
from vlarisk.predictions import load_predictions
from vlarisk.tables import ablation_table, read_results

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
