"""The paper's tables, built from ``results.json`` files and test predictions.

A cell summarises one metric over runs (seeds) as ``mean ± std`` (sample standard deviation,
``ddof=1``; a single run shows its value alone). A metric that is undefined in ``results.json``
(``null``: a dimension without both classes) shows as ``n/a``, never as 0.5; a cell where only some
runs define it shows how many, e.g. ``0.812 ± 0.010 (2/3)``. Each table is written as Markdown,
LaTeX (booktabs), CSV and HTML, plus a JSON sidecar holding the unrounded values; the CSV and the
sidecar name the files every row came from. Rows keep the order they are given in, numbers have a
fixed format and nothing records a time, so the same inputs always give the same bytes.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlarisk.report.table_registry import PAPER_TABLES
from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.data.documents import BASELINES, DETECTION, PER_SOURCE, TEST_METRICS, read_results
from vlarisk.core.io_utils import atomic_path
from vlarisk.data.task_splits import SPLIT_METRICS

MISSING = "n/a"
DIGITS = 3
# results["baselines"] scorers shown beside the models, with their row labels.
BASELINE_ROWS = {
    "logistic": "logistic baseline",
    "step_index": "step index",
    "abs_action": "|action|",
    "planted_direction": "planted direction",
}


@dataclass(frozen=True)
class Summary:
    """One metric over runs; ``None`` marks a run where the metric is undefined."""

    values: tuple[float | None, ...]
    signed: bool = False

    @property
    def defined(self) -> list[float]:
        return [float(v) for v in self.values if v is not None and math.isfinite(v)]

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.defined)) if self.defined else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.defined, ddof=1)) if len(self.defined) > 1 else None

    def format(self) -> str:
        """``mean ± std``, the value alone for one run, ``n/a`` when undefined everywhere."""
        if self.mean is None:
            return MISSING
        text = f"{self.mean:+.{DIGITS}f}" if self.signed else f"{self.mean:.{DIGITS}f}"
        if self.std is not None:
            text += f" ± {self.std:.{DIGITS}f}"
        if len(self.defined) < len(self.values):
            text += f" ({len(self.defined)}/{len(self.values)})"
        return text

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": len(self.defined), "values": list(self.values)}


@dataclass
class Row:
    """Label cells, value cells (one per value column) and the files the values came from."""

    labels: tuple[str, ...]
    cells: tuple[Summary, ...]
    sources: tuple[str, ...]


@dataclass
class Table:
    """A titled table: label columns (text) then value columns (summaries), one row each."""

    name: str
    title: str
    label_columns: tuple[str, ...]
    value_columns: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)


def metric_columns(prefix: str) -> tuple[str, ...]:
    """Keys ``<prefix>_<d>`` for every dimension, then the mean over dimensions."""
    return tuple(f"{prefix}_{name}" for name in ACTION_DIMENSIONS) + (f"mean_{prefix}",)


def summarise(metric_dicts: Sequence[dict], keys: Iterable[str], signed: Iterable[str] = ()) -> tuple[Summary, ...]:
    """One :class:`Summary` per key over the runs' metric dicts; keys in ``signed`` show their sign."""
    signed = set(signed)
    return tuple(Summary(tuple(metrics.get(key) for metrics in metric_dicts), key in signed) for key in keys)


def logistic_comparison(results: dict) -> dict:
    """A run's logistic-baseline mean AUC and the model's margin over it (empty without baselines)."""
    baselines = results.get(BASELINES, {})
    if "logistic" not in baselines:
        return {}
    return {"logistic_auc": baselines["logistic"]["mean_auc"], "delta_vs_logistic": baselines["model_vs_logistic"]["margin"]}


# ------------------------------------------------------------------------------------ builders
def per_dimension_table(prefix: str, single: dict[str, str], multi: dict[str, str]) -> Table:
    """(a) AUC-ROC or AP per dimension, per source: single model, each multi-model group, then the baselines."""
    title = {"auc": "Test AUC-ROC per action dimension", "ap": "Test average precision per action dimension"}[prefix]
    keys = metric_columns(prefix)
    table = Table(f"{prefix}_per_dimension", title, ("source", "model"), (*ACTION_DIMENSIONS, "mean"))
    multi_results = {group: read_results(path) for group, path in sorted(multi.items())}
    for source, path in sorted(single.items()):
        results = read_results(path)
        table.rows.append(Row((source, collapse_marked("single", results)), summarise([results[TEST_METRICS]], keys), (path,)))
        for group, grouped in multi_results.items():
            if source in grouped.get(PER_SOURCE, {}):
                block = grouped[PER_SOURCE][source]
                table.rows.append(
                    Row((source, collapse_marked(f"multi ({group})", block)), summarise([block[TEST_METRICS]], keys), (multi[group],))
                )
        baselines = results.get(BASELINES, {})
        for name, label in BASELINE_ROWS.items():
            if name in baselines:
                table.rows.append(Row((source, label), summarise([baselines[name]], keys), (path,)))
    return table


def single_vs_multi_table(single: dict[str, str], multi: dict[str, str]) -> Table:
    """(b) Mean AUC/AP of the single-source model against each multi-model group on that source.

    ``logistic AUC`` is the logistic baseline's mean AUC on the source's test split.
    """
    columns = ("single AUC", "multi AUC", "Δ AUC", "logistic AUC", "single AP", "multi AP", "Δ AP")
    table = Table("single_vs_multi", "Single-source vs. multi-source training on each source's test set", ("source", "group"), columns)
    multi_results = {group: read_results(path) for group, path in sorted(multi.items())}
    for source, path in sorted(single.items()):
        results = read_results(path)
        own, logistic = results[TEST_METRICS], Summary((logistic_comparison(results).get("logistic_auc"),))
        groups = [
            (group, grouped[PER_SOURCE][source][TEST_METRICS], (path, multi[group]))
            for group, grouped in multi_results.items()
            if source in grouped.get(PER_SOURCE, {})
        ]
        for group, shared, files in groups or [("(no multi-model group)", {}, (path,))]:
            auc, ap = (_single_multi_delta(own.get(key), shared.get(key)) for key in ("mean_auc", "mean_ap"))
            table.rows.append(Row((source, group), (*auc, logistic, *ap), files))
    return table


def _single_multi_delta(single: float | None, multi: float | None) -> tuple[Summary, Summary, Summary]:
    """Cells of one metric: single, multi, and multi minus single."""
    delta = None if single is None or multi is None else multi - single
    return Summary((single,)), Summary((multi,)), Summary((delta,), signed=True)


def collapse_marked(label: str, results: dict) -> str:
    """``label``, marked when the collapse detector flagged the scores behind it."""
    return f"{label} (collapsed)" if results.get("collapsed") else label


def ablation_table(factor: str, runs: Sequence[tuple[str, str, str]]) -> Table:
    """(c, d) One factor's cells: mean AUC beside the logistic baseline's, mean AP, per-dimension AUC
    and output spread over seeds.

    ``runs`` holds ``(source, value label, results.json)``, one per seed; rows follow its order.
    ``Δ vs logistic`` is the model's mean AUC minus the logistic baseline's, both over the dimensions
    where both are defined. ``min pred std`` is the smallest per-dimension std of the test
    predictions. ``collapsed`` counts the seeds whose test scores the collapse detector flags
    (:mod:`vlarisk.model.collapse`): such a cell is a failed run, not a result.
    """
    keys = ("mean_auc", "logistic_auc", "delta_vs_logistic", "mean_ap", *metric_columns("auc")[:-1], "min_prediction_std")
    columns = ("mean AUC", "logistic AUC", "Δ vs logistic", "mean AP", *(f"AUC {d}" for d in ACTION_DIMENSIONS), "min pred std")
    table = Table(
        f"ablation_{factor}",
        f"Ablation of {factor.replace('_', ' ')} (mean ± std over seeds)",
        ("source", factor, "runs", "collapsed"),
        columns,
    )
    grouped: dict[tuple[str, str], list[str]] = {}
    for source, value, path in runs:
        grouped.setdefault((source, value), []).append(path)
    for (source, value), paths in grouped.items():
        documents = [read_results(path) for path in sorted(paths)]
        metrics = [_run_metrics(document) for document in documents]
        collapsed = f"{sum(bool(d.get('collapsed')) for d in documents)}/{len(paths)}"
        table.rows.append(
            Row((source, value, str(len(paths)), collapsed), summarise(metrics, keys, signed=("delta_vs_logistic",)), tuple(sorted(paths)))
        )
    return table


def _run_metrics(results: dict) -> dict:
    """A run's test metrics, its comparison with the logistic baseline, and its smallest prediction spread."""
    spread = results.get("prediction_std")
    return {**results[TEST_METRICS], **logistic_comparison(results), "min_prediction_std": min(spread.values()) if spread else None}


def failure_correlation_table(predictions: dict[str, str], bins: int = 5) -> Table:
    """(e) Per dimension: rank/linear correlation of predicted risk with failure, and failure rate by risk bin."""
    # scipy loads only here: planning reads this module's registry without it
    from vlarisk.score.predictions import failure_relation, load_predictions

    bin_columns = tuple(f"fail rate {label}" for label in risk_bin_labels(bins))
    table = Table(
        "failure_correlation",
        "Predicted risk against observed failures on the test split",
        ("source", "dimension"),
        ("Spearman vs fail_within_k", "Pearson vs label", *bin_columns),
    )
    for source, path in sorted(predictions.items()):
        data = load_predictions(path)
        for dim, name in enumerate(ACTION_DIMENSIONS):
            relation = failure_relation(data["prediction"][:, dim], data["label"][:, dim], data["fail_within_k"], bins)
            values = (relation["spearman_fail"], relation["pearson_label"], *relation["fail_rate_by_bin"])
            table.rows.append(Row((source, name), tuple(Summary((v,)) for v in values), (path,)))
    return table


# Detection scorers in table order, with their row labels (the model comes first).
DETECTION_SCORERS = {
    "logistic": "logistic baseline",
    "knn": "cosine kNN (success - failure)",
    "mahalanobis": "Mahalanobis to successes",
    "episode_length": "steps elapsed (episode length)",
    "abs_action": "|action|",
    "planted_direction": "planted direction",
}
# Column: (path of the metric in a detection block, None for the point or 0/1 for its 95% interval's ends).
DETECTION_COLUMNS = {
    "earliest-stop AUC (SAFE)": (("rollout_auc",), None),
    "AUC 95% low": (("rollout_auc",), 0),
    "AUC 95% high": (("rollout_auc",), 1),
    "earliest-stop AP": (("rollout_ap",), None),
    "deployed TPR": (("deployed", "tpr"), None),
    "TPR 95% low": (("deployed", "tpr"), 0),
    "TPR 95% high": (("deployed", "tpr"), 1),
    "deployed FPR": (("deployed", "fpr"), None),
    "FPR 95% high": (("deployed", "fpr"), 1),
    "deployed bal. acc.": (("deployed", "balanced_accuracy"), None),
    "bal. acc. 95% low": (("deployed", "balanced_accuracy"), 0),
    "bal. acc. 95% high": (("deployed", "balanced_accuracy"), 1),
    "rel. detection time": (("deployed", "relative_detection_time_mean"), None),
    "lead (steps, median)": (("deployed", "lead_time_steps_median"), None),
    "calibration successes": (("deployed", "n_calibration"), None),
}
NOT_CONFORMAL = " [threshold NOT conformally valid]"


def _detection_models(single: dict[str, str], multi: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    """``(source, model label, detection blocks, path)`` of every single model and multi-model member."""
    models = []
    multi_results = {group: read_results(path) for group, path in sorted(multi.items())}
    for source, path in sorted(single.items()):
        results = read_results(path)
        models.append((source, collapse_marked("single", results), results.get(DETECTION, {}), path))
        for group, grouped in multi_results.items():
            block = grouped.get(PER_SOURCE, {}).get(source)
            if block is not None:
                models.append((source, collapse_marked(f"multi ({group})", block), block.get(DETECTION, {}), multi[group]))
    return models


def _detection_cells(block: dict) -> tuple[Summary, ...]:
    """One row's cells: each column's point or interval end (``None`` where undefined)."""
    cells = []
    split_names = {path: name for name, path in SPLIT_METRICS.items()}
    for path, end in DETECTION_COLUMNS.values():
        over_splits = (block.get("splits") or {}).get(split_names.get(path)) if end is None else None
        if over_splits is not None:  # several task splits: mean ± SD over them (intervals: split 0's)
            cells.append(Summary(tuple(over_splits["values"])))
            continue
        *parents, metric = path
        holder = block
        for key in parents:
            holder = holder.get(key) or {}
        if end is None:
            value = holder.get(metric)
        else:
            interval = (holder.get("ci95") or {}).get(metric)
            value = interval[end] if interval else None
        cells.append(Summary((value,)))
    return tuple(cells)


def _validity_marked(label: str, block: dict) -> str:
    """A row label, marked when its thresholds were not fitted on calibration rollouts unused by training and epoch selection."""
    return label + ("" if block.get("conformal_valid", True) else NOT_CONFORMAL)


def detection_table(single: dict[str, str], multi: dict[str, str]) -> Table:
    """(f) Rollout-level failure detection per test set (unseen tasks first): SAFE's earliest-stop
    rollout AUC/AP, and the deployed monitor (the checkpoint's whole-episode threshold on full
    episodes): TPR, FPR, balanced accuracy, relative detection time and median lead time, with 95%
    intervals; each model above the baselines scored the same way. Rows whose threshold is not
    conformally valid are marked."""
    table = Table(
        "detection",
        "Failure detection over rollouts: SAFE's earliest-stop AUC/AP, and the deployed monitor at the calibrated "
        "whole-episode threshold on full episodes (TPR/FPR: exact 95% intervals; AUC, balanced accuracy: bootstrap by "
        "task then rollout, threshold refitted; relative detection time counts a missed failure as 1; "
        "with several task splits, AUC and balanced accuracy are mean ± SD over them and the intervals are the first split's)",
        ("source", "test set", "scorer"),
        tuple(DETECTION_COLUMNS),
    )
    for source, label, detection, path in _detection_models(single, multi):
        for test_set in sorted(detection, key=lambda name: (name != "test_unseen", name)):
            block = detection[test_set]
            table.rows.append(Row((source, test_set, _validity_marked(label, block)), _detection_cells(block), (path,)))
            if label != "single":
                continue
            for name, scorer in DETECTION_SCORERS.items():
                if name in block.get(BASELINES, {}):
                    cells = _detection_cells(block[BASELINES][name])
                    table.rows.append(Row((source, test_set, _validity_marked(scorer, block)), cells, (path,)))
    return table


def detection_per_dimension_table(single: dict[str, str], multi: dict[str, str]) -> Table:
    """(g) Rollout AUC of each dimension's risk alone, per test set, with attribution: how often the
    riskiest dimension at alarm time is the labelled culprit, against chance."""
    columns = (*ACTION_DIMENSIONS, "overall", "attribution hit rate", "chance")
    table = Table(
        "detection_per_dimension",
        "Rollout AUC-ROC of each dimension's risk, and attribution of alarms",
        ("source", "test set", "model"),
        columns,
    )
    for source, label, detection, path in _detection_models(single, multi):
        for test_set in sorted(detection, key=lambda name: (name != "test_unseen", name)):
            block = detection[test_set]
            per_dim = [block.get("per_dimension", {}).get(name, {}).get("rollout_auc") for name in ACTION_DIMENSIONS]
            attribution = block.get("attribution", {})
            values = (*per_dim, block.get("rollout_auc"), attribution.get("hit_rate"), attribution.get("chance_rate"))
            table.rows.append(Row((source, test_set, label), tuple(Summary((v,)) for v in values), (path,)))
    return table


# make_tables.py subcommand -> builder: the main tables' (named in the registry) and the per-factor ablation table's.
BUILDERS = {**{table.subcommand: globals()[table.builder] for table in PAPER_TABLES.values()}, "ablation": ablation_table}


def risk_bin_labels(bins: int) -> list[str]:
    """Names of equal-count predicted-risk bins, lowest risk first."""
    return [f"Q{i + 1}" + (" (low)" if i == 0 else " (high)" if i == bins - 1 else "") for i in range(bins)]


# ------------------------------------------------------------------------------------ writers
def to_markdown(table: Table) -> str:
    header = [*table.label_columns, *table.value_columns]
    lines = [
        "| " + " | ".join(_markdown_escape(h) for h in header) + " |",
        "|" + "|".join(["---"] * len(table.label_columns) + ["---:"] * len(table.value_columns)) + "|",
    ]
    lines += ["| " + " | ".join(_markdown_escape(c) for c in _text_cells(row)) + " |" for row in table.rows]
    return "\n".join(lines) + f"\n\nTable: {table.title}\n"


def to_latex(table: Table) -> str:
    header = [*table.label_columns, *table.value_columns]
    spec = "l" * len(table.label_columns) + "r" * len(table.value_columns)
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{_latex_escape(table.title)}}}",
        rf"\label{{tab:{table.name}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_escape(c) for c in _text_cells(row)) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*table.label_columns, *table.value_columns, "results"])
    for row in table.rows:
        writer.writerow([*_text_cells(row), ";".join(row.sources)])
    return buffer.getvalue()


def to_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (*table.label_columns, *table.value_columns))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _text_cells(row)) + "</tr>\n" for row in table.rows)
    style = "table{border-collapse:collapse;font-family:sans-serif;font-size:13px}td,th{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right}caption{font-weight:bold;padding:6px}"
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(table.name)}</title><style>{style}</style></head>\n'
        f"<body><table><caption>{html.escape(table.title)}</caption>\n<tr>{head}</tr>\n{body}</table></body></html>\n"
    )


def to_json(table: Table) -> str:
    """Sidecar with unrounded values and, per row, the files it came from."""
    rows = [
        {
            "labels": dict(zip(table.label_columns, row.labels, strict=True)),
            "cells": {c: s.as_dict() for c, s in zip(table.value_columns, row.cells, strict=True)},
            "results": list(row.sources),
        }
        for row in table.rows
    ]
    document = {
        "name": table.name,
        "title": table.title,
        "label_columns": list(table.label_columns),
        "value_columns": list(table.value_columns),
        "rows": rows,
    }
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"


WRITERS = {"md": to_markdown, "tex": to_latex, "csv": to_csv, "html": to_html, "json": to_json}


def write_table(table: Table, prefix: str | Path) -> list[Path]:
    """Write ``<prefix>.md/.tex/.csv/.html/.json`` atomically; returns the paths."""
    paths = []
    for extension, writer in WRITERS.items():
        path = Path(f"{prefix}.{extension}")
        with atomic_path(path) as tmp:
            tmp.write_text(writer(table), encoding="utf-8")
        paths.append(path)
    return paths


def _text_cells(row: Row) -> list[str]:
    return [*row.labels, *(cell.format() for cell in row.cells)]


def _markdown_escape(text: str) -> str:
    """A cell's text with ``|`` escaped, so it cannot split the cell."""
    return text.replace("|", r"\|")


def _latex_escape(text: str) -> str:
    replacements = {
        "\\": r"\textbackslash{}",
        "|": r"\textbar{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    text = "".join(replacements.get(char, char) for char in text)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$")
