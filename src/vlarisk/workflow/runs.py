"""Comparing runs: every ``results.json`` under a results folder in one table, like DVC's ``exp show``.

A run is one ``results.json``: a single-source model (``models/<source>``), a multi-model group
(``multi/<group>``) or an ablation cell (``ablations/<source>/<cell>/seed-<seed>``), either of the
plain run (``results/...``) or of a named experiment (``results/experiments/<name>/...``). Its row
holds where it came from, its training settings (``config`` in ``results.json``), its headline
test metrics, its rollout-level failure detection (from ``results.json``'s ``summary``: rollout AUC
on the unseen tasks with its interval, the alarm's FPR and TPR at alpha), when it was written, by
which code, how long it took, and its id (a hash of the file); :func:`csv_text` and
:func:`markdown_text` write the rows.

A re-run overwrites a results.json; :func:`archive_run` keeps each version under
``results/history/`` (the summary step of ``all`` archives every run it reports), and
``vlarisk-compare --history`` tables them beside the current runs.

This module imports no torch or numpy, so the Snakefile can load it on every run.
"""

from __future__ import annotations

import csv
import datetime
import glob
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from vlarisk.data.documents import RESULTS_FILE, TEST_METRICS

EXPERIMENTS = "experiments"
HISTORY = "history"  # results/history/<where the run lies>/<UTC time>_<run id>.json: every version kept
PLAIN_RUN = "(plain)"  # the experiment column of runs outside results/experiments/ (no experiment's name has parentheses)
SETTINGS = ("epochs", "lr", "batch_size", "hidden_dims", "dropout", "activation", "loss_type", "weight_decay", "normalize", "seed")
METRICS = ("mean_auc", "mean_ap", "mse")
DETECTION = ("rollout_auc", "rollout_auc_low", "rollout_auc_high", "detection_set", "alpha", "fpr", "tpr")
COLUMNS = (
    "experiment",
    "kind",
    "name",
    *SETTINGS,
    "epochs_run",
    *(f"test_{metric}" for metric in METRICS),
    "logistic_mean_auc",
    "margin_vs_logistic",
    *DETECTION,
    "collapsed",
    "date",
    "code_version",
    "seconds",
    "run_id",
    "results",
)
# Sorting by a metric puts the best first; by anything else, in ascending order.
DESCENDING = {"test_mean_auc", "test_mean_ap", "margin_vs_logistic", "rollout_auc", "rollout_auc_low", "tpr"}


def find_results(root: str | os.PathLike) -> list[str]:
    """Every ``results.json`` under ``root``, sorted (none when ``root`` does not exist)."""
    return sorted(glob.glob(os.path.join(glob.escape(str(root)), "**", RESULTS_FILE), recursive=True))


def results_stamp(paths: Iterable[str | os.PathLike]) -> str:
    """A short hash of each file's path, size and modification time: it changes when a run is
    added, removed or rewritten (the comparison rule's rerun trigger)."""
    digest = hashlib.sha256()
    for path in sorted(map(str, paths)):
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:16]


def run_id(path: str | os.PathLike) -> str:
    """A run's id: a short hash of its results.json (a re-run with other results gets another)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def archive_run(path: str | os.PathLike, root: str | os.PathLike) -> Path | None:
    """Keep a copy of the run's results.json as ``<root>/history/<its folder under root>/<UTC
    time written>_<run id>.json``, once per id; None for a file outside ``root``."""
    relative = os.path.relpath(Path(path).parent, root)
    if relative.startswith(".."):
        return None
    folder, identity = Path(root) / HISTORY / relative, run_id(path)
    kept = sorted(folder.glob(f"*_{identity}.json"))
    if kept:
        return kept[0]
    written = datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    archived = folder / f"{written}_{identity}.json"
    shutil.copy2(path, archived)  # keeps the modification time: the row's date
    return archived


def find_history(root: str | os.PathLike) -> list[str]:
    """Every archived run under ``<root>/history``, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(str(Path(root) / HISTORY)), "**", "*_*.json"), recursive=True))


def locate(path: str | os.PathLike, root: str | os.PathLike) -> dict:
    """``experiment``, ``kind`` and ``name`` of a run from where its ``results.json`` (or its copy
    under ``history/``) lies under ``root``."""
    try:
        parts = Path(os.path.relpath(path, root)).parts[:-1]
    except ValueError:  # another drive
        parts = Path(path).parts[:-1]
    if parts and parts[0] == ".." or not parts:
        return {"experiment": PLAIN_RUN, "kind": "", "name": str(Path(path).parent)}
    if parts[0] == HISTORY:
        parts = parts[1:]
    experiment = PLAIN_RUN
    if len(parts) >= 2 and parts[0] == EXPERIMENTS:
        experiment, parts = parts[1], parts[2:]
    kind = {"models": "model", "multi": "multi", "ablations": "ablation"}.get(parts[0], parts[0]) if parts else ""
    return {"experiment": experiment, "kind": kind, "name": "/".join(parts[1:]) or (parts[0] if parts else "")}


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_row(path: str | os.PathLike, results: dict, root: str | os.PathLike) -> dict:
    """One run's row: where it lies, its settings and its headline metrics (blank when absent)."""
    settings = results.get("config") or {}
    metrics = results.get(TEST_METRICS) or {}
    versus = (results.get("baselines") or {}).get("model_vs_logistic") or {}
    history = results.get("history") or {}
    row = {
        **locate(path, root),
        **{name: settings.get(name) for name in SETTINGS},
        "epochs_run": len(history.get("train_loss") or []) or None,
        **{f"test_{metric}": _number(metrics.get(metric)) for metric in METRICS},
        "logistic_mean_auc": _number(versus.get("logistic_mean_auc")),
        "margin_vs_logistic": _number(versus.get("margin")),
        **_detection(results.get("summary") or {}),
        "collapsed": results.get("collapsed"),
        **_provenance(path, results.get("provenance") or {}),
        "run_id": run_id(path),
        "results": str(path),
    }
    if isinstance(row["hidden_dims"], list):
        row["hidden_dims"] = "x".join(map(str, row["hidden_dims"])) or "linear"
    return row


def _detection(summary: dict) -> dict:
    """The detection columns from a ``summary`` block (blank for a multi-model's per-source one)."""
    interval = summary.get("rollout_auc_ci95") or [None, None]
    return {
        "rollout_auc": _number(summary.get("rollout_auc")),
        "rollout_auc_low": _number(interval[0]),
        "rollout_auc_high": _number(interval[1]),
        "detection_set": summary.get("detection_set"),
        "alpha": _number(summary.get("alpha")),
        "fpr": _number(summary.get("fpr")),
        "tpr": _number(summary.get("tpr")),
    }


def _provenance(path: str | os.PathLike, provenance: dict) -> dict:
    """When the run's results were written (UTC), by which code, and its training plus evaluation seconds."""
    try:
        written = datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    except OSError:
        written = None
    times = [_number(provenance.get(key)) for key in ("training_seconds", "evaluation_seconds")]
    seconds = sum(t for t in times if t is not None) if any(t is not None for t in times) else None
    return {"date": written, "code_version": provenance.get("code_version"), "seconds": seconds}


def sort_rows(rows: list[dict], column: str) -> list[dict]:
    """``rows`` by ``column``: metrics best first, anything else ascending; blanks last."""
    present = [row for row in rows if row.get(column) is not None]
    blank = [row for row in rows if row.get(column) is None]
    return sorted(present, key=lambda row: row[column], reverse=column in DESCENDING) + blank


def collect_rows(paths: Iterable[str | os.PathLike], root: str | os.PathLike, log: Callable[[str], None] = print) -> list[dict]:
    """Rows of every readable ``results.json`` among ``paths`` (each run once: a copy of the same
    id is left out; sorted by experiment, kind, name and date); an unreadable one is logged and left out."""
    rows, seen = [], set()
    for path in dict.fromkeys(map(str, paths)):
        try:
            with open(path, encoding="utf-8") as handle:
                results = json.load(handle)
        except (OSError, ValueError) as error:
            log(f"{path}: left out of the comparison: {error}")
            continue
        if not isinstance(results, dict):
            log(f"{path}: left out of the comparison: not a results.json (a JSON {type(results).__name__})")
            continue
        row = run_row(path, results, root)
        if row["run_id"] not in seen:
            seen.add(row["run_id"])
            rows.append(row)
    return sorted(rows, key=lambda row: (row["experiment"] != PLAIN_RUN, row["experiment"], row["kind"], row["name"], row["date"] or ""))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({column: _cell(row.get(column)) for column in COLUMNS} for row in rows)
    return buffer.getvalue()


def markdown_text(rows: list[dict]) -> str:
    """A Markdown table; settings equal in every row are left out of it (and said once, below)."""
    varying = [name for name in SETTINGS if len({_cell(row.get(name)) for row in rows}) > 1]
    shared = [name for name in SETTINGS if name not in varying and rows]
    columns = [
        "experiment",
        "kind",
        "name",
        *varying,
        "epochs_run",
        "test_mean_auc",
        "margin_vs_logistic",
        "rollout_auc",
        "fpr",
        "tpr",
        "collapsed",
        "date",
        "seconds",
        "run_id",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    lines += ["", "rollout_auc, fpr, tpr: failure detection per rollout on the unseen tasks (the seen ones where none was held out)."]
    if shared:
        lines += ["", "Same in every run: " + ", ".join(f"{name} {_cell(rows[0].get(name))}" for name in shared) + "."]
    if not rows:
        lines += ["", "No results.json found."]
    return "\n".join(lines) + "\n"
