"""The verdict: results.json's ``summary`` block and summary.md read the report's own values, and every
null one says why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vlarisk.report.summary import summary_html, summary_markdown, summary_rows
from vlarisk.score.evaluation import write_results
from vlarisk.score.verdict import model_summary, summary_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow_scripts"))
import write_summary  # noqa: E402

NO_THRESHOLD = "too few calibration successes for this alpha"


def report(unseen: bool = True, alarm: bool = True, beats: bool = True, collapsed: bool = False) -> dict:
    """A report as evaluation writes it, cut to the keys the summary reads (and a few it must not)."""
    detection = {
        # the top-level rates are at the horizon; the summary reads the deployed monitor's
        "test_seen": {
            "rollout_auc": 0.91,
            "ci95": {"rollout_auc": [0.8, 0.97]},
            "alpha": 0.1,
            "fpr": 0.3,
            "tpr": 0.2,
            "deployed": {"fpr": 0.05, "tpr": 0.7},
            "undefined": {},
        },
    }
    if unseen:
        detection["test_unseen"] = {
            "rollout_auc": 0.74,
            "ci95": {"rollout_auc": [0.6, 0.85]},
            "alpha": 0.1,
            "fpr": 0.25 if alarm else None,
            "tpr": 0.1 if alarm else None,
            "deployed": {"fpr": 0.08 if alarm else None, "tpr": 0.5 if alarm else None},
            "undefined": {} if alarm else {"threshold": NO_THRESHOLD},
        }
    versus = {
        "model_mean_auc": 0.88 if beats else 0.59,
        "logistic_mean_auc": 0.8 if beats else 0.88,
        "beats_logistic": beats,
        "margin": 0.08,
    }
    return {
        "test_metrics": {"mean_auc": 0.5},
        "baselines": {"model_vs_logistic": versus},
        "detection": detection,
        "collapsed": collapsed,
        "provenance": {},
    }


def test_the_unseen_tasks_are_the_headline():
    assert model_summary(report()) == {
        "step_mean_auc": 0.88,
        "logistic_step_mean_auc": 0.8,
        "beats_logistic": True,
        "detection_set": "test_unseen",
        "rollout_auc": 0.74,
        "rollout_auc_ci95": [0.6, 0.85],
        "alpha": 0.1,
        "fpr": 0.08,
        "tpr": 0.5,
        "collapsed": False,
        "undefined": {},
    }


def test_seen_tasks_when_none_is_held_out():
    summary = model_summary(report(unseen=False))
    assert (summary["detection_set"], summary["rollout_auc"], summary["fpr"]) == ("test_seen", 0.91, 0.05)


def test_a_missing_alarm_gives_its_reason():
    summary = model_summary(report(alarm=False))
    assert summary["fpr"] is None and summary["tpr"] is None
    assert summary["undefined"] == {"fpr": NO_THRESHOLD, "tpr": NO_THRESHOLD}


def test_no_detection_block_is_said():
    bare = {k: v for k, v in report().items() if k != "detection"}
    summary = model_summary(bare)
    assert summary["detection_set"] is None
    assert set(summary["undefined"]) == {"rollout_auc", "rollout_auc_ci95", "alpha", "fpr", "tpr"}


def test_multi_model_per_source():
    multi = {"per_source": {"a": report(), "b": report(beats=False)}, "provenance": {}}
    summary = summary_of(multi)
    assert summary["per_source"]["b"]["beats_logistic"] is False
    assert [name for name, _ in summary_rows("multi g", summary)] == ["multi g / a", "multi g / b"]


def test_markdown_rows_footnotes_and_failed_checks():
    rows = [("model a", model_summary(report())), ("model b", model_summary(report(alarm=False, beats=False, collapsed=True)))]
    text = summary_markdown(rows)
    lines = text.splitlines()
    assert "| model a | 0.880 (0.800) | yes | 0.740 [0.600, 0.850] on test_unseen | 0.080 / 0.500 at 0.1 | no |" in lines
    assert "| model b | 0.590 (0.880) | **no** | 0.740 [0.600, 0.850] on test_unseen | n/a / n/a at 0.1 [1] | **yes** |" in lines
    assert f"[1] {NO_THRESHOLD}" in lines
    assert "- model b: the model does NOT beat the logistic baseline (per-step mean AUC 0.590 vs 0.880)" in lines
    assert "- model b: predictions collapsed (near-constant output)" in lines
    assert not any(line.startswith("- model a") for line in lines)


def test_results_json_carries_the_summary(tmp_path):
    path = tmp_path / "results.json"
    write_results(path, "m", report(), history={}, config={})
    written = json.loads(path.read_text())
    assert written["summary"] == model_summary(report())


def test_the_script_names_runs_by_where_they_lie(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for run_dir, content in (("results/models/a", report()), ("results/experiments/wide/multi/g", {"per_source": {"s": report()}})):
        Path(run_dir).mkdir(parents=True)
        Path(run_dir, "results.json").write_text(json.dumps(content))
    write_summary.main(["results/models/a/results.json", "results/experiments/wide/multi/g/results.json", "--output", "results/summary.md"])
    written = Path("results/summary.md").read_text()
    assert capsys.readouterr().out == written
    assert "| model a |" in written and "| wide: multi g / s |" in written


def test_the_html_page_holds_the_same_table_and_notes(tmp_path, monkeypatch):
    """summary.html (the copy `snakemake all --report` shows): the Markdown table's cells, row by
    row, read back with an HTML parser; footnotes and failed checks as text; bold kept bold."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.text, self.cell = [], [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data
            elif data.strip():
                self.text.append(data.strip())

    rows = [("model a", model_summary(report())), ("model <b>", model_summary(report(alarm=False, beats=False, collapsed=True)))]
    markdown = summary_markdown(rows)
    page = summary_html(markdown)
    parsed = Cells()
    parsed.feed(page)
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    expected = [[cell.strip().replace("**", "") for cell in line.strip("|").split("|")] for line in table]
    assert parsed.rows == expected
    assert f"[1] {NO_THRESHOLD}" in parsed.text and "Summary" in parsed.text
    assert "<td><b>no</b></td>" in page and "model &lt;b&gt;" in page
    monkeypatch.chdir(tmp_path)
    Path("results/models/a").mkdir(parents=True)
    Path("results/models/a/results.json").write_text(json.dumps(report()))
    write_summary.main(["results/models/a/results.json", "--output", "s.md", "--html", "s.html"])
    assert Path("s.html").read_text() == summary_html(Path("s.md").read_text())
