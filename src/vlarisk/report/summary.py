"""``results/summary.md`` (and its HTML page for the report): the verdict blocks of a run's models
as one table, a sentence per model and a numbered footnote for every value that is n/a.

The standard library only, so the Snakefile's summary rule runs without torch.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping

from vlarisk.data.documents import PER_SOURCE

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
