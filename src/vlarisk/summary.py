"""The verdict of a run in a few values: ``results.json``'s ``summary`` block and ``results/summary.md``.

Per model (per source of a multi-model): its per-step mean test AUC beside the logistic baseline's
and whether it beats it, its rollout-level failure detection on the unseen tasks (on the seen-task
test set when no task was held out) with the 95% interval, the deployed alarm's FPR and TPR at its
alpha, and whether its predictions collapsed. Each value is read from the report that evaluation
writes, never recomputed; a null one carries the report's reason under ``undefined``.

This module imports only the standard library, so the Snakefile's summary rule runs without torch.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping

from vlarisk.documents import BASELINES, DETECTION, PER_SOURCE

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


# ------------------------------------------------------------------------------ summary.md
COLUMNS = ("run", "step AUC (logistic)", "beats logistic", "rollout AUC [95% CI]", "FPR / TPR at alpha", "collapsed")


def summary_rows(name: str, summary: Mapping) -> list[tuple[str, Mapping]]:
    """``(row name, model summary)`` for a summary block: one row, or one per source."""
    if PER_SOURCE in summary:
        return [(f"{name} / {source}", entry) for source, entry in summary[PER_SOURCE].items()]
    return [(name, summary)]


def markdown_table(rows: list[tuple[str, Mapping]]) -> str:
    """The summary rows as a Markdown table, each null cell pointing to a numbered footnote with its reason."""
    notes: dict[str, int] = {}

    def cell(text: str, entry: Mapping, *keys: str) -> str:
        missing = [entry["undefined"][key] for key in keys if key in entry.get("undefined", {})]
        marks = "".join(f"[{notes.setdefault(reason, len(notes) + 1)}]" for reason in dict.fromkeys(missing))
        return f"{text} {marks}".strip()

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, entry in rows:
        step = f"{_number(entry['step_mean_auc'])} ({_number(entry['logistic_step_mean_auc'])})"
        beats = {True: "yes", False: "**no**", None: "n/a"}[entry["beats_logistic"]]
        detection = f"{_number(entry['rollout_auc'])} {_interval(entry['rollout_auc_ci95'])} on {entry['detection_set'] or 'n/a'}"
        alarm = f"{_number(entry['fpr'])} / {_number(entry['tpr'])} at {entry['alpha'] if entry['alpha'] is not None else 'n/a'}"
        collapsed = {True: "**yes**", False: "no", None: "n/a"}[entry["collapsed"]]
        cells = [
            name,
            cell(step, entry, "step_mean_auc", "logistic_step_mean_auc"),
            beats,
            cell(detection, entry, "rollout_auc", "rollout_auc_ci95"),
            cell(alarm, entry, "fpr", "tpr"),
            collapsed,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"[{number}] {reason}" for reason, number in notes.items()]
    return "\n".join(lines).rstrip() + "\n"


def verdict_lines(rows: list[tuple[str, Mapping]]) -> list[str]:
    """One sentence per row that fails a check: below the logistic baseline, collapsed, no alarm."""
    lines = []
    for name, entry in rows:
        if entry["beats_logistic"] is False:
            lines.append(
                f"{name}: the model does NOT beat the logistic baseline "
                f"(per-step mean AUC {_number(entry['step_mean_auc'])} vs {_number(entry['logistic_step_mean_auc'])})"
            )
        if entry["collapsed"]:
            lines.append(f"{name}: predictions collapsed (near-constant output)")
        if entry["fpr"] is None and entry["detection_set"] is not None:
            lines.append(f"{name}: no alarm at alpha {entry['alpha']}: {entry['undefined'].get('fpr')}")
    return lines


def summary_markdown(rows: list[tuple[str, Mapping]]) -> str:
    """The whole ``summary.md``: a heading, the table with its footnotes, and the failed checks."""
    verdicts = verdict_lines(rows)
    text = "# Summary\n\n" + markdown_table(rows)
    if verdicts:
        text += "\n" + "\n".join(f"- {line}" for line in verdicts) + "\n"
    return text


def summary_html(markdown: str) -> str:
    """``summary.md`` as a standalone HTML page (the copy shown in ``snakemake --report``): its
    table as a table, its heading, footnotes and failed checks as text."""
    parts, table = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):  # the separator row
                table.append([_inline(cell.strip()) for cell in line.strip("|").split("|")])
            continue
        if table:
            head, *body = table
            rows = ["<tr>" + "".join(f"<th>{cell}</th>" for cell in head) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in body]
            parts.append("<table>\n" + "\n".join(rows) + "\n</table>")
            table = []
        if line.startswith("# "):
            parts.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("- "):
            parts.append(f"<p>&bull; {_inline(line[2:])}</p>")
        elif line.strip():
            parts.append(f"<p>{_inline(line)}</p>")
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Summary</title><style>{style}</style></head>\n'
        "<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Markdown text of one line as HTML: escaped, ``**bold**`` kept bold."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else "n/a"


def _interval(bounds) -> str:
    return f"[{_number(bounds[0])}, {_number(bounds[1])}]" if bounds else "[n/a]"
